"""One line, checked exactly: the line fast path first, then the exact path.

:func:`check_line` decodes a line with orjson and accepts it at once when
:mod:`infra.checks.dataset.fast_line` proves it a clean text example (layer 2). Anything
else takes the exact path (layer 3): stdlib ``json`` with hooks that see duplicate keys,
NaN/Infinity and lone surrogates, and :func:`trainer.formats.parse_example`, which names
every issue. The block layers send here every line they cannot prove.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson
from trainer import formats
from trainer.encoding import count_tokens

from infra import gcs
from infra.checks.dataset.fast_line import count_keys, fast_text, no_duplicate_keys
from infra.checks.dataset.reading import BOM, MAX_LINE_BYTES
from infra.checks.dataset.validator import Validator
from infra.checks.tokens import estimate_tokens

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB89][0-9a-fA-F]{2}")


def check_line(v: Validator, lineno: int, raw: bytes) -> None:
    """Checks line ``lineno`` (without its newline) and records what it finds in ``v``."""
    if len(raw) > MAX_LINE_BYTES:
        v.oversized(lineno)
        return
    if lineno == v.bom_line and raw.startswith(BOM):
        v.add(
            "error",
            "invalid-encoding",
            "",
            "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM",
            line=1,
            column=1,
        )
        raw = raw[3:]
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = _slow_decode(v, lineno, raw)
        if obj is None:
            return
        v.nonblank += 1
        _example(v, lineno, obj, raw, checked_keys=True)
        return
    v.nonblank += 1
    _example(v, lineno, obj, raw, checked_keys=False)


def _example(v: Validator, lineno: int, obj: Any, raw: bytes, *, checked_keys: bool) -> None:
    if type(obj) is not dict:
        what = (
            "a JSON array (a top-level array is not JSONL: write one object per line)"
            if isinstance(obj, list)
            else f"{formats._kind(obj)}"
        )
        v.add(
            "error",
            "not-an-object",
            "",
            f"expected one JSON object per line, got {what}",
            line=lineno,
            column=1,
        )
        return
    fast = fast_text(obj)
    if fast is not None:
        fmt, chars, turns, keys = fast
        if not checked_keys and not no_duplicate_keys(raw, keys):
            _exact_duplicates(v, lineno, raw)
        tokens = None
        if v.tokenizer is not None:
            # Exact counts need the normalised turns; build them the one way the trainer does.
            result = formats.parse_example(obj)
            if result.example is not None:
                tokens = count_tokens(v.tokenizer, result.example)
        v.accept(
            lineno,
            fmt,
            tokens if tokens is not None else estimate_tokens(chars, turns, 0),
            tokens is not None,
            False,
        )
        return
    if not checked_keys and not no_duplicate_keys(raw, count_keys(obj)):
        _exact_duplicates(v, lineno, raw)
    result = formats.parse_example(obj)
    for issue in result.issues:
        v.add(issue.severity, issue.code, issue.field, issue.message, line=lineno, column=1)
    ex = result.example
    if ex is None:
        return
    images = [img for t in ex.turns for img in t.images]
    for img in images:
        uri = gcs.parse(img.uri) if img.uri is not None else None
        if uri is not None:  # formats only keeps gs:// URIs; data URLs have none
            v.image_buckets.add(uri.bucket)
    if images and v.model is not None and not v.model.supports_images:
        v.add(
            "error",
            "images-not-supported",
            _first_image_field(ex),
            f"{v.model.display_name} is text-only; remove the images or tune an image model (Llama 4 Scout)",
            line=lineno,
            column=1,
        )
    if v.tokenizer is not None:
        tokens = count_tokens(v.tokenizer, ex) + estimate_tokens(0, 0, len(images))
        exact = not images
    else:
        tokens, exact = estimate_tokens(ex.text_chars, len(ex.turns), len(images)), False
    v.accept(lineno, ex.format, tokens, exact, bool(images))


def _slow_decode(v: Validator, lineno: int, raw: bytes) -> Any:
    """Decodes a line orjson refused, naming the exact problem; None when unusable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        v.nonblank += 1
        v.add(
            "error",
            "invalid-encoding",
            "",
            f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1}); save the file as UTF-8",
            line=lineno,
            column=e.start + 1,
        )
        return None
    if not text.strip():
        v.add(
            "error",
            "invalid-json",
            "",
            "blank line; JSONL has one JSON object on every line (remove it)",
            line=lineno,
            column=1,
        )
        return None
    v.nonblank += 1
    found: list[str] = []

    def constant(name: str) -> float:
        found.append(name)
        return 0.0

    def number(s: str) -> float:
        f = float(s)
        if math.isinf(f):
            found.append(s)
        return f

    dups: list[str] = []
    try:
        obj = json.loads(
            text,
            parse_constant=constant,
            parse_float=number,
            object_pairs_hook=_pairs_hook(dups),
        )
    except json.JSONDecodeError as e:
        v.add("error", "invalid-json", "", _json_problem(text, e), line=lineno, column=e.colno)
        return None
    except RecursionError:
        v.add("error", "invalid-json", "", "JSON nested too deeply", line=lineno, column=1)
        return None
    if found:
        col = text.find(found[0]) + 1
        v.add(
            "error",
            "non-finite-number",
            "",
            f"{found[0]} is not a JSON number (NaN and Infinity are not allowed); use a finite number or a string",
            line=lineno,
            column=max(col, 1),
        )
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        m = _SURROGATE_ESCAPE.search(raw)
        esc = m.group().decode() if m else "a \\uD800-\\uDFFF escape"
        v.add(
            "error",
            "invalid-encoding",
            "",
            f"lone surrogate {esc}: not a valid Unicode character (broken emoji or truncated text?)",
            line=lineno,
            column=(m.start() + 1) if m else 1,
        )
        return None
    for key in dups:
        _duplicate(v, lineno, raw, key)
    if found:
        return None
    return obj


def _exact_duplicates(v: Validator, lineno: int, raw: bytes) -> None:
    dups: list[str] = []
    json.loads(raw, object_pairs_hook=_pairs_hook(dups))
    for key in dups:
        _duplicate(v, lineno, raw, key)


def _duplicate(v: Validator, lineno: int, raw: bytes, key: str) -> None:
    token = json.dumps(key).encode()
    first = raw.find(token)
    second = raw.find(token, first + 1) if first >= 0 else -1
    v.add(
        "error",
        "duplicate-key",
        key,
        f"key {key!r} appears twice in one object; JSON parsers keep only one of them",
        line=lineno,
        column=(second + 1) if second >= 0 else 1,
    )


def _pairs_hook(dups: list[str]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                dups.append(k)
            out[k] = v
        return out

    return hook


def _json_problem(text: str, e: json.JSONDecodeError) -> str:
    stripped = text.strip()
    if stripped in ("{", "[") or (
        stripped.startswith(("{", "[")) and not stripped.endswith(("}", "]"))
    ):
        return f"not a complete JSON value ({e.msg}); pretty-printed JSON? JSONL needs each object on one line"
    if (
        stripped.startswith(('"', "}", "]"))
        or stripped.endswith((",", "}", "]"))
        and not stripped.startswith(("{", "["))
    ):
        return f"not a complete JSON value ({e.msg}); pretty-printed JSON? JSONL needs each object on one line"
    before = text[: e.pos].rstrip()
    if before.endswith(",") and e.msg.startswith(
        ("Expecting property name", "Expecting value", "Illegal trailing comma")
    ):
        return "trailing comma before a closing bracket or brace; remove it"
    return f"invalid JSON: {e.msg}"


def _first_image_field(ex: formats.Example) -> str:
    system = 1 if ex.turns and ex.turns[0].role == "system" else 0
    for k, t in enumerate(ex.turns):
        if t.images:
            if formats.FAMILY[ex.format] == formats.CHAT:
                return f"messages[{k}].content"
            return f"contents[{k - system}].parts"
    return ""
