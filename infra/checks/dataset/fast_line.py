"""The line fast path: proofs that a decoded line is a clean text example.

Layer 2 of the validator (see :mod:`infra.checks.dataset`): orjson decodes the line, then
:func:`fast_text` type-checks a clean text example and :func:`no_duplicate_keys` rules out a
duplicate key by counting. Each only ever *accepts*; any doubt sends the line to the exact
path (:mod:`infra.checks.dataset.lines`), which names every problem.
"""

from __future__ import annotations

import re
from typing import Any

from trainer import formats

# Whitespace between a closing quote and a colon: the only layout where counting b'":'
# could miss a key token (JSON allows it; compact writers never emit it).
_WS_COLON = re.compile(rb'"[ \t\r]+:')


def fast_text(obj: dict[str, Any]) -> tuple[str, int, int, int] | None:
    """(format, text chars, turns, key count) of a clean text example; None means "look closer".

    Only accepts what :func:`trainer.formats.parse_example` accepts with no issue, so a None
    never hides a problem: the slow path then names it.
    """
    n = len(obj)
    msgs = obj.get("messages")
    if msgs is not None:
        if n != 1 or type(msgs) is not list or not msgs:
            return None
        chars = 0
        expect = "user"
        first = msgs[0]
        start = 1 if type(first) is dict and first.get("role") == "system" else 0
        if len(msgs) - start < 2:
            return None
        for i, m in enumerate(msgs):
            if type(m) is not dict or len(m) != 2:
                return None
            content = m.get("content")
            if type(content) is not str or not content or content.isspace():
                return None
            role = m.get("role")
            if i < start:
                pass
            elif role != expect:
                return None
            else:
                expect = "assistant" if expect == "user" else "user"
            chars += len(content)
        if expect != "user":  # the last turn was not the assistant's
            return None
        return formats.CHAT, chars, len(msgs), 1 + 2 * len(msgs)
    prompt = obj.get("prompt")
    if prompt is not None:
        completion = obj.get("completion")
        if n != 2 or type(prompt) is not str or type(completion) is not str:
            return None
        if not prompt or prompt.isspace() or not completion or completion.isspace():
            return None
        return formats.PROMPT_COMPLETION, len(prompt) + len(completion), 2, 2
    contents = obj.get("contents")
    if contents is None or type(contents) is not list or not contents:
        return None
    # One turn per parts list: the system instruction's (if any), then each content's.
    turns: list[Any] = []
    si = obj.get("systemInstruction")
    if si is not None:
        if n != 2 or type(si) is not dict or len(si) != 1:
            return None
        turns.append(si.get("parts"))
    elif n != 1:
        return None
    expect = "user"
    for c in contents:
        if type(c) is not dict or len(c) != 2 or c.get("role") != expect:
            return None
        turns.append(c.get("parts"))
        expect = "assistant" if expect == "user" else "user"
    if expect != "user":
        return None
    keys = 1
    chars = 0
    for parts in turns:
        got = _fast_parts(parts)
        if got is None:
            return None
        chars += got[0]
        keys += 2 + got[1]  # systemInstruction or role, parts, and each part's text
    return formats.GENERATE_CONTENT, chars, len(turns), keys


def no_duplicate_keys(raw: bytes, decoded_keys: int) -> bool:
    """True when the line provably has no duplicate key; False means "parse exactly".

    Every key token in the raw text is a string followed by optional whitespace and a colon.
    When no closing quote is followed by whitespace and a colon, each key token contributes
    one ``":`` to the text, so the count of ``":`` is at least the number of key tokens (string
    values may add more). Decoding merges duplicates, so the decoded key count is at most the
    number of key tokens. If the decoded count equals the ``":`` count, then key tokens ==
    decoded keys: no key was merged, so none was duplicated.
    """
    if (b'" ' in raw or b'"\t' in raw or b'"\r' in raw) and _WS_COLON.search(raw):
        return False
    return raw.count(b'":') == decoded_keys


def count_keys(obj: Any) -> int:
    """Keys of ``obj`` and of every object nested in it (after decoding merged duplicates)."""
    if type(obj) is dict:
        return len(obj) + sum(count_keys(v) for v in obj.values() if type(v) in (dict, list))
    if type(obj) is list:
        return sum(count_keys(v) for v in obj if type(v) in (dict, list))
    return 0


def _fast_parts(parts: Any) -> tuple[int, int] | None:
    """(text chars, parts) of a list of clean text parts; None otherwise.

    The characters count the parts joined with newlines, as the trainer joins them (and as
    :attr:`trainer.formats.Example.text_chars` counts them).
    """
    if type(parts) is not list or not parts:
        return None
    chars = 0
    for p in parts:
        if type(p) is not dict or len(p) != 1:
            return None
        t = p.get("text")
        if type(t) is not str or not t or t.isspace():
            return None
        chars += len(t)
    return chars + len(parts) - 1, len(parts)
