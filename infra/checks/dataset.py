"""Streaming validation of one JSONL dataset file against the five Vertex formats.

Memory stays flat whatever the file size: the file is read in 1 MiB chunks (by a reader
thread that also hashes them) and cut into blocks of whole lines; a line over
:data:`MAX_LINE_BYTES` is skipped and reported without being held.

Speed, in three layers, each exact (a faster layer only ever *accepts*; any doubt goes down):

1. Block fast path (text examples): the C scanner ``_textscan.c`` proves, in one pass over a
   block with the GIL released, that each line is exactly a chat, prompt/completion or
   GenerateContent text example with no duplicate key, valid UTF-8 and JSON strings, roles in
   order and no empty or whitespace text, counting characters as ``len()`` does; it stops at
   the first line it cannot prove, which goes down a layer, and resumes after it. Where the
   extension was not built (no C compiler at install), text chat is proved by two msgspec
   calls per block plus a few C-level passes (:meth:`_Validator.fast_chat_block`; same
   results, several times slower).
2. Line fast path: orjson per line plus type checks of a clean text example, duplicate keys
   excluded by counting (:func:`_no_duplicate_keys`).
3. Slow path: stdlib ``json`` with hooks that see duplicate keys, NaN/Infinity and lone
   surrogates, and :func:`trainer.formats.parse_example`, which names every issue.

Files over :data:`PARALLEL_MIN_BYTES` are split at line boundaries among worker processes on
machines with 4+ CPUs; their partial results merge into exactly what one pass would report.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import operator
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate, chain, repeat
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import msgspec
import orjson
from trainer import formats

from infra import catalog
from infra.checks.report import FileSummary
from infra.checks.tokens import CHARS_PER_TOKEN, TOKENS_PER_TURN, count_tokens, estimate_tokens
from infra.diagnostics import Diagnostic, Severity

try:  # built at install when a C compiler is there (optional: see setup.py)
    from infra.checks import _textscan
except ImportError:  # pragma: no cover - depends on the install
    _textscan = None  # type: ignore[assignment]
if os.environ.get("TUNESTACK_TEXTSCAN") == "0":  # the pure-Python layer only (benchmarks)
    _textscan = None  # type: ignore[assignment]

#: Longest line we read; longer ones are reported as ``line-too-long`` and skipped.
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Diagnostics of one code shown per file; the rest are summed up in one closing line.
MAX_PER_CODE = 50
#: Files at least this big are split among worker processes (one per CPU, at most 8) on
#: machines with 4 CPUs or more; ``TUNESTACK_VALIDATE_WORKERS=N`` sets the count for any file.
PARALLEL_MIN_BYTES = 64 << 20

_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
# Whitespace between a closing quote and a colon: the only layout where counting b'":'
# could miss a key token (JSON allows it; compact writers never emit it).
_WS_COLON = re.compile(rb'"[ \t\r]+:')
# The block fast path for text chat (see _Validator.fast_chat_block).
# Valid role sequences up to 64 turns (longer conversations take the line path).
_VALID_ROLES = frozenset(
    seq
    for k in range(1, 33)
    for seq in (("user", "assistant") * k, ("system", *("user", "assistant") * k))
)
_MESSAGES = operator.attrgetter("messages")
_ROLE = operator.attrgetter("role")
_CONTENT = operator.attrgetter("content")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB89][0-9a-fA-F]{2}")

Progress = Callable[[int], None]


# gc=False: these structs hold no cycles, and skipping GC tracking makes decoding faster.
class _ChatMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "user", "assistant"]
    content: msgspec.Raw


class _ChatExample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[_ChatMessage]


_CHAT_LINES = msgspec.json.Decoder(_ChatExample)
_STRINGS = msgspec.json.Decoder(list[str])
# The C scanner's format codes.
_SCAN_FORMATS = (formats.CHAT, formats.PROMPT_COMPLETION, formats.GENERATE_CONTENT)


def validate_dataset_file(
    path: Path,
    *,
    display: str,
    model: catalog.Model | None,
    tokenizer: Any = None,
    max_seq_length: int | None,
    progress: Progress | None = None,
) -> tuple[FileSummary, list[Diagnostic]]:
    """Validates a local JSONL file line by line.

    Args:
        path: The file to read.
        display: How diagnostics name the file (the path as the user wrote it, or resolved).
        model: The catalog model the data is for (image support, Llama 4 text dropping);
            None skips the model-specific checks.
        tokenizer: A loaded Hugging Face tokenizer for exact token counts; None estimates.
        max_seq_length: Longest allowed example in tokens; None skips the check.
        progress: Called with the number of bytes read so far, about once per MiB.

    Returns:
        The file's summary and its diagnostics (a missing or unreadable file is one
        diagnostic and an unchecked summary).
    """
    summary = FileSummary(uri=display, local_path=path)
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return summary, [
            Diagnostic(
                "error",
                "file-not-found",
                display,
                0,
                0,
                "",
                f"dataset file {display} does not exist",
            )
        ]
    except OSError as e:
        return summary, [
            Diagnostic(
                "error",
                "file-unreadable",
                display,
                0,
                0,
                "",
                f"cannot read {display}: {e.strerror or e}",
            )
        ]
    with stream:
        size = os.fstat(stream.fileno()).st_size
        workers = _workers(size, stream) if tokenizer is None else 1
        if workers > 1:
            return _validate_parallel(
                stream, summary, size, workers, display, model, max_seq_length, progress
            )
        return validate_stream(
            stream,
            summary,
            display=display,
            model=model,
            tokenizer=tokenizer,
            max_seq_length=max_seq_length,
            progress=progress,
        )


def validate_stream(
    stream: IO[bytes],
    summary: FileSummary,
    *,
    display: str,
    model: catalog.Model | None,
    tokenizer: Any = None,
    max_seq_length: int | None,
    progress: Progress | None = None,
) -> tuple[FileSummary, list[Diagnostic]]:
    """Validates JSONL read from a binary stream (a local file or a Cloud Storage reader).

    Fills in ``summary`` (counts, tokens, formats, image buckets, sha256) and returns it with
    the diagnostics; see :func:`validate_dataset_file` for the arguments.
    """
    v = _Validator(display, model, tokenizer, max_seq_length)
    hasher = hashlib.sha256()
    size = [0]
    lineno = 0
    for block in _prefetch(_blocks(stream, hasher, progress, size)):
        if block is None:
            lineno += 1
            v.oversized(lineno)
            continue
        lineno = v.block(lineno, block)
    summary.bytes = size[0]
    return v.finish(summary, hasher.hexdigest())


# --- helpers -------------------------------------------------------------------------------


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _blocks(
    stream: _Reader, hasher: Any, progress: Progress | None, size: list[int]
) -> Iterator[bytes | None]:
    """Yields blocks of whole lines (each block ends with a newline), None for an oversized line.

    Also feeds every byte to ``hasher`` and keeps the bytes read so far in ``size[0]``.
    """
    pending: list[bytes] = []  # pieces of an unfinished line (it may span many chunks)
    pending_size = 0
    skipping = False  # inside an oversized line: drop bytes until its newline
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            break
        hasher.update(chunk)
        size[0] += len(chunk)
        if progress is not None:
            progress(size[0])
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            yield None
            skipping = False
            chunk = chunk[nl + 1 :]
        last = chunk.rfind(b"\n")
        if last < 0:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size > MAX_LINE_BYTES:
                # Drop what we hold: the line is reported, never kept in memory.
                pending, pending_size, skipping = [], 0, True
            continue
        if pending:
            pending.append(chunk[: last + 1])
            head = b"".join(pending)
            if head.find(b"\n") > MAX_LINE_BYTES:
                yield None
                head = head[head.find(b"\n") + 1 :]
            if head:
                yield head
        else:
            yield chunk if last == len(chunk) - 1 else chunk[: last + 1]
        rest = chunk[last + 1 :]
        pending, pending_size = ([rest], len(rest)) if rest else ([], 0)
    if skipping:
        yield None
    elif pending:
        yield b"".join(pending) + b"\n"


def _prefetch(blocks: Iterator[bytes | None], depth: int = 4) -> Iterator[bytes | None]:
    """Runs ``blocks`` in a reader thread, ``depth`` blocks ahead (bounded: memory stays flat).

    Reading and hashing release the GIL, so they overlap with validation on another core.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for b in blocks:
                if not put(b):
                    return
            put(done)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            put(e)

    t = threading.Thread(target=run, name="tunestack-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _starts_clean(stream: IO[bytes]) -> bool:
    """True when the C scanner accepts the file's first line (the stream is left at 0)."""
    if _textscan is None:
        return False
    head = stream.read(1 << 16)
    stream.seek(0)
    return _textscan.scan(head, 0, CHARS_PER_TOKEN, TOKENS_PER_TURN, -1)[0] > 0


def _workers(size: int, stream: IO[bytes] | None = None) -> int:
    """Worker processes for a file of ``size`` bytes (TUNESTACK_VALIDATE_WORKERS overrides).

    A file whose first line the C scanner accepts (``stream``, left at 0) gets none: the
    scanner checks ~700 MB/s on one core (measured), faster than starting workers recoups.
    """
    env = os.environ.get("TUNESTACK_VALIDATE_WORKERS")
    if env and env.isdigit():
        return max(1, int(env)) if size > 0 else 1
    if size < PARALLEL_MIN_BYTES or (stream is not None and _starts_clean(stream)):
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # With 2-3 CPUs the workers' start-up and the parent's hashing eat the gain (measured).
    return min(cpus or 1, 8) if (cpus or 1) >= 4 else 1


def _validate_parallel(
    stream: IO[bytes],
    summary: FileSummary,
    size: int,
    workers: int,
    display: str,
    model: catalog.Model | None,
    max_seq_length: int | None,
    progress: Progress | None,
) -> tuple[FileSummary, list[Diagnostic]]:
    """Splits the file at line boundaries, validates the ranges in worker processes and merges.

    Each worker streams its own range (memory stays flat per process); this process hashes the
    whole file meanwhile, so the sha256 costs no extra time.
    """
    bounds = _split(stream, size, workers * 4)
    path = str(Path(stream.name).resolve())
    # spawn, not fork: callers (the local server) may hold threads and locks.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [
            pool.submit(
                _validate_range, path, a, b, display, model.id if model else None, max_seq_length
            )
            for a, b in zip(bounds, bounds[1:], strict=False)
        ]
        hasher = hashlib.sha256()
        stream.seek(0)
        done = 0
        while chunk := stream.read(_CHUNK * 4):
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
        parts = [f.result() for f in futures]
    v = _Validator(display, model, None, max_seq_length)
    offset = 0
    for part in parts:
        v.merge(part, offset)
        offset += part["lines"]
    summary.bytes = done
    return v.finish(summary, hasher.hexdigest())


def _validate_range(
    path: str, start: int, end: int, display: str, model_id: str | None, max_seq_length: int | None
) -> dict[str, Any]:
    """Worker: validates bytes [start, end) of a file (whole lines) with line numbers from 1."""
    v = _Validator(display, catalog.model(model_id) if model_id else None, None, max_seq_length)
    v.bom_line = 1 if start == 0 else 0
    lineno = 0
    with open(path, "rb") as f:
        f.seek(start)
        for block in _blocks(_Range(f, end - start), _NoHash(), None, [0]):
            if block is None:
                lineno += 1
                v.oversized(lineno)
            else:
                lineno = v.block(lineno, block)
    return v.partial(lineno)


def _split(stream: IO[bytes], size: int, parts: int) -> list[int]:
    """Offsets that cut the file into about ``parts`` ranges, each starting a line."""
    bounds = [0]
    for k in range(1, parts):
        pos = max(size * k // parts, bounds[-1])
        stream.seek(pos)
        while chunk := stream.read(_CHUNK):  # find the next newline without reading a line whole
            nl = chunk.find(b"\n")
            if nl >= 0:
                pos += nl + 1
                break
            pos += len(chunk)
        if pos >= size:
            break
        if pos > bounds[-1]:
            bounds.append(pos)
    bounds.append(size)
    return bounds


class _Range:
    """A file object limited to ``length`` bytes from its current position."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self.f, self.left = f, length

    def read(self, n: int) -> bytes:
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        return data


class _NoHash:
    """Stands in for a hasher in workers (the parent hashes the whole file)."""

    def update(self, data: bytes) -> None:
        pass


@dataclass
class _Validator:
    display: str
    model: catalog.Model | None
    tokenizer: Any
    max_seq_length: int | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    examples: int = 0
    nonblank: int = 0
    tokens: int = 0
    # Runs of consecutive examples of one format family: [family, first line, count, lines];
    # "lines" samples up to MAX_PER_CODE + 1 of them. Mixed formats are judged in finish(),
    # so that ranges validated apart can be merged first.
    runs: list[list[Any]] = field(default_factory=list)
    bom_line: int = 1  # the line a byte-order mark would start (0: this range has none)
    formats: dict[str, None] = field(default_factory=dict)
    image_buckets: set[str] = field(default_factory=set)
    image_examples: int = 0
    text_only: int = 0
    first_text_only: int = 0
    inexact: bool = False
    shown: dict[str, int] = field(default_factory=dict)
    hidden: dict[str, tuple[Severity, int, int]] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        return self.runs[0][0] if self.runs else None

    def add(self, severity: Severity, code: str, line: int, col: int, fld: str, msg: str) -> None:
        self.append(Diagnostic(severity, code, self.display, line, col, fld, msg))

    def append(self, d: Diagnostic, hidden: int = 1) -> None:
        """Keeps ``d`` unless MAX_PER_CODE of its code are shown; then only counts it."""
        n = self.shown.get(d.code, 0)
        if n >= MAX_PER_CODE:
            sev, first, count = self.hidden.get(d.code, (d.severity, d.line, 0))
            self.hidden[d.code] = (sev, min(first, d.line), count + hidden)
            return
        self.shown[d.code] = n + 1
        self.diagnostics.append(d)

    def run(self, family: str, line: int, count: int) -> None:
        """Records ``count`` consecutive examples of ``family`` from ``line`` on."""
        last = self.runs[-1] if self.runs else None
        if last is None or last[0] != family:
            last = [family, line, 0, []]
            self.runs.append(last)
        last[2] += count
        room = MAX_PER_CODE + 1 - len(last[3])
        if room > 0:
            last[3].extend(range(line, line + min(count, room)))

    def partial(self, lines: int) -> dict[str, Any]:
        """What a worker hands back for :meth:`merge` (plain data, picklable)."""
        keep = (
            "diagnostics",
            "examples",
            "nonblank",
            "tokens",
            "runs",
            "formats",
            "image_buckets",
            "image_examples",
            "text_only",
            "first_text_only",
            "inexact",
            "hidden",
        )
        return {"lines": lines, **{k: getattr(self, k) for k in keep}}

    def merge(self, part: dict[str, Any], offset: int) -> None:
        """Adds a range validated elsewhere whose first line is ``offset + 1``."""
        for d in part["diagnostics"]:
            self.append(dataclasses.replace(d, line=d.line + offset))
        for code, (sev, first, count) in part["hidden"].items():
            d = Diagnostic(sev, code, self.display, first + offset, 1, "", "")
            self.shown[code] = max(self.shown.get(code, 0), MAX_PER_CODE)
            self.append(d, hidden=count)
        for fam, line, count, sample in part["runs"]:
            last = self.runs[-1] if self.runs else None
            if last is None or last[0] != fam:
                last = [fam, line + offset, 0, []]
                self.runs.append(last)
            last[2] += count
            last[3].extend(x + offset for x in sample[: MAX_PER_CODE + 1 - len(last[3])])
        for k in ("examples", "nonblank", "tokens", "image_examples", "text_only"):
            setattr(self, k, getattr(self, k) + part[k])
        self.formats.update(part["formats"])
        self.image_buckets |= part["image_buckets"]
        self.inexact = self.inexact or part["inexact"]
        if part["first_text_only"] and not self.first_text_only:
            self.first_text_only = part["first_text_only"] + offset

    def oversized(self, lineno: int) -> None:
        self.nonblank += 1
        self.add(
            "error",
            "line-too-long",
            lineno,
            1,
            "",
            f"line is over {MAX_LINE_BYTES // (1 << 20)} MiB; JSONL lines this long are not read (one example per line, images in Cloud Storage)",
        )

    def block(self, lineno: int, block: bytes) -> int:
        """Validates a block of whole lines after line ``lineno``; returns the last line number."""
        if _textscan is not None and self.tokenizer is None:
            return self.scan_block(lineno, block)
        lines = block.count(b"\n")
        if (
            self.tokenizer is None
            and self.family in (None, formats.CHAT)
            and (lineno > 0 or not block.startswith(_BOM))
            and len(block) <= 2 * _CHUNK
            and self.fast_chat_block(lineno, block, lines)
        ):
            return lineno + lines
        parts = block.split(b"\n")
        parts.pop()  # the empty piece after the block's final newline
        for raw in parts:
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                self.oversized(lineno)
            else:
                self.line(lineno, raw)
        return lineno

    def scan_block(self, lineno: int, block: bytes) -> int:
        """Block fast path with the C scanner: runs of clean text examples are accepted in C,
        each line it cannot prove is checked exactly by :meth:`line`, and scanning resumes
        after it."""
        limit = -1 if self.max_seq_length is None else self.max_seq_length
        start, size = 0, len(block)
        while start < size:
            n, end, tokens, _, _, too_long, kind = _textscan.scan(
                block, start, CHARS_PER_TOKEN, TOKENS_PER_TURN, limit
            )
            if n:  # a run of one format; the next may be of another, or unproven
                self.nonblank += n
                fmt = _SCAN_FORMATS[kind]
                self.accept(lineno + 1, fmt, tokens, False, False, count=n, too_long=too_long)
                lineno += n
                start = end
                continue
            nl = block.find(b"\n", start)
            nl = size if nl < 0 else nl
            lineno += 1
            if nl - start > MAX_LINE_BYTES:
                self.oversized(lineno)
            else:
                self.line(lineno, block[start:nl])
            start = nl + 1
        return lineno

    def fast_chat_block(self, lineno: int, block: bytes, lines: int) -> bool:
        """Accepts a block when every line is provably a clean text chat example.

        The pure-Python fast layer, used where the C scanner was not built. One msgspec call
        decodes the whole block into typed structs (roles checked, contents kept as raw JSON),
        a second decodes all contents to str at once (strings only, valid UTF-8, exact
        lengths); the remaining rules are checked with a few C-level passes. Any doubt returns
        False and the block is checked line by line, which names each problem; so this path
        never hides one. Its token estimates equal the line path's.
        """
        try:
            items = _CHAT_LINES.decode_lines(block)
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
        limit = self.max_seq_length
        too_long = []
        if limit is not None and max(tokens) > limit:
            too_long = [(i, t) for i, t in enumerate(tokens) if t > limit]
        self.nonblank += n
        self.accept(lineno + 1, formats.CHAT, sum(tokens), False, False, count=n, too_long=too_long)
        return True

    def line(self, lineno: int, raw: bytes) -> None:
        if lineno == self.bom_line and raw.startswith(_BOM):
            self.add(
                "error",
                "invalid-encoding",
                1,
                1,
                "",
                "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM",
            )
            raw = raw[3:]
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = self.slow_decode(lineno, raw)
            if obj is None:
                return
            self.nonblank += 1
            self.example(lineno, obj, raw, checked_keys=True)
            return
        self.nonblank += 1
        self.example(lineno, obj, raw, checked_keys=False)

    def example(self, lineno: int, obj: Any, raw: bytes, *, checked_keys: bool) -> None:
        if type(obj) is not dict:
            what = (
                "a JSON array (a top-level array is not JSONL: write one object per line)"
                if isinstance(obj, list)
                else f"{formats._kind(obj)}"
            )
            self.add(
                "error",
                "not-an-object",
                lineno,
                1,
                "",
                f"expected one JSON object per line, got {what}",
            )
            return
        fast = _fast_text(obj)
        if fast is not None:
            fmt, chars, turns, keys = fast
            if not checked_keys and not _no_duplicate_keys(raw, keys):
                self.exact_duplicates(lineno, raw)
            tokens = None
            if self.tokenizer is not None:
                # Exact counts need the normalised turns; build them the one way the trainer does.
                result = formats.parse_example(obj)
                if result.example is not None:
                    tokens = count_tokens(self.tokenizer, result.example)
            self.accept(
                lineno,
                fmt,
                tokens if tokens is not None else estimate_tokens(chars, turns, 0),
                tokens is not None,
                False,
            )
            return
        if not checked_keys and not _no_duplicate_keys(raw, _count_keys(obj)):
            self.exact_duplicates(lineno, raw)
        result = formats.parse_example(obj)
        for issue in result.issues:
            self.add(issue.severity, issue.code, lineno, 1, issue.field, issue.message)
        ex = result.example
        if ex is None:
            return
        images = [img for t in ex.turns for img in t.images]
        for img in images:
            if img.uri is not None:
                gs = img.uri[5:].partition("/")[0]
                self.image_buckets.add(gs)
        if images and self.model is not None and not self.model.supports_images:
            self.add(
                "error",
                "images-not-supported",
                lineno,
                1,
                _first_image_field(ex),
                f"{self.model.display_name} is text-only; remove the images or tune an image model (Llama 4 Scout)",
            )
        if self.tokenizer is not None:
            tokens = count_tokens(self.tokenizer, ex) + estimate_tokens(0, 0, len(images))
            exact = not images
        else:
            tokens, exact = estimate_tokens(ex.text_chars, len(ex.turns), len(images)), False
        self.accept(lineno, ex.format, tokens, exact, bool(images))

    def accept(
        self,
        lineno: int,
        fmt: str,
        tokens: int,
        exact: bool,
        has_images: bool,
        *,
        count: int = 1,
        too_long: list[tuple[int, int]] | None = None,
    ) -> None:
        """Accepts ``count`` examples of ``fmt`` from line ``lineno`` on, ``tokens`` in all.

        ``too_long``: (index from ``lineno``, tokens) of the examples over the model's limit;
        None judges the one example by ``tokens``.
        """
        self.examples += count
        self.tokens += tokens
        if not exact:
            self.inexact = True
        if fmt not in self.formats:
            self.formats[fmt] = None
        self.run(formats.FAMILY[fmt], lineno, count)
        if has_images:
            self.image_examples += count
        else:
            self.text_only += count
            if not self.first_text_only:
                self.first_text_only = lineno
        if too_long is None:
            limit = self.max_seq_length
            too_long = [(0, tokens)] if limit is not None and tokens > limit else []
        for i, t in too_long:
            self.too_long(lineno + i, t, exact)

    def too_long(self, lineno: int, tokens: int, exact: bool) -> None:
        if exact:
            self.add(
                "error",
                "sequence-too-long",
                lineno,
                1,
                "",
                f"{tokens} tokens, over the model's limit of {self.max_seq_length}; Vertex rejects or truncates it",
            )
        else:
            self.add(
                "warning",
                "sequence-too-long",
                lineno,
                1,
                "",
                f"about {tokens} tokens (estimated; set the dataset's tokenizer for an exact count), over the model's limit of {self.max_seq_length}",
            )

    def slow_decode(self, lineno: int, raw: bytes) -> Any:
        """Decodes a line orjson refused, naming the exact problem; None when unusable."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.nonblank += 1
            self.add(
                "error",
                "invalid-encoding",
                lineno,
                e.start + 1,
                "",
                f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1}); save the file as UTF-8",
            )
            return None
        if not text.strip():
            self.add(
                "error",
                "invalid-json",
                lineno,
                1,
                "",
                "blank line; JSONL has one JSON object on every line (remove it)",
            )
            return None
        self.nonblank += 1
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
            self.add("error", "invalid-json", lineno, e.colno, "", _json_problem(text, e))
            return None
        except RecursionError:
            self.add("error", "invalid-json", lineno, 1, "", "JSON nested too deeply")
            return None
        if found:
            col = text.find(found[0]) + 1
            self.add(
                "error",
                "non-finite-number",
                lineno,
                max(col, 1),
                "",
                f"{found[0]} is not a JSON number (NaN and Infinity are not allowed); use a finite number or a string",
            )
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            m = _SURROGATE_ESCAPE.search(raw)
            esc = m.group().decode() if m else "a \\uD800-\\uDFFF escape"
            self.add(
                "error",
                "invalid-encoding",
                lineno,
                (m.start() + 1) if m else 1,
                "",
                f"lone surrogate {esc}: not a valid Unicode character (broken emoji or truncated text?)",
            )
            return None
        for key in dups:
            self.duplicate(lineno, raw, key)
        if found:
            return None
        return obj

    def exact_duplicates(self, lineno: int, raw: bytes) -> None:
        dups: list[str] = []
        json.loads(raw, object_pairs_hook=_pairs_hook(dups))
        for key in dups:
            self.duplicate(lineno, raw, key)

    def duplicate(self, lineno: int, raw: bytes, key: str) -> None:
        token = json.dumps(key).encode()
        first = raw.find(token)
        second = raw.find(token, first + 1) if first >= 0 else -1
        self.add(
            "error",
            "duplicate-key",
            lineno,
            (second + 1) if second >= 0 else 1,
            key,
            f"key {key!r} appears twice in one object; JSON parsers keep only one of them",
        )

    def finish(self, summary: FileSummary, sha256: str) -> tuple[FileSummary, list[Diagnostic]]:
        if self.nonblank == 0:
            self.add("error", "empty-dataset", 1, 1, "", "the file holds no examples")
        model = self.model
        if (
            model is not None
            and model.id in catalog.DROPS_TEXT_WHEN_IMAGES
            and self.image_examples
            and self.text_only
        ):
            total = self.image_examples + self.text_only
            self.add(
                "warning",
                "text-examples-dropped",
                self.first_text_only,
                1,
                "",
                f"{self.text_only} of {total} examples are text-only and {self.image_examples} have images: {model.display_name} tuning drops all {self.text_only} text-only examples when any example has an image (first text-only example here)",
            )
        if self.runs:
            family, first_line = self.runs[0][0], self.runs[0][1]
            for fam, _, count, sample in self.runs[1:]:
                if fam == family:
                    continue
                msg = f"this example is {fam}, but the file started as {family} on line {first_line}; one file holds one format"
                for line in sample:
                    self.add("error", "mixed-formats", line, 1, "", msg)
                if count > len(sample):  # beyond the sample: counted, located at its end
                    d = Diagnostic("error", "mixed-formats", self.display, sample[-1], 1, "", "")
                    self.shown["mixed-formats"] = MAX_PER_CODE
                    self.append(d, hidden=count - len(sample))
        for code, (sev, first, count) in self.hidden.items():
            self.diagnostics.append(
                Diagnostic(
                    sev,
                    code,
                    self.display,
                    first,
                    1,
                    "",
                    f"{count} more line(s) with {code} not shown (first here)",
                )
            )
        summary.examples = self.examples
        summary.tokens = self.tokens
        summary.tokens_exact = self.examples > 0 and self.tokenizer is not None and not self.inexact
        summary.formats = list(self.formats)
        summary.image_buckets = sorted(self.image_buckets)
        summary.sha256 = sha256
        summary.checked = True
        summary.text_only_examples = self.text_only
        summary.image_examples = self.image_examples
        self.diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
        return summary, self.diagnostics


def _fast_text(obj: dict[str, Any]) -> tuple[str, int, int, int] | None:
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
    keys = 1
    chars = 0
    turns = 0
    si = obj.get("systemInstruction")
    if si is not None:
        if n != 2 or type(si) is not dict or len(si) != 1:
            return None
        got = _fast_parts(si.get("parts"))
        if got is None:
            return None
        chars += got[0]
        keys += 2 + got[1]
        turns += 1
    elif n != 1:
        return None
    expect = "user"
    for c in contents:
        if type(c) is not dict or len(c) != 2 or c.get("role") != expect:
            return None
        got = _fast_parts(c.get("parts"))
        if got is None:
            return None
        chars += got[0]
        keys += 2 + got[1]
        expect = "assistant" if expect == "user" else "user"
    if expect != "user":
        return None
    return formats.GENERATE_CONTENT, chars, turns + len(contents), keys


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


def _no_duplicate_keys(raw: bytes, decoded_keys: int) -> bool:
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


def _count_keys(obj: Any) -> int:
    if type(obj) is dict:
        return len(obj) + sum(_count_keys(v) for v in obj.values() if type(v) in (dict, list))
    if type(obj) is list:
        return sum(_count_keys(v) for v in obj if type(v) in (dict, list))
    return 0


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
