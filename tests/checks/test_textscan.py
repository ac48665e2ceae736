"""The C text scanner (infra/checks/_textscan.c) against the exact line path.

The scanner may only accept a line the exact path accepts with no diagnostic, with the same
format and token estimate. These tests check that on every whitespace code point, every kind
of broken UTF-8, near misses of each text format, randomly written clean lines of the three
text formats and many thousands of mutated ones.
"""

from __future__ import annotations

import io
import json
import random
import sys

import pytest

from infra import catalog
from infra.checks.dataset import blocks, validate_stream
from infra.checks.report import FileSummary
from infra.checks.tokens import CHARS_PER_TOKEN, TOKENS_PER_TURN

pytestmark = pytest.mark.usefixtures("textscan")  # fails or skips, saying why, without it

LLAMA = catalog.model("meta/llama3_1@llama-3.1-8b-instruct")
SPACES = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def scan(data: bytes, limit: int = -1) -> tuple:
    assert blocks.textscan is not None
    return blocks.textscan.scan(data, 0, CHARS_PER_TOKEN, TOKENS_PER_TURN, limit)


FORMATS = ("chat", "prompt_completion", "generate_content")


def exact(line: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, list[str]]:
    """(examples, tokens, diagnostic codes then formats) of one line by the exact line path."""
    with monkeypatch.context() as m:
        m.setattr(blocks, "textscan", None)
        m.setattr(blocks, "fast_chat_block", lambda *a: False)
        summary, diags = validate_stream(
            io.BytesIO(line + b"\n"),
            FileSummary(uri="f", local_path=None),
            display="f",
            model=LLAMA,
            max_seq_length=LLAMA.max_seq_length,
        )
    return summary.examples, summary.tokens, [d.code for d in diags] + summary.formats


def chat_line(content: str, *, ascii_: bool = False) -> bytes:
    obj = {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": "ok"},
        ]
    }
    return json.dumps(obj, ensure_ascii=ascii_).encode()


@pytest.mark.parametrize("ascii_", [False, True], ids=["raw", "escaped"])
def test_whitespace_only_content_is_never_accepted(ascii_: bool) -> None:
    for c in SPACES:
        if c < 0x20 and not ascii_:
            continue  # raw control characters are invalid JSON; json.dumps escapes them
        alone = chat_line(chr(c) * 2, ascii_=ascii_) + b"\n"
        assert scan(alone)[0] == 0, hex(c)
        spaced = chat_line(chr(c) + "x" + chr(c), ascii_=ascii_) + b"\n"
        lines, _, _, _, chars, _, _ = scan(spaced)
        assert (lines, chars) == (1, 3 + 2), hex(c)  # "x" and its spaces, then "ok"


def test_non_space_neighbours_are_accepted() -> None:
    for c in (0x08, 0x1B, 0x21, 0x84, 0x86, 0x9F, 0xA1, 0x167F, 0x1681, 0x1FFF, 0x200B, 0x2027):
        for ascii_ in (False, True):
            if c < 0x20 and not ascii_:
                continue
            assert scan(chat_line(chr(c), ascii_=ascii_) + b"\n")[0] == 1, hex(c)


@pytest.mark.parametrize(
    "bad",
    [
        b"\x80",  # a continuation byte alone
        b"\xc0\xaf",  # overlong (C0/C1 never occur)
        b"\xc3",  # truncated two-byte sequence
        b"\xc3\x28",  # bad continuation
        b"\xe0\x80\xaf",  # overlong three-byte
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xe2\x82",  # truncated three-byte
        b"\xf0\x80\x80\xaf",  # overlong four-byte
        b"\xf4\x90\x80\x80",  # over U+10FFFF
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"\x01",  # a raw control character
        b"\\x41",  # not a JSON escape
        b"\\u12",  # short \\u escape
        b"\\ud800",  # lone high surrogate
        b"\\udc00",  # lone low surrogate
        b"\\ud800\\u0041",  # high surrogate then not a low one
    ],
)
def test_broken_strings_are_left_to_the_exact_path(
    bad: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = chat_line("caf!").replace(b"caf!", b"caf" + bad)
    assert scan(line + b"\n")[0] == 0
    examples, _, codes = exact(line, monkeypatch)
    assert examples == 0 and codes, bad  # and the exact path names the problem


def test_characters_count_as_len_does() -> None:
    text = 'a😀é€\u3000b\n\t"\\/' + "\U0010ffff"
    for ascii_ in (False, True):
        *_, chars, _, _ = scan(chat_line(text, ascii_=ascii_) + b"\n")
        assert chars == len(text) + len("ok")


def test_stops_at_the_first_unproven_line_and_resumes_from_start() -> None:
    good = chat_line("hello") + b"\n"
    bad = chat_line("  ") + b"\n"
    block = good * 3 + bad + good * 2
    lines, end, tokens, turns, chars, too_long, kind = scan(block)
    assert (lines, end, turns, chars, too_long, kind) == (3, 3 * len(good), 6, 21, [], 0)
    assert tokens == 3 * (-(-7 // CHARS_PER_TOKEN) + 2 * TOKENS_PER_TURN)
    rest = blocks.textscan.scan(block, end + len(bad), CHARS_PER_TOKEN, TOKENS_PER_TURN, -1)
    assert rest[:2] == (2, len(block))
    # An unfinished last line (no newline) is never accepted.
    assert scan(good + good[:-1])[:2] == (1, len(good))
    # Limits: each line's estimate against the limit, by index.
    long = chat_line("x" * 400) + b"\n"
    assert scan(good + long + good, limit=50)[5] == [(1, 100 + 1 + 2 * TOKENS_PER_TURN)]


def test_rejects_bad_arguments() -> None:
    assert blocks.textscan is not None
    with pytest.raises(ValueError):
        blocks.textscan.scan(b"{}\n", 5, CHARS_PER_TOKEN, TOKENS_PER_TURN, -1)
    with pytest.raises(ValueError):
        blocks.textscan.scan(b"{}\n", 0, 0, TOKENS_PER_TURN, -1)


def _random_text(rng: random.Random) -> str:
    pools = [
        "abc xyz",
        "Note: 10:30",
        '"quoted" \\ /',
        "\n\t",
        "é€—",
        "😀🎉",
        "\u3000\u00a0",
        "\x00\x1f",
    ]
    text = "".join(rng.choice(pools) for _ in range(rng.randint(1, 6)))
    return text if not text.isspace() else text + "x"


def _parts(rng: random.Random) -> list[dict]:
    return [{"text": _random_text(rng)} for _ in range(rng.randint(1, 3))]


def _random_example(rng: random.Random, fmt: str) -> dict:
    if fmt == "prompt_completion":
        pc = {"prompt": _random_text(rng), "completion": _random_text(rng)}
        return pc if rng.random() < 0.7 else dict(reversed(pc.items()))
    turns = []
    for _ in range(rng.randint(1, 4)):
        turns += ["user", "assistant"]
    if fmt == "chat":
        msgs = [{"role": r, "content": _random_text(rng)} for r in turns]
        if rng.random() < 0.4:
            msgs.insert(0, {"role": "system", "content": _random_text(rng)})
        if rng.random() < 0.3:  # keys in the other order
            msgs = [{"content": m["content"], "role": m["role"]} for m in msgs]
        return {"messages": msgs}
    contents = [{"role": r, "parts": _parts(rng)} for r in turns]
    if rng.random() < 0.3:
        contents = [{"parts": c["parts"], "role": c["role"]} for c in contents]
    obj: dict = {"contents": contents}
    if rng.random() < 0.5:
        key = rng.choice(["systemInstruction", "system_instruction"])
        obj = {key: {"parts": _parts(rng)}, **obj}
        if rng.random() < 0.5:
            obj = dict(reversed(obj.items()))
    return obj


def _random_line(rng: random.Random, fmt: str | None = None) -> bytes:
    obj = _random_example(rng, fmt or rng.choice(FORMATS))
    sep = rng.choice([(",", ":"), (", ", ": "), (" , ", " : "), ("\t,", ":\t")])
    line = json.dumps(obj, separators=sep, ensure_ascii=rng.random() < 0.5)
    if rng.random() < 0.2:
        line = f" {line}\r"  # leading space, CRLF line end
    return line.encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_randomly_written_clean_lines_are_accepted_with_exact_tokens(
    monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    rng = random.Random(7)
    for _ in range(200):
        line = _random_line(rng, fmt)
        lines, _, tokens, _, _, _, kind = scan(line + b"\n")
        examples, want, codes = exact(line, monkeypatch)
        assert (examples, codes) == (1, [fmt]), line
        assert (lines, tokens, FORMATS[kind]) == (1, want, fmt), line


def _gc(**extra: object) -> dict:
    obj: dict = {
        "contents": [
            {"role": "user", "parts": [{"text": "a"}]},
            {"role": "assistant", "parts": [{"text": "b"}]},
        ]
    }
    obj.update(extra)
    return obj


_USER_A = {"role": "user", "parts": [{"text": "a"}]}
_ASSISTANT_B = {"role": "assistant", "parts": [{"text": "b"}]}
NEAR_MISSES = {
    "pc empty prompt": '{"prompt": "", "completion": "b"}',
    "pc space completion": '{"prompt": "a", "completion": "\\u2003"}',
    "pc only prompt": '{"prompt": "a"}',
    "pc extra key": '{"prompt": "a", "completion": "b", "x": 1}',
    "pc duplicate": '{"prompt": "a", "completion": "b", "prompt": "c"}',
    "pc number": '{"prompt": "a", "completion": 5}',
    "pc with messages": '{"prompt": "a", "completion": "b", "messages": []}',
    "gc system role": json.dumps(
        {"contents": [{"role": "system", "parts": [{"text": "s"}]}, _USER_A, _ASSISTANT_B]}
    ),
    "gc model role": json.dumps(
        {"contents": [_USER_A, {"role": "model", "parts": [{"text": "b"}]}]}
    ),
    "gc ends on user": json.dumps({"contents": [_USER_A, _ASSISTANT_B, _USER_A]}),
    "gc empty parts": json.dumps({"contents": [_USER_A, {"role": "assistant", "parts": []}]}),
    "gc blank part": json.dumps(
        {"contents": [_USER_A, {"role": "assistant", "parts": [{"text": " "}]}]}
    ),
    "gc part extra key": json.dumps(
        {"contents": [_USER_A, {"role": "assistant", "parts": [{"text": "b", "x": "y"}]}]}
    ),
    "gc image part": json.dumps(
        {
            "contents": [
                _USER_A,
                {
                    "role": "assistant",
                    "parts": [{"fileData": {"fileUri": "gs://b/x.png", "mimeType": "image/png"}}],
                },
            ]
        }
    ),
    "gc empty contents": '{"contents": []}',
    "gc system without parts": json.dumps(_gc(systemInstruction={})),
    "gc system extra key": json.dumps(
        _gc(systemInstruction={"parts": [{"text": "s"}], "role": "x"})
    ),
    "gc system blank": json.dumps(_gc(systemInstruction={"parts": [{"text": "\n"}]})),
    "gc both system spellings": json.dumps(
        _gc(
            system_instruction={"parts": [{"text": "s"}]},
            systemInstruction={"parts": [{"text": "t"}]},
        )
    ),
    "gc null system": json.dumps(_gc(systemInstruction=None)),
    "gc duplicate contents": '{"contents": [], "contents": ' + json.dumps(_gc()["contents"]) + "}",
    "gc duplicate role": '{"contents": [{"role": "user", "role": "user", "parts": [{"text": "a"}]}, '
    + json.dumps(_ASSISTANT_B)
    + "]}",
    "gc only system": json.dumps({"systemInstruction": {"parts": [{"text": "s"}]}}),
    "mixed keys": json.dumps({**_gc(), "prompt": "a"}),
}


# Fine by the exact path, just not shapes the scanner proves (it refuses what it does not know).
CLEAN_BUT_UNPROVEN = {
    "gc null system",
    "gc part extra key",
    "gc system extra key",
    "gc both system spellings",
}


@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_near_misses_of_other_formats_go_to_the_exact_path(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    line = NEAR_MISSES[name].encode()
    assert scan(line + b"\n")[0] == 0
    examples, _, codes = exact(line, monkeypatch)
    if name in CLEAN_BUT_UNPROVEN:  # fine data, just not a shape the scanner proves
        assert (examples, codes) == (1, ["generate_content"])
    else:  # and the exact path names the problem
        assert any(c not in FORMATS for c in codes), codes


def test_a_run_stops_where_the_format_changes() -> None:
    rng = random.Random(3)
    chat = [_random_line(rng, "chat") + b"\n" for _ in range(3)]
    pc = [_random_line(rng, "prompt_completion") + b"\n" for _ in range(2)]
    block = b"".join(chat + pc + chat)
    first = scan(block)
    assert (first[0], first[1], first[6]) == (3, len(b"".join(chat)), 0)
    second = blocks.textscan.scan(block, first[1], CHARS_PER_TOKEN, TOKENS_PER_TURN, -1)
    assert (second[0], second[6]) == (2, 1)


_INSERTS = [
    b'"',
    b"\\",
    b":",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b" ",
    b"\x00",
    b"\x80",
    b"\xc3",
    b"\xed",
    b"\xf4",
    b"\t",
    b"u",
    b"\\u",
    b'"role"',
    b'"content"',
    b'"system"',
    b'"parts"',
    b'"text"',
    b'"prompt"',
    b'"contents"',
    b'"systemInstruction"',
    b'""',
    b"[]",
    b"{}",
]


def _mutate(rng: random.Random, line: bytes) -> bytes:
    b = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        op = rng.random()
        if op < 0.3:
            b[i] = rng.randrange(256)
        elif op < 0.6:
            b[i:i] = rng.choice(_INSERTS)
        elif op < 0.8:
            del b[i : i + rng.randint(1, 4)]
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[min(i, j) : max(i, j)][:40]
    return bytes(b).replace(b"\n", b" ")


def test_mutated_lines_are_accepted_only_when_the_exact_path_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(11)
    accepted = dict.fromkeys(FORMATS, 0)
    rejected = 0
    for _ in range(9000):
        line = _mutate(rng, _random_line(rng))
        lines, _, tokens, _, _, _, kind = scan(line + b"\n")
        if lines:
            examples, want, codes = exact(line, monkeypatch)
            assert (examples, codes, tokens) == (1, [FORMATS[kind]], want), line
            accepted[FORMATS[kind]] += 1
        else:
            rejected += 1
    print(f"accepted {accepted}, rejected {rejected}")
    # Both outcomes occur for every format, so the property was exercised both ways.
    assert min(accepted.values()) > 50 and rejected > 5000, (accepted, rejected)
