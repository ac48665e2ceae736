"""Polling with a deadline, in one place, via ``google.api_core.retry``.

:func:`poll` calls a fetch until it is done: a job's state, an endpoint's model, a Cloud Build,
a server answering its health check, a process ending. The sleeps double from
``initial_delay`` up to ``max_delay`` (equal values give a fixed interval) and never overshoot
the deadline, so a test's tiny intervals run fast and the last poll happens at the deadline.
No other module in ``infra/`` sleeps between attempts (Vertex operation futures wait through
:mod:`infra.vertex.operations`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from google.api_core import retry

T = TypeVar("T")

#: Poll intervals when a caller gives none (seconds).
INITIAL_DELAY = 2.0
MAX_DELAY = 60.0


class _NotDone(Exception):
    """The polled thing is not done yet: the one exception :func:`poll` retries."""


def poll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    deadline_s: float,
    expired: Callable[[T], Exception],
    on_progress: Callable[[T], None] | None = None,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> T:
    """Calls ``fetch`` until ``done`` says so, with exponential backoff and a hard deadline.

    Args:
        fetch: One poll (a get); its exceptions propagate at once.
        done: Whether a fetched value is final.
        deadline_s: Seconds to wait at most.
        expired: Builds the exception raised when the deadline passes (given the last value).
        on_progress: Called with every fetched value.
        initial_delay: First poll interval; doubles up to ``max_delay``.
        max_delay: Longest poll interval.

    Returns:
        The first value ``done`` accepts.

    Raises:
        Exception: what ``expired`` builds, or what ``fetch`` raised.
    """
    end = time.monotonic() + deadline_s
    # One instance per wait, re-raised without its old traceback: api_core keeps every retried
    # error, and a fresh one (holding its frame's fetched value) per poll would pile up for days.
    not_done = _NotDone()

    def attempt() -> T:
        value = fetch()
        if on_progress is not None:
            on_progress(value)
        if done(value):
            return value
        if end - time.monotonic() <= 0:
            raise expired(value)
        raise not_done.with_traceback(None)

    return retry.retry_target(
        attempt,
        retry.if_exception_type(_NotDone),
        _backoff(end, initial_delay, max_delay),
        timeout=None,  # the deadline is ``expired``'s: it knows what was still running
        exception_factory=_reraise,
    )


def _backoff(end: float, initial: float, maximum: float) -> Iterator[float]:
    delay = initial
    while True:
        yield max(0.0, min(delay, end - time.monotonic()))
        delay = min(delay * 2, maximum)


def _reraise(
    errors: list[Exception], _reason: retry.RetryFailureReason, _timeout: float | None
) -> tuple[Exception, Exception | None]:
    # Only non-retryable errors end the retry (there is no api_core timeout): raise them as
    # they came, cause included.
    last = errors[-1]
    cause = last.__cause__
    return last, cause if isinstance(cause, Exception) else None
