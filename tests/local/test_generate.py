"""The decode loop's bounds, in-process with a scripted model: EOS, stop sequences split across
tokens, max_tokens, the wall clock, cancellation, and the context budget."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from infra.local.generate import (
    Cancelled,
    DeadlineExceeded,
    Outcome,
    RequestError,
    Sampling,
    budget,
    check_prompt_chars,
    decode_loop,
    number,
)

VOCAB = ["<eos>", "a", "b", "c", "STO", "P", " "]


class Scripted:
    """A 'model' that emits ``script`` greedily, one token per call."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.calls = 0

    def __call__(self, input_ids: Any, **kwargs: Any) -> Any:
        logits = torch.full((1, 1, len(VOCAB)), -10.0)
        logits[0, 0, self.script[min(self.calls, len(self.script) - 1)]] = 10.0
        self.calls += 1
        return SimpleNamespace(logits=logits, cache=None)


class Tok:
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i == 0))


def _run(
    script: list[int], sampling: Sampling, n: int = 20, **kw: Any
) -> tuple[list[str], Outcome]:
    outcome = Outcome()
    pieces = list(
        decode_loop(
            Scripted(script),
            Tok(),
            [1, 2],
            sampling,
            n,
            {0},
            outcome,
            kw.get("cancel", threading.Event()),
            kw.get("timeout", 60.0),
        )
    )
    return pieces, outcome


def test_eos_ends_with_stop_and_length_otherwise() -> None:
    pieces, out = _run([1, 2, 0], Sampling(temperature=0))
    assert "".join(pieces) == "ab" and out.finish_reason == "stop" and out.completion_tokens == 2
    pieces, out = _run([1], Sampling(temperature=0), n=5)
    assert (
        "".join(pieces) == "aaaaa" and out.finish_reason == "length" and out.completion_tokens == 5
    )


def test_stop_sequence_split_across_tokens_is_held_back_and_cut() -> None:
    pieces, out = _run([1, 2, 4, 5, 3], Sampling(temperature=0, stop=("STOP",)))
    assert "".join(pieces) == "ab" and out.finish_reason == "stop"
    assert all("S" not in p for p in pieces)  # "STO" was held back, never sent
    # A prefix of a stop that does not complete is released.
    pieces, out = _run([1, 4, 3, 0], Sampling(temperature=0, stop=("STOP",)))
    assert "".join(pieces) == "aSTOc" and out.finish_reason == "stop"


def test_deadline_and_cancel_stop_the_loop() -> None:
    with pytest.raises(DeadlineExceeded):
        _run([1], Sampling(temperature=0), n=10_000, timeout=0.0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        _run([1], Sampling(temperature=0), n=10_000, cancel=cancel)


def test_seeded_sampling_is_reproducible() -> None:
    def run(seed: int) -> str:
        class Noisy(Scripted):
            def __call__(self, input_ids: Any, **kwargs: Any) -> Any:
                return SimpleNamespace(logits=torch.zeros((1, 1, len(VOCAB))), cache=None)

        out = Outcome()
        return "".join(
            decode_loop(
                Noisy([1]), Tok(), [1], Sampling(seed=seed), 30, set(), out, threading.Event(), 60
            )
        )

    assert run(3) == run(3) and run(3) != run(4)


def test_budget_names_both_numbers_and_defaults_to_the_rest_of_the_context() -> None:
    assert budget(100, None, 8192, None) == 8092
    assert budget(100, 50, 8192, None) == 50
    with pytest.raises(RequestError, match="8192.*100.*8092"):
        budget(100, 9000, 8192, None)
    with pytest.raises(RequestError, match="8192"):
        budget(8192, 1, 8192, None)
    with pytest.raises(RequestError, match="cap of 64"):
        budget(10, 100, 8192, 64)
    with pytest.raises(RequestError, match="characters"):
        check_prompt_chars("x" * (8192 * 32 + 1), 8192)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), True, "1", None])
def test_numbers_must_be_finite_numbers(value: Any) -> None:
    with pytest.raises(RequestError):
        number({"t": value}, "t", 1.0)
