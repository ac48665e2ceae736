"""The block fast path must agree with the line-by-line path on every input.

The fast path may only *accept* blocks; whenever it does, the exact path must find nothing
either. These tests feed both paths clean data and every near miss we could think of.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from infra import catalog
from infra.checks.dataset import blocks, reading, validate_dataset_file
from infra.checks.dataset.validator import Validator

LLAMA = catalog.model("meta/llama3_1@llama-3.1-8b-instruct")


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> str:
    """Both fast layers: the C scanner and the pure-Python block path used without it."""
    if request.param == "c":
        request.getfixturevalue("textscan")  # fails or skips, saying why, without it
    return request.param


def both(path: Path, monkeypatch: pytest.MonkeyPatch, impl: str, max_seq: int = 8192):  # noqa: ANN201
    """Validates ``path`` with the fast layer ``impl`` and with the exact line path alone;
    also returns how many lines the fast layer accepted."""
    calls = {"accepted": 0}
    if impl == "c":
        accept = Validator.accept

        def spy_accept(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            calls["accepted"] += kw.get("count", 0)  # only the fast layers accept in runs
            return accept(self, *a, **kw)

        monkeypatch.setattr(Validator, "accept", spy_accept)
    else:
        original = blocks.fast_chat_block

        def spy(v, lineno, block, lines):  # noqa: ANN001, ANN202
            ok = original(v, lineno, block, lines)
            calls["accepted"] += lines if ok else 0
            return ok

        monkeypatch.setattr(blocks, "textscan", None)
        monkeypatch.setattr(blocks, "fast_chat_block", spy)
    fast = validate_dataset_file(path, display="f", model=LLAMA, max_seq_length=max_seq)
    monkeypatch.setattr(blocks, "textscan", None)
    monkeypatch.setattr(blocks, "fast_chat_block", lambda *a: False)
    slow = validate_dataset_file(path, display="f", model=LLAMA, max_seq_length=max_seq)
    return fast, slow, calls["accepted"]


def key(diags):  # noqa: ANN001, ANN201
    return sorted((d.code, d.line, d.severity) for d in diags)


def chat(rng: random.Random, i: int) -> dict:
    msgs = [{"role": "system", "content": f"System {i}: be brief."}] if rng.random() < 0.5 else []
    for t in range(rng.randint(1, 3)):
        msgs.append(
            {
                "role": "user",
                "content": rng.choice(["Hi", "Café? ☕", 'Say "x": now', "a\nb", "10:30"]) + str(t),
            }
        )
        msgs.append(
            {
                "role": "assistant",
                "content": rng.choice(["Yes.", "Non — merci", "ok: fine", "😀 done"]),
            }
        )
    return {"messages": msgs}


def write(path: Path, objs: list, *, compact: bool = False, ascii_: bool = False) -> None:
    sep = (",", ":") if compact else (", ", ": ")
    path.write_text(
        "".join(json.dumps(o, separators=sep, ensure_ascii=ascii_) + "\n" for o in objs),
        encoding="utf-8",
    )


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("ascii_", [False, True])
def test_clean_data_takes_the_fast_path_and_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str, compact: bool, ascii_: bool
) -> None:
    rng = random.Random(1)
    path = tmp_path / "clean.jsonl"
    write(path, [chat(rng, i) for i in range(300)], compact=compact, ascii_=ascii_)
    (fs, fd), (ss, sd), accepted = both(path, monkeypatch, impl)
    assert accepted == 300
    assert fd == sd == []
    assert (
        (fs.examples, fs.formats, fs.sha256)
        == (ss.examples, ss.formats, ss.sha256)
        == (300, ["chat"], ss.sha256)
    )
    # Both fast layers count characters as len() does, per example: the same estimate.
    assert fs.tokens == ss.tokens


NEAR_MISSES = {
    "duplicate role": '{"messages": [{"role": "user", "role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "duplicate content": '{"messages": [{"role": "user", "content": "a:b", "content": "c"}, {"role": "assistant", "content": "b"}]}',
    "duplicate messages": '{"messages": [], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "escaped duplicate key": '{"messages": [{"role": "user", "content": "a", "c\\u006fntent": "x"}, {"role": "assistant", "content": "b"}]}',
    "escaped colon and dup": '{"messages": [{"role": "user", "content": "a\\u003a", "content": "b:"}, {"role": "assistant", "content": "b"}]}',
    "spaced duplicate": '{"messages": [{"role" : "user", "content" : "a", "content" : "a"}, {"role": "assistant", "content": "b"}]}',
    "empty content": '{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "b"}]}',
    "space content": '{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "b"}]}',
    "escaped space content": '{"messages": [{"role": "user", "content": "\\n\\t"}, {"role": "assistant", "content": "b"}]}',
    "unicode space content": '{"messages": [{"role": "user", "content": "\\u3000"}, {"role": "assistant", "content": "b"}]}',
    "raw nbsp content": '{"messages": [{"role": "user", "content": "\u00a0"}, {"role": "assistant", "content": "b"}]}',
    "raw ideographic space": '{"messages": [{"role": "user", "content": "\u3000\u2009"}, {"role": "assistant", "content": "b"}]}',
    "escaped colon balances a dup": '{"messages": [{"role": "user", "content": "\\u003a", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "number content": '{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]}',
    "list content": '{"messages": [{"role": "user", "content": ["a"]}, {"role": "assistant", "content": "b"}]}',
    "null content": '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "b"}]}',
    "system in middle": '{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]}',
    "two systems": '{"messages": [{"role": "system", "content": "s"}, {"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "ends on user": '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}',
    "starts on assistant": '{"messages": [{"role": "assistant", "content": "b"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "only system": '{"messages": [{"role": "system", "content": "s"}]}',
    "bad role": '{"messages": [{"role": "human", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "extra key": '{"messages": [{"role": "user", "content": "a", "name": "x"}, {"role": "assistant", "content": "b"}]}',
    "lone surrogate": '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "b"}]}',
    "two objects on a line": '{"prompt": "a", "completion": "b"} {"prompt": "a", "completion": "b"}',
    "prompt completion": '{"prompt": "a", "completion": "b"}',
}


@pytest.mark.parametrize("ascii_", [False, True], ids=["utf8-block", "ascii-block"])
@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_near_misses_are_never_accepted_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str, name: str, ascii_: bool
) -> None:
    rng = random.Random(2)
    path = tmp_path / "mixed.jsonl"
    # ASCII blocks and UTF-8 blocks take different fast-path branches: test both.
    good = [json.dumps(chat(rng, i), ensure_ascii=ascii_) for i in range(20)]
    path.write_text("\n".join([*good[:10], NEAR_MISSES[name], *good[10:]]) + "\n", encoding="utf-8")
    (fs, fd), (ss, sd), accepted = both(path, monkeypatch, impl)
    assert key(fd) == key(sd)
    assert any(d.line == 11 for d in sd), (name, [d.format() for d in sd])
    assert fs.examples == ss.examples
    if impl == "c":  # every other line was accepted in C: the scan resumed after line 11
        # (a clean prompt/completion line is accepted too; the mix is reported at the end)
        assert accepted == (21 if name == "prompt completion" else 20)


def test_invalid_utf8_inside_content_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    path = tmp_path / "bad.jsonl"
    good = (
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    path.write_bytes(good * 5 + good.replace(b'"a"', b'"caf\xe9"') + good * 5)
    (_, fd), (_, sd), _ = both(path, monkeypatch, impl)
    assert key(fd) == key(sd) == [("invalid-encoding", 6, "error")]


def test_blank_and_pretty_lines_are_found_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    rng = random.Random(3)
    lines = [json.dumps(chat(rng, i)) for i in range(6)]
    pretty = json.dumps(chat(rng, 99), indent=1).splitlines()
    path = tmp_path / "shape.jsonl"
    path.write_text(
        "\n".join([lines[0], "", *lines[1:3], *pretty, *lines[3:]]) + "\n", encoding="utf-8"
    )
    (fs, fd), (ss, sd), _ = both(path, monkeypatch, impl)
    assert key(fd) == key(sd)
    assert ("invalid-json", 2, "error") in key(sd)


def test_long_examples_are_flagged_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    rng = random.Random(4)
    objs = [chat(rng, i) for i in range(50)]
    objs[17]["messages"][-1]["content"] = "long answer " * 1000  # ~3000 tokens estimated
    path = tmp_path / "long.jsonl"
    write(path, objs)
    (_, fd), (_, sd), accepted = both(path, monkeypatch, impl, max_seq=2048)
    assert accepted == 50
    assert key(fd) == key(sd) == [("sequence-too-long", 18, "warning")]


def test_many_blocks_keep_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    monkeypatch.setattr(reading, "CHUNK", 4096)  # many blocks, lines split across reads
    monkeypatch.setattr(blocks, "CHUNK", 4096)  # the pure-Python layer's block cap follows
    rng = random.Random(5)
    objs: list = [chat(rng, i) for i in range(400)]
    objs[321] = {"messages": [{"role": "user", "content": "a"}]}
    path = tmp_path / "blocks.jsonl"
    write(path, objs)
    (fs, fd), (ss, sd), accepted = both(path, monkeypatch, impl)
    assert accepted == 399 if impl == "c" else accepted > 200
    assert key(fd) == key(sd) == [("missing-assistant-turn", 322, "error")]
    assert fs.examples == ss.examples == 399
