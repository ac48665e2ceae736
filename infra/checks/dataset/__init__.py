"""Streaming validation of one JSONL dataset file against the five Vertex formats.

Memory stays flat whatever the file size: the file is read in 1 MiB chunks (by a reader
thread that also hashes them) and cut into blocks of whole lines (:mod:`.reading`); a line
over :data:`.reading.MAX_LINE_BYTES` is skipped and reported without being held.

Speed, in three layers, each exact (a faster layer only ever *accepts*; any doubt goes down):

1. Block fast path (text examples, :mod:`.blocks`): the C scanner ``_textscan.c`` proves, in
   one pass over a block with the GIL released, that each line is exactly a chat,
   prompt/completion or GenerateContent text example with no duplicate key, valid UTF-8 and
   JSON strings, roles in order and no empty or whitespace text, counting characters as
   ``len()`` does; it stops at the first line it cannot prove, which goes down a layer, and
   resumes after it. Where the extension was not built (no C compiler at install), text chat
   is proved by two msgspec calls per block plus a few C-level passes
   (:func:`.blocks.fast_chat_block`; same results, several times slower).
2. Line fast path (:mod:`.fast_line`): orjson per line plus type checks of a clean text
   example, duplicate keys excluded by counting (:func:`.fast_line.no_duplicate_keys`).
3. Slow path (:mod:`.lines`): stdlib ``json`` with hooks that see duplicate keys,
   NaN/Infinity and lone surrogates, and :func:`trainer.formats.parse_example`, which names
   every issue.

All three record into one :class:`.validator.Validator`, the only place the diagnostics are
made. Files over :data:`.parallel.PARALLEL_MIN_BYTES` are split at line boundaries among
worker processes on machines with 4+ CPUs (:mod:`.parallel`); their partial results merge
into exactly what one pass would report.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

from infra import catalog
from infra.checks.dataset import blocks, parallel
from infra.checks.dataset.reading import Progress, prefetch, read_blocks
from infra.checks.dataset.validator import Validator
from infra.checks.report import FileSummary
from infra.diagnostics import Diagnostic


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
    except OSError as e:
        v = Validator(display, model, tokenizer, max_seq_length)
        if isinstance(e, FileNotFoundError):
            v.add(
                "error",
                "file-not-found",
                "",
                f"dataset file {display} does not exist",
                line=0,
                column=0,
            )
        else:
            v.add(
                "error",
                "file-unreadable",
                "",
                f"cannot read {display}: {e.strerror or e}",
                line=0,
                column=0,
            )
        return summary, v.diagnostics
    with stream:
        size = os.fstat(stream.fileno()).st_size
        workers = parallel.workers(size, stream) if tokenizer is None else 1
        if workers > 1:
            return parallel.validate_parallel(
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
    v = Validator(display, model, tokenizer, max_seq_length)
    hasher = hashlib.sha256()
    size = [0]
    blocks.check_blocks(v, prefetch(read_blocks(stream, hasher, progress, size)))
    summary.bytes = size[0]
    return v.finish(summary, hasher.hexdigest())
