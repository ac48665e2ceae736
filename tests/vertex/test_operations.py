"""The one waiting helper: deadlines, intervals and errors of ``infra.vertex.operations``."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as gexc

from infra.vertex.errors import DeadlineExceeded
from infra.wait import poll


def test_poll_returns_the_first_done_value_and_reports_every_poll():
    values = iter([1, 2, 3, 4])
    seen: list[int] = []
    got = poll(
        lambda: next(values),
        lambda v: v == 3,
        5,
        DeadlineExceeded,
        seen.append,
        initial_delay=0.001,
    )
    assert got == 3 and seen == [1, 2, 3]


def test_poll_raises_what_expired_builds_at_the_deadline_without_overshooting():
    polls: list[float] = []
    start = time.monotonic()

    def fetch() -> str:
        polls.append(time.monotonic())
        return "RUNNING"

    with pytest.raises(DeadlineExceeded, match="still RUNNING"):
        poll(
            fetch,
            lambda _v: False,
            0.3,
            lambda v: DeadlineExceeded(f"still {v}"),
            initial_delay=0.05,
            max_delay=10,
        )
    # Intervals double (0.05, 0.1, ...) but the last sleep is cut to the deadline.
    assert 0.3 <= time.monotonic() - start < 1.0
    assert 3 <= len(polls) <= 6


def test_poll_lets_errors_of_a_fetch_through_at_once():
    calls = []

    def fetch() -> None:
        calls.append(1)
        raise gexc.NotFound("gone")

    with pytest.raises(gexc.NotFound):
        poll(fetch, lambda _v: True, 5, DeadlineExceeded, initial_delay=0.001)
    assert len(calls) == 1
