"""``torchrun --nproc_per_node 2`` on gloo: DDP for LoRA, FSDP for full; same result as 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainer.train import train

from .conftest import config


def _weights(final: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(final.glob("model-*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["PEFT_ADAPTER", "FULL"])
def test_two_process_run_matches_one_process(
    mode: str, tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    base, data = tiny("llama"), copy_data(8)
    lr = "1e-2" if mode == "PEFT_ADAPTER" else "1e-3"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--standalone", "-m", "trainer",
        "--base-model", str(base), "--train-data", str(data), "--validation-data", str(data),
        "--output-dir", str(tmp_path / "two"), "--tuning-mode", mode, "--epochs", "2",
        "--learning-rate", lr, "--batch-size", "2", "--warmup-ratio", "0", "--seed", "0",
        "--no-progress", "--num-threads", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # One process with twice the batch sees the same examples in every step.
    train(config(base_model=base, train_data=data, validation_data=data,
                 output_dir=tmp_path / "one", tuning_mode=mode, epochs=2,
                 learning_rate=float(lr), batch_size=4))  # fmt: skip
    node2, node1 = tmp_path / "two/postprocess/node-0", tmp_path / "one/postprocess/node-0"
    run = json.loads((node2 / "run.json").read_text())
    assert run["world_size"] == 2 and run["steps_per_epoch"] == 2
    m2 = [json.loads(x) for x in (node2 / "metrics.jsonl").read_text().splitlines()]
    m1 = [json.loads(x) for x in (node1 / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("supervised_tokens") for m in m2] == [m.get("supervised_tokens") for m in m1]
    for a, b in zip(m2, m1, strict=True):
        for k in ("loss", "eval_loss"):
            if k in a:
                assert a[k] == pytest.approx(b[k], abs=2e-4)
    final2 = node2 / "checkpoints/final"
    assert json.loads((final2 / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    w2, w1 = _weights(final2), _weights(node1 / "checkpoints/final")
    assert w2.keys() == w1.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=5e-5, rtol=1e-3, msg=k)
    if mode == "PEFT_ADAPTER":
        assert (final2 / "adapter/adapter_config.json").exists()
