"""Big files split among worker processes, merged into exactly what one pass reports.

Files over :data:`PARALLEL_MIN_BYTES` are cut at line boundaries (:func:`split`) on machines
with 4+ CPUs; each worker validates its ranges with line numbers from 1
(:func:`_validate_range`) and :meth:`Validator.merge` shifts and joins them in order.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

from infra import catalog
from infra.checks.dataset import blocks
from infra.checks.dataset.reading import CHUNK, FileRange, NoHash, Progress, read_blocks
from infra.checks.dataset.validator import Validator
from infra.checks.report import FileSummary
from infra.checks.tokens import CHARS_PER_TOKEN, TOKENS_PER_TURN
from infra.diagnostics import Diagnostic

#: Files at least this big are split among worker processes (one per CPU, at most 8) on
#: machines with 4 CPUs or more; ``TUNESTACK_VALIDATE_WORKERS=N`` sets the count for any file.
PARALLEL_MIN_BYTES = 64 << 20


def workers(size: int, stream: IO[bytes] | None = None) -> int:
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


def validate_parallel(
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

    Args:
        stream: The open file (its ``name`` is what the workers open).
        summary: Filled in and returned, as by :func:`infra.checks.dataset.validate_stream`.
        size: The file's size in bytes.
        workers: How many worker processes (from :func:`workers`).
        display: How diagnostics name the file.
        model: The catalog model the data is for; None skips the model-specific checks.
        max_seq_length: Longest allowed example in tokens; None skips the check.
        progress: Called with the bytes hashed so far.

    Returns:
        The summary and the diagnostics, exactly as one pass would report them.
    """
    bounds = split(stream, size, workers * 4)
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
        while chunk := stream.read(CHUNK * 4):
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
        parts = [f.result() for f in futures]
    v = Validator(display, model, None, max_seq_length)
    offset = 0
    for part in parts:
        v.merge(part, offset)
        offset += part["lines"]
    summary.bytes = done
    return v.finish(summary, hasher.hexdigest())


def split(stream: IO[bytes], size: int, parts: int) -> list[int]:
    """Offsets that cut the file into about ``parts`` ranges, each starting a line."""
    bounds = [0]
    for k in range(1, parts):
        pos = max(size * k // parts, bounds[-1])
        stream.seek(pos)
        while chunk := stream.read(CHUNK):  # find the next newline without reading a line whole
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


# --- helpers -------------------------------------------------------------------------------


def _starts_clean(stream: IO[bytes]) -> bool:
    """True when the C scanner accepts the file's first line (the stream is left at 0)."""
    if blocks.textscan is None:
        return False
    head = stream.read(1 << 16)
    stream.seek(0)
    return blocks.textscan.scan(head, 0, CHARS_PER_TOKEN, TOKENS_PER_TURN, -1)[0] > 0


def _validate_range(
    path: str, start: int, end: int, display: str, model_id: str | None, max_seq_length: int | None
) -> dict[str, Any]:
    """Worker: validates bytes [start, end) of a file (whole lines) with line numbers from 1."""
    v = Validator(display, catalog.model(model_id) if model_id else None, None, max_seq_length)
    v.bom_line = 1 if start == 0 else 0
    with open(path, "rb") as f:
        f.seek(start)
        lines = blocks.check_blocks(v, read_blocks(FileRange(f, end - start), NoHash(), None, [0]))
    return v.partial(lines)
