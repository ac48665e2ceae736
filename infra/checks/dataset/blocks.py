"""The block layer: each block of whole lines goes to the fastest layer that can prove it.

Layer 1 of the validator (see :mod:`infra.checks.dataset`). With the C scanner
(``infra/checks/_textscan.c``), :func:`scan_block` accepts runs of clean text examples of the
three text formats in C, with the GIL released; where the extension was not built,
:func:`fast_chat_block` proves blocks of clean text chat with two msgspec calls and a few
C-level passes (same results, several times slower). Every line neither can prove goes to
:func:`infra.checks.dataset.lines.check_line`.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterable
from itertools import accumulate, chain, repeat
from typing import Literal

import msgspec
from trainer import formats

from infra.checks.dataset.lines import check_line
from infra.checks.dataset.reading import BOM, CHUNK
from infra.checks.dataset.validator import Validator
from infra.checks.tokens import CHARS_PER_TOKEN, TOKENS_PER_TURN, estimate_tokens

# The C scanner: None where it was not built (no C compiler at install; see setup.py) or is
# switched off with TUNESTACK_TEXTSCAN=0 (the pure-Python layer only, for benchmarks).
try:
    from infra.checks import _textscan as textscan
except ImportError:  # pragma: no cover - depends on the install
    textscan = None  # type: ignore[assignment]
if os.environ.get("TUNESTACK_TEXTSCAN") == "0":
    textscan = None  # type: ignore[assignment]

# The C scanner's format codes.
_SCAN_FORMATS = (formats.CHAT, formats.PROMPT_COMPLETION, formats.GENERATE_CONTENT)
# Valid role sequences up to 64 turns (longer conversations take the line path).
_VALID_ROLES = frozenset(
    seq
    for k in range(1, 33)
    for seq in (("user", "assistant") * k, ("system", *("user", "assistant") * k))
)
_MESSAGES = operator.attrgetter("messages")
_ROLE = operator.attrgetter("role")
_CONTENT = operator.attrgetter("content")


# gc=False: these structs hold no cycles, and skipping GC tracking makes decoding faster.
class _ChatMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "user", "assistant"]
    content: msgspec.Raw


class _ChatExample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[_ChatMessage]


#: Decodes a block of chat lines into typed structs (what the pure-Python layer reads).
CHAT_LINES = msgspec.json.Decoder(_ChatExample)
_STRINGS = msgspec.json.Decoder(list[str])


def check_blocks(v: Validator, blocks: Iterable[bytes | None]) -> int:
    """Validates a file's (or a range's) blocks in order, numbering lines from 1.

    Args:
        v: Where the results go.
        blocks: From :func:`infra.checks.dataset.reading.read_blocks` (None: an oversized line).

    Returns:
        The number of lines seen.
    """
    lineno = 0
    for block in blocks:
        if block is None:
            lineno += 1
            v.oversized(lineno)
        else:
            lineno = check_block(v, lineno, block)
    return lineno


def check_block(v: Validator, lineno: int, block: bytes) -> int:
    """Validates a block of whole lines after line ``lineno``; returns the last line number."""
    if textscan is not None and v.tokenizer is None:
        return scan_block(v, lineno, block)
    lines = block.count(b"\n")
    if (
        v.tokenizer is None
        and v.family in (None, formats.CHAT)
        and (lineno > 0 or not block.startswith(BOM))
        and len(block) <= 2 * CHUNK
        and fast_chat_block(v, lineno, block, lines)
    ):
        return lineno + lines
    parts = block.split(b"\n")
    parts.pop()  # the empty piece after the block's final newline
    for raw in parts:
        lineno += 1
        check_line(v, lineno, raw)
    return lineno


def scan_block(v: Validator, lineno: int, block: bytes) -> int:
    """Block fast path with the C scanner: runs of clean text examples are accepted in C,
    each line it cannot prove is checked exactly by :func:`check_line`, and scanning resumes
    after it."""
    limit = -1 if v.max_seq_length is None else v.max_seq_length
    start, size = 0, len(block)
    while start < size:
        n, end, tokens, _, _, too_long, kind = textscan.scan(
            block, start, CHARS_PER_TOKEN, TOKENS_PER_TURN, limit
        )
        if n:  # a run of one format; the next may be of another, or unproven
            v.nonblank += n
            fmt = _SCAN_FORMATS[kind]
            v.accept(lineno + 1, fmt, tokens, False, False, count=n, too_long=too_long)
            lineno += n
            start = end
            continue
        nl = block.find(b"\n", start)
        nl = size if nl < 0 else nl
        lineno += 1
        check_line(v, lineno, block[start:nl])
        start = nl + 1
    return lineno


def fast_chat_block(v: Validator, lineno: int, block: bytes, lines: int) -> bool:
    """Accepts a block when every line is provably a clean text chat example.

    The pure-Python fast layer, used where the C scanner was not built. One msgspec call
    decodes the whole block into typed structs (roles checked, contents kept as raw JSON),
    a second decodes all contents to str at once (strings only, valid UTF-8, exact
    lengths); the remaining rules are checked with a few C-level passes. Any doubt returns
    False and the block is checked line by line, which names each problem; so this path
    never hides one. Its token estimates equal the line path's.
    """
    try:
        items = CHAT_LINES.decode_lines(block)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    n = len(items)
    if n != lines or n == 0:  # blank lines, multi-line or several objects on a line
        return False
    # Role order: each example's roles as a tuple, looked up among the valid sequences
    # (system?, then user/assistant pairs); all in C, no Python code per example.
    role_seqs = map(tuple, map(functools.partial(map, _ROLE), map(_MESSAGES, items)))
    if not all(map(_VALID_ROLES.__contains__, role_seqs)):
        return False
    per = list(map(len, map(_MESSAGES, items)))
    contents = list(map(_CONTENT, chain.from_iterable(map(_MESSAGES, items))))
    total = len(contents)
    # Contents: each raw one is a whole JSON value, so joined with commas they decode as a
    # list of str only when all are strings; msgspec checks their UTF-8 while decoding
    # (elsewhere in a line, non-ASCII bytes are already syntax errors).
    joined = b",".join(contents)
    try:
        texts = _STRINGS.decode(b"[" + joined + b"]")
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    if len(texts) != total or not all(texts) or any(map(str.isspace, texts)):
        return False
    # Duplicate keys: every key token is followed by exactly one colon, and outside the
    # contents colons occur nowhere else (roles are fixed words, keys known names). So raw
    # colons in the block minus colons in the (kept) contents = key tokens, plus the colons
    # of any overwritten duplicate value. Equal to the decoded key count means no key was
    # repeated. A colon written as an escape (\u003a) is in neither raw count.
    keys = n + 2 * total
    colons = block.count(b":")
    if colons != keys and colons - joined.count(b":") != keys:
        return False
    # Token estimates per example, from exact character counts (as the line path).
    ends = list(accumulate(per))
    pre = [0, *accumulate(map(len, texts))]
    sizes = map(operator.sub, map(pre.__getitem__, ends), map(pre.__getitem__, [0, *ends[:-1]]))
    tokens = list(map(estimate_tokens, sizes, per, repeat(0)))
    limit = v.max_seq_length
    too_long = []
    if limit is not None and max(tokens) > limit:
        too_long = [(i, t) for i, t in enumerate(tokens) if t > limit]
    v.nonblank += n
    v.accept(lineno + 1, formats.CHAT, sum(tokens), False, False, count=n, too_long=too_long)
    return True
