"""The seed catalog: the facts of Google's "Tuning open models" page, as data."""

from __future__ import annotations

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
