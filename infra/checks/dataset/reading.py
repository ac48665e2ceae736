"""Reading a dataset file: 1 MiB chunks cut into blocks of whole lines.

Memory stays flat whatever the file size: a line over :data:`MAX_LINE_BYTES` is skipped
(reported by the caller as ``line-too-long``) without being held, and :func:`prefetch` reads
and hashes a bounded number of blocks ahead in a thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

#: Longest line we read; longer ones are reported as ``line-too-long`` and skipped.
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Bytes per read.
CHUNK = 1 << 20
#: The UTF-8 byte-order mark (reported on a file's first line).
BOM = b"\xef\xbb\xbf"

#: Called with the number of bytes read so far.
Progress = Callable[[int], None]


class Reader(Protocol):
    """What :func:`read_blocks` reads: a binary file, a Cloud Storage reader or a :class:`FileRange`."""

    def read(self, n: int, /) -> bytes: ...


def read_blocks(
    stream: Reader, hasher: Any, progress: Progress | None, size: list[int]
) -> Iterator[bytes | None]:
    """Yields blocks of whole lines (each block ends with a newline), None for an oversized line.

    Also feeds every byte to ``hasher`` and keeps the bytes read so far in ``size[0]``.
    """
    pending: list[bytes] = []  # pieces of an unfinished line (it may span many chunks)
    pending_size = 0
    skipping = False  # inside an oversized line: drop bytes until its newline
    while True:
        chunk = stream.read(CHUNK)
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


def prefetch(source: Iterator[bytes | None], depth: int = 4) -> Iterator[bytes | None]:
    """Runs ``source`` in a reader thread, ``depth`` blocks ahead (bounded: memory stays flat).

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
            for b in source:
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


class FileRange:
    """A file object limited to ``length`` bytes from its current position."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self.f, self.left = f, length

    def read(self, n: int) -> bytes:
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        return data


class NoHash:
    """Stands in for a hasher in workers (the parent hashes the whole file)."""

    def update(self, data: bytes) -> None:
        pass
