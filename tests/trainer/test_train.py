"""Training on tiny models: weights change, loss falls, artifacts follow Vertex's layout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from trainer.checkpoint import checkpoint_epochs
from trainer.recipe import FineTuneRecipe
from trainer.train import train
from transformers import AutoModelForCausalLM

from .conftest import config


def _metrics(out: Path) -> list[dict]:
    path = out / "postprocess/node-0/metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()]


def _final(out: Path) -> Path:
    return out / "postprocess/node-0/checkpoints/final"


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen3", "llama4"])
@pytest.mark.parametrize("mode", ["FULL", "PEFT_ADAPTER"])
def test_weights_change_and_loss_falls(
    family: str,
    mode: str,
    tiny: Callable[[str], Path],
    copy_data: Callable[..., Path],
    tmp_path: Path,
) -> None:
    base = tiny(family)
    out = tmp_path / "out"
    lr = 3e-3 if mode == "FULL" else 1e-2
    cfg = config(
        base_model=base,
        train_data=copy_data(8),
        output_dir=out,
        tuning_mode=mode,
        epochs=6,
        learning_rate=lr,
        batch_size=4,
    )
    res = train(cfg)
    losses = [m["loss"] for m in _metrics(out) if "loss" in m]
    assert len(losses) == 12
    # LoRA on a random-initialised model learns more slowly than full tuning.
    assert sum(losses[-3:]) / 3 < losses[0] - (0.5 if mode == "FULL" else 0.2), losses
    before = AutoModelForCausalLM.from_pretrained(base).state_dict()
    after = AutoModelForCausalLM.from_pretrained(_final(out)).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if mode == "FULL":
        assert changed == set(before) - {"lm_head.weight"} or changed == set(before)
    else:
        targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        want = {k for k in before if k.endswith(".weight") and k.split(".")[-2] in targets}
        assert changed == want
        trainable = [n for n, p in res.model.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("mode", ["FULL", "PEFT_ADAPTER"])
def test_final_reloads_with_same_logits(
    mode: str, tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg = config(
        base_model=tiny("qwen3"),
        train_data=copy_data(4),
        output_dir=out,
        tuning_mode=mode,
        epochs=1,
        learning_rate=1e-2,
        batch_size=2,
    )
    res = train(cfg)
    final = _final(out)
    shards = sorted(p.name for p in final.glob("model-*.safetensors"))
    n = len(shards)
    assert n >= 2 and shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
    index = json.loads((final / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert (final / "tokenizer.json").exists() and (final / "config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(final).eval()
    ids = torch.tensor([[5, 17, 42, 7, 99, 3]])
    res.model.eval()
    with torch.no_grad():
        want = res.model(input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    if mode == "PEFT_ADAPTER":
        base = AutoModelForCausalLM.from_pretrained(tiny("qwen3"))
        with torch.no_grad():
            via_adapter = (
                PeftModel.from_pretrained(base, final / "adapter").eval()(input_ids=ids).logits
            )
        torch.testing.assert_close(got, via_adapter, atol=1e-4, rtol=1e-4)


def test_checkpoint_schedule() -> None:
    assert checkpoint_epochs(1) == [1]
    assert checkpoint_epochs(3) == [1, 2, 3]
    e12 = checkpoint_epochs(12)
    assert len(e12) == 10 and e12 == sorted(e12) and e12[-1] == 12
    assert e12 != list(range(1, 11))  # spread, not the first ten
    assert len(checkpoint_epochs(100)) == 10


@pytest.mark.parametrize("epochs", [1, 3, 12])
def test_checkpoint_dirs(
    epochs: int, tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # 4 examples, batch 2: 2 steps per epoch.
    cfg = config(
        base_model=tiny("llama"),
        train_data=copy_data(4),
        output_dir=out,
        epochs=epochs,
        batch_size=2,
        learning_rate=1e-3,
    )
    train(cfg)
    ck = out / "postprocess/node-0/checkpoints"
    names = sorted((p.name for p in ck.iterdir()), key=lambda s: (len(s), s))
    want = [f"checkpoint-{2 * e}" for e in checkpoint_epochs(epochs)]
    assert sorted(names) == sorted([*want, "final"])
    assert len(want) == min(epochs, 10)
    for name in want:
        model = AutoModelForCausalLM.from_pretrained(ck / name)  # loadable HF weights
        assert model.config.architectures == ["LlamaForCausalLM"]
    assert (out / "postprocess/node-0/loss_curve.png").stat().st_size > 1000
    evals = [m for m in _metrics(out) if "eval_loss" in m]
    assert evals == []  # no validation data given


def test_resume_continues(
    tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    data = copy_data(4)
    kw = {
        "base_model": tiny("llama"),
        "train_data": data,
        "output_dir": out,
        "batch_size": 2,
        "learning_rate": 1e-3,
        "validation_data": data,
    }
    full = train(config(**{**kw, "output_dir": tmp_path / "ref"}, epochs=3))
    # Interrupted run: killed right after epoch 2's checkpoint (same config, so it resumes).
    save = FineTuneRecipe.save_checkpoint

    def killed_after_two(self: FineTuneRecipe, epochs_done: int) -> None:
        save(self, epochs_done)
        if epochs_done == 2:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FineTuneRecipe, "save_checkpoint", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            train(config(**kw, epochs=3))
    node = out / "postprocess/node-0"
    assert not (node / "checkpoints/final").exists()
    with (node / "metrics.jsonl").open("a") as fh:  # logged after the checkpoint, then killed
        fh.write(json.dumps({"step": 5, "epoch": 3, "loss": 1.0}) + "\n")
    state = json.loads((node / "resume/state.json").read_text())
    assert state == {"epoch": 2, "step": 4}
    res = train(config(**kw, epochs=3))
    steps = [m["step"] for m in _metrics(out) if "loss" in m]
    assert steps == [1, 2, 3, 4, 5, 6]  # continued at 5, did not restart at 1
    assert res.steps == 6
    ref = load_file(next((tmp_path / "ref/postprocess/node-0/checkpoints/final").glob("*1-of*")))
    got = load_file(next((node / "checkpoints/final").glob("*1-of*")))
    assert full.steps == 6
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-4)
    # A finished run is not redone.
    assert train(config(**kw, epochs=3)).already_done


def test_gradient_accumulation_is_normalised_by_tokens(
    tiny: Callable[[str], Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    data = copy_data(4)
    common = {
        "base_model": tiny("qwen3"),
        "train_data": data,
        "tuning_mode": "FULL",
        "learning_rate": 1e-3,
        "shuffle": False,
        "max_grad_norm": 0.0,
    }
    a = train(config(**common, output_dir=tmp_path / "a", batch_size=4))
    b = train(
        config(**common, output_dir=tmp_path / "b", batch_size=1, gradient_accumulation_steps=4)
    )
    la = _metrics(tmp_path / "a")[0]["loss"]
    lb = _metrics(tmp_path / "b")[0]["loss"]
    assert la == pytest.approx(lb, abs=1e-5)
    for (n, pa), (_, pb) in zip(
        a.model.named_parameters(), b.model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4, msg=n)
