"""The run config: a run dir belongs to one configuration (resume and "done" are checked)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainer.__main__ import main
from trainer.checkpoint import CHECKPOINT_META
from trainer.runconfig import RUN_CONFIG, RunConfigMismatch, fingerprint
from trainer.train import train

from .conftest import config


def _args(**kw: Any) -> list[str]:
    out = ["--no-progress", "--num-threads", "1", "--warmup-ratio", "0", "--seed", "0"]
    for k, v in kw.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def test_different_config_is_refused_same_config_is_done(
    tiny: Callable[[str], Path],
    copy_data: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    data = copy_data(4)
    kw = {"base_model": tiny("llama"), "train_data": data, "output_dir": out, "batch_size": 2}
    assert main(_args(**kw, epochs=1)) == 0
    node = out / "postprocess/node-0"
    recorded = json.loads((node / RUN_CONFIG).read_text())
    assert recorded["fingerprint"] == fingerprint(recorded["fields"])
    assert recorded["fields"]["epochs"] == 1
    assert recorded["fields"]["train_data"].startswith("sha256:")
    final_index = node / "checkpoints/final/model.safetensors.index.json"
    before = final_index.stat().st_mtime_ns
    capsys.readouterr()

    # epochs changed: refused, exit 1, one line naming both fingerprints and the field.
    assert main(_args(**kw, epochs=2)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "differing: epochs" in err[0]
    assert recorded["fingerprint"][:12] in err[0]
    assert final_index.stat().st_mtime_ns == before  # nothing overwritten
    assert not (node / "checkpoints/checkpoint-4").exists()

    # New data under the same path: refused too (the content hash is the input, not the path).
    data.write_text(data.read_text().replace("copy", "kopy"))
    assert main(_args(**kw, epochs=1)) == 1
    assert "differing: train_data" in capsys.readouterr().err

    # The same config: done at once.
    data.write_text(data.read_text().replace("kopy", "copy"))
    assert train(config(**kw, epochs=1)).already_done


def test_a_run_dir_without_run_config_is_refused(
    tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    kw = {"base_model": tiny("llama"), "train_data": copy_data(4), "output_dir": out}
    train(config(**kw, epochs=1))
    (out / "postprocess/node-0" / RUN_CONFIG).unlink()
    with pytest.raises(RunConfigMismatch, match="no run_config.json"):
        train(config(**kw, epochs=1))


def test_checkpoints_record_epoch_step_and_eval_loss(
    tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    data = copy_data(4)
    train(
        config(
            base_model=tiny("llama"),
            train_data=data,
            validation_data=copy_data(2, seed=1, name="val.jsonl"),
            output_dir=out,
            epochs=2,
            batch_size=2,
            learning_rate=1e-3,
        )
    )
    ck = out / "postprocess/node-0/checkpoints"
    metas = {p.name: json.loads((p / CHECKPOINT_META).read_text()) for p in ck.iterdir()}
    assert set(metas) == {"checkpoint-2", "checkpoint-4", "final"}
    assert (metas["checkpoint-2"]["epoch"], metas["checkpoint-2"]["step"]) == (1, 2)
    assert (metas["checkpoint-4"]["epoch"], metas["checkpoint-4"]["step"]) == (2, 4)
    assert metas["final"]["eval_loss"] == metas["checkpoint-4"]["eval_loss"]
    losses = [m["eval_loss"] for m in metas.values()]
    assert all(isinstance(x, float) and x > 0 for x in losses)
