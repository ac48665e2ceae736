"""An endpoint's checkpoint selection: parsed before training, resolved after it."""

from __future__ import annotations

import pytest

from infra import checkpoint_selection


def test_parse_checkpoint() -> None:
    p = checkpoint_selection.parse_checkpoint
    assert p("final") == checkpoint_selection.Selection("final")
    assert p("best") == checkpoint_selection.Selection("best")
    assert p("epoch-2") == checkpoint_selection.Selection("epoch", 2)
    assert p("checkpoint-12") == checkpoint_selection.Selection("step", 12)
    for bad in ("", "epoch-0", "epoch-01", "checkpoint-0", "checkpoint-", "FINAL", " final",
                "epoch-1 ", "epoch-x", "checkpoint-" + "1" * 30, "last"):  # fmt: skip
        assert p(bad) is None, bad


CKPTS = [
    {"epoch": 2, "step": 12, "uri": "gs://b/o/checkpoint-12", "eval_loss": 0.9},
    {"epoch": 1, "step": 6, "uri": "gs://b/o/checkpoint-6", "eval_loss": 0.7},
    {"epoch": 3, "step": 18, "uri": "gs://b/o/checkpoint-18", "eval_loss": 0.7},
]


def test_resolve_checkpoint() -> None:
    r = checkpoint_selection.resolve_checkpoint
    assert r("final", CKPTS, "gs://b/o/final") == "gs://b/o/final"
    assert r("final", CKPTS) == "gs://b/o/checkpoint-18"  # no final: the last step
    assert r("epoch-2", CKPTS) == "gs://b/o/checkpoint-12"
    assert r("checkpoint-6", CKPTS) == "gs://b/o/checkpoint-6"
    # Lowest validation loss; a tie goes to the earlier checkpoint.
    assert r("best", CKPTS) == "gs://b/o/checkpoint-6"
    nan = [{**c, "eval_loss": float("nan")} if c["step"] == 6 else c for c in CKPTS]
    assert r("best", nan) == "gs://b/o/checkpoint-18"  # NaN is never the best
    no_loss = [{k: v for k, v in c.items() if k != "eval_loss"} for c in CKPTS]
    assert r("epoch-1", no_loss) == "gs://b/o/checkpoint-6"


@pytest.mark.parametrize(
    ("selection", "checkpoints", "message"),
    [
        ("epoch-4", CKPTS, "epoch-4: the job kept no checkpoint of epoch 4 (epochs kept: 1, 2, 3)"),
        ("checkpoint-7", CKPTS, "checkpoint-7: no checkpoint at that step (kept: checkpoint-6, checkpoint-12, checkpoint-18)"),
        ("best", [{k: v for k, v in c.items() if k != "eval_loss"} for c in CKPTS], "best: no checkpoint has a validation loss"),
        ("final", [], "final: the job has no checkpoints"),
        ("epoch-1", [], "epochs kept: none"),
        ("latest", CKPTS, "is not final, best, epoch-N or checkpoint-<step>"),
        ("epoch-1", [{"epoch": "1", "step": 6, "uri": "gs://x"}], "malformed checkpoint record"),
        ("epoch-1", [{"epoch": 1, "step": 6, "uri": ""}], "malformed checkpoint record"),
    ],
)  # fmt: skip
def test_resolve_checkpoint_errors(selection: str, checkpoints: list, message: str) -> None:
    with pytest.raises(checkpoint_selection.CheckpointNotFound) as e:
        checkpoint_selection.resolve_checkpoint(selection, checkpoints)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)
