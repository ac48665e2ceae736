"""The seed catalog: the facts of Google's "Tuning open models" page, as data."""

from __future__ import annotations

import pytest

from infra import catalog


def test_fourteen_models_with_exact_ids() -> None:
    assert len(catalog.MODELS) == 14
    # Note the ids: llama3_1 with an underscore, llama3-2 and llama3-3 with hyphens.
    for mid in (
        "meta/llama3_1@llama-3.1-8b-instruct",
        "meta/llama3-2@llama-3.2-1b-instruct",
        "meta/llama3-3@llama-3.3-70b-instruct",
    ):
        assert catalog.model(mid) is not None
    assert catalog.model("meta/llama3-1@llama-3.1-8b-instruct") is None


def test_modes_limits_and_modalities() -> None:
    scout = catalog.model("meta/llama4@llama-4-scout-17b-16e-instruct")
    assert scout is not None
    assert (
        scout.tuning_modes == (catalog.PEFT_ADAPTER,)
        and scout.max_seq_length == 2048
        and scout.supports_images
    )
    assert scout.id in catalog.DROPS_TEXT_WHEN_IMAGES
    full_only = {m.id for m in catalog.MODELS.values() if m.tuning_modes == (catalog.FULL,)}
    assert "google/gemma3@gemma-3-1b-it" in full_only and "qwen/qwen3@qwen3-4b" in full_only
    assert all(m.max_seq_length == 8192 for m in catalog.MODELS.values() if m.family != "llama4")
    assert [m.id for m in catalog.MODELS.values() if m.supports_images] == [scout.id]


def test_regions_machines_and_limits() -> None:
    assert catalog.TUNING_REGIONS == (
        "us-central1",
        "europe-west4",
        "us-west1",
        "us-east5",
        "asia-southeast1",
    )
    counts = {m.name: m.accelerator_count for m in catalog.MACHINES.values()}
    assert counts["g2-standard-12"] == 1 and counts["g2-standard-24"] == 2
    assert counts["g2-standard-48"] == 4 and counts["g2-standard-96"] == 8
    assert catalog.ACCELERATORS["NVIDIA_L4"].memory_gb == 24
    assert catalog.ADAPTER_SIZES == (1, 4, 8, 16, 32)


def test_checkpoints_weights_and_agents() -> None:
    assert [catalog.checkpoints_kept(e) for e in (1, 3, 10, 25)] == [1, 3, 10, 10]
    m = catalog.model("meta/llama3_1@llama-3.1-8b")
    assert m is not None and round(m.bf16_weights_gb, 2) == 16.06
    assert (
        catalog.service_agent("42", "gcp-sa-aiplatform")
        == "serviceAccount:service-42@gcp-sa-aiplatform.iam.gserviceaccount.com"
    )


def test_checkpoint_epochs_match_the_trainer_and_the_seed_facts() -> None:
    from trainer.checkpoint import checkpoint_epochs  # the trainer package (trainer_image/)

    for epochs in range(1, 101):
        kept = catalog.checkpoint_epochs(epochs)
        assert list(kept) == checkpoint_epochs(epochs), epochs
        assert len(kept) == catalog.checkpoints_kept(epochs) == min(epochs, 10)
        assert kept[-1] == epochs and list(kept) == sorted(set(kept))
    assert catalog.checkpoint_epochs(3) == (1, 2, 3)
    assert catalog.checkpoint_epochs(25) == (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)
    assert catalog.checkpoint_epochs(0) == ()


def test_parse_checkpoint() -> None:
    p = catalog.parse_checkpoint
    assert p("final") == catalog.Selection("final")
    assert p("best") == catalog.Selection("best")
    assert p("epoch-2") == catalog.Selection("epoch", 2)
    assert p("checkpoint-12") == catalog.Selection("step", 12)
    for bad in ("", "epoch-0", "epoch-01", "checkpoint-0", "checkpoint-", "FINAL", " final",
                "epoch-1 ", "epoch-x", "checkpoint-" + "1" * 30, "last"):  # fmt: skip
        assert p(bad) is None, bad


CKPTS = [
    {"epoch": 2, "step": 12, "uri": "gs://b/o/checkpoint-12", "eval_loss": 0.9},
    {"epoch": 1, "step": 6, "uri": "gs://b/o/checkpoint-6", "eval_loss": 0.7},
    {"epoch": 3, "step": 18, "uri": "gs://b/o/checkpoint-18", "eval_loss": 0.7},
]


def test_resolve_checkpoint() -> None:
    r = catalog.resolve_checkpoint
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
    with pytest.raises(catalog.CheckpointNotFound) as e:
        catalog.resolve_checkpoint(selection, checkpoints)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)
