"""gs:// inputs and outputs: through the real GCS emulator, and through a /gcs mount."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from trainer import storage
from trainer.runconfig import RunConfigMismatch
from trainer.train import train

from infra.gcs import client
from infra.local.storage import StorageEmulator

from .conftest import config


@pytest.fixture
def gcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    emu = StorageEmulator(root=tmp_path / "gcs", isolation="off")
    emu.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
    monkeypatch.setattr(storage, "_CLIENT", None)
    monkeypatch.setattr(storage, "GCS_MOUNT", tmp_path / "no-mount")
    try:
        yield emu.url
    finally:
        emu.stop()


@pytest.mark.slow
def test_gs_inputs_and_outputs_via_emulator(
    gcs: str, tiny: Callable[[str], Path], copy_data: Callable[..., Path]
) -> None:
    c = client(endpoint=gcs)
    bucket = c.create_bucket("tuning")
    for f in tiny("qwen3").iterdir():
        bucket.blob(f"models/qwen3/{f.name}").upload_from_filename(str(f))
    bucket.blob("data/train.jsonl").upload_from_filename(str(copy_data(4)))
    cfg = config(
        base_model="gs://tuning/models/qwen3",
        train_data="gs://tuning/data/train.jsonl",
        output_dir="gs://tuning/out",
        epochs=2,
        batch_size=2,
        learning_rate=1e-3,
    )
    assert train(cfg).steps == 4
    names = {b.name for b in c.list_blobs("tuning", prefix="out/")}
    node = "out/postprocess/node-0"
    assert f"{node}/checkpoints/final/model.safetensors.index.json" in names
    assert f"{node}/checkpoints/checkpoint-2/config.json" in names
    assert f"{node}/checkpoints/checkpoint-4/config.json" in names
    assert f"{node}/checkpoints/final/adapter/adapter_config.json" in names
    assert {f"{node}/metrics.jsonl", f"{node}/loss_curve.png", f"{node}/run.json"} <= names
    assert any(n.startswith(f"{node}/checkpoints/final/model-00001-of-") for n in names)
    # Re-running with the same output finds the finished run in the bucket.
    assert train(cfg).already_done
    # Another config (3 epochs) on the same output is refused: the run config is in the bucket.
    with pytest.raises(RunConfigMismatch, match="differing: epochs"):
        train(config(**{**cfg.to_dict(), "epochs": 3}))
    # An interrupted run (same config) resumes from the state uploaded with the last checkpoint.
    for b in c.list_blobs("tuning", prefix=f"{node}/checkpoints/final/"):
        b.delete()
    res = train(cfg)
    assert res.steps == 4 and not res.already_done
    assert bucket.blob(f"{node}/checkpoints/final/model.safetensors.index.json").exists()
    metrics = bucket.blob(f"{node}/metrics.jsonl").download_as_text().splitlines()
    assert [json.loads(x)["step"] for x in metrics] == [1, 2, 3, 4]


def test_gcs_mount_is_used_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "gcs"
    (mount / "bkt/data").mkdir(parents=True)
    (mount / "bkt/data/t.jsonl").write_text("{}\n")
    monkeypatch.setattr(storage, "GCS_MOUNT", mount)
    assert storage.fetch("gs://bkt/data/t.jsonl", tmp_path) == mount / "bkt/data/t.jsonl"
    out = storage.Output("gs://bkt/out", tmp_path / "scratch")
    assert out.root == mount / "bkt/out" and not out.remote
    with pytest.raises(FileNotFoundError):
        storage.fetch("gs://bkt/missing.jsonl", tmp_path)
