"""Checkpoint selection after training: final, epoch-N, best, checkpoint-<step>."""

from __future__ import annotations

import pytest

from infra.checkpoint_selection import CheckpointNotFound
from infra.vertex.checkpoints import resolve_checkpoint

RUN = "gs://b/runs/j/0123456789abcdef/postprocess/node-0/checkpoints"
CKPTS = [
    {"epoch": 1, "step": 6, "uri": f"{RUN}/checkpoint-6", "eval_loss": 2.5},
    {"epoch": 2, "step": 12, "uri": f"{RUN}/checkpoint-12", "eval_loss": 1.9},
    {"epoch": 3, "step": 18, "uri": f"{RUN}/checkpoint-18", "eval_loss": 2.1},
    {"epoch": 3, "step": 18, "uri": f"{RUN}/final", "eval_loss": 2.1},
]


@pytest.mark.parametrize(
    ("selection", "want"),
    [
        ("final", "final"),
        ("epoch-1", "checkpoint-6"),
        ("epoch-3", "checkpoint-18"),
        ("best", "checkpoint-12"),
        ("checkpoint-12", "checkpoint-12"),
    ],
)
def test_selection_resolves_to_the_recorded_checkpoint(selection: str, want: str) -> None:
    assert resolve_checkpoint(selection, CKPTS) == f"{RUN}/{want}"


def test_ties_in_best_go_to_the_earlier_step_and_final_is_never_best() -> None:
    tied = [{**c, "eval_loss": 1.0} for c in CKPTS]
    assert resolve_checkpoint("best", tied) == f"{RUN}/checkpoint-6"


@pytest.mark.parametrize(
    ("selection", "cks", "message"),
    [
        ("epoch-4", CKPTS, "no checkpoint of epoch 4 (epochs kept: 1, 2, 3)"),
        ("checkpoint-7", CKPTS, "no checkpoint at that step (kept: checkpoint-6"),
        ("best", [{**c, "eval_loss": None} for c in CKPTS], "no checkpoint has a validation loss"),
        ("final", [], "the job has no checkpoints"),
    ],
)
def test_missing_checkpoints_are_named(selection: str, cks: list, message: str) -> None:
    with pytest.raises(CheckpointNotFound, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_checkpoint(selection, cks)
