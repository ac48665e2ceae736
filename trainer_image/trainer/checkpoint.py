"""Checkpoints: merged weights in Vertex's layout, and the resume state.

- ``checkpoints/checkpoint-<step>/`` and ``checkpoints/final/``: merged full weights as
  ``model-0000k-of-0000n.safetensors`` shards (always at least two, so names match Vertex) +
  ``model.safetensors.index.json``, config, generation config, tokenizer (and processor for
  vision models); the final one of a LoRA run adds ``adapter/``.
- ``resume/``: the latest training state; a re-run with the same output continues from it.

Every directory is written as ``<name>.partial`` and renamed, so a crash never leaves a
half-written checkpoint under its real name.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.nn.parallel import DistributedDataParallel

from trainer.config import FULL, TrainConfig
from trainer.distributed import Dist, barrier

#: Vertex keeps at most this many checkpoints per run.
MAX_CHECKPOINTS = 10
#: Shard size for saved weights (Vertex's layout); tiny models are split in two regardless.
MAX_SHARD_BYTES = 5 * 1024**3


def checkpoint_epochs(epochs: int) -> list[int]:
    """Epochs after which a checkpoint is written: every epoch below 10, else 10 spread out."""
    if epochs < MAX_CHECKPOINTS:
        return list(range(1, epochs + 1))
    return sorted({math.ceil(k * epochs / MAX_CHECKPOINTS) for k in range(1, MAX_CHECKPOINTS + 1)})


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full weights of the underlying HF model, LoRA deltas merged out of place.

    Works for plain models, PEFT models (``W + scale * B @ A`` per adapted layer) and FSDP2
    models (gathered; a collective: call on every rank).
    """
    inner: Any = model.module if isinstance(model, DistributedDataParallel) else model
    if hasattr(inner, "get_base_model"):
        from peft.tuners.lora import LoraLayer  # noqa: PLC0415  (LoRA runs only)

        base = inner.get_base_model()
        layers: dict[str, Any] = {n: m for n, m in base.named_modules() if isinstance(m, LoraLayer)}
        sd: dict[str, torch.Tensor] = {}
        for k, v in base.state_dict().items():
            if "lora_" in k:
                continue
            if ".base_layer." in k:
                mod, pname = k.split(".base_layer.", 1)
                if pname == "weight":
                    v = v + layers[mod].get_delta_weight("default").to(v.dtype)
                k = f"{mod}.{pname}"
            sd[k] = v.detach()
        return sd
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if dist.is_initialized():
        msd, _ = get_state_dict(inner, [], options=opts)
        return {k: v for k, v in msd.items() if isinstance(v, torch.Tensor)}
    return {k: v.detach() for k, v in inner.state_dict().items()}


def save_weights(
    cfg: TrainConfig,
    model: torch.nn.Module,
    hf_model: Any,
    hf_config: Any,
    tokenizer: Any,
    processor: Any,
    out_dir: Path,
    d: Dist,
    adapter: bool = False,
) -> None:
    """Writes merged full weights (Vertex's shard names), config and tokenizer (or processor)
    to ``out_dir`` via ``<name>.partial``, plus ``adapter/`` for a LoRA run when ``adapter``.

    A collective under FSDP2: call on every rank; only the main process writes.
    """
    sd = merged_state_dict(model)
    if d.main:
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        total = sum(v.numel() * v.element_size() for v in sd.values())
        shard = min(MAX_SHARD_BYTES, total // 2 + 1)
        save_model = hf_model
        save_model.save_pretrained(tmp, state_dict=sd, max_shard_size=shard)
        # FSDP2 renames the class (FSDPLlamaForCausalLM): record the real architecture.
        conf = json.loads((tmp / "config.json").read_text())
        conf["architectures"] = list(hf_config.architectures or [type(hf_model).__name__])
        conf["architectures"] = [a.removeprefix("FSDP") for a in conf["architectures"]]
        conf["use_cache"] = True
        (tmp / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
        (tokenizer if processor is None else processor).save_pretrained(tmp)
        if adapter and cfg.tuning_mode != FULL:
            peft_model: Any = model.module if isinstance(model, DistributedDataParallel) else model
            peft_model.save_pretrained(tmp / "adapter")
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    barrier()


def save_resume(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    step: int,
    d: Dist,
) -> None:
    """Writes the training state (trainable weights, optimizer, scheduler, RNG, epoch and
    step) to ``path`` via ``<name>.partial``; a collective: call on every rank."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    msd, osd = get_state_dict(model, optimizer, options=opts)
    if d.main:
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(
            {
                "model": msd,
                "optimizer": osd,
                "scheduler": scheduler.state_dict(),
                "rng": {
                    "python": random.getstate(),
                    "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                },
            },
            tmp / "state.pt",
        )
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "step": step}))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    barrier()


def maybe_resume(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, d: Dist
) -> tuple[int, int]:
    """(epochs done, step) from ``path`` when a previous run left state there, else (0, 0)."""
    if not (path / "state.json").exists():
        return 0, 0
    meta = json.loads((path / "state.json").read_text())
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    opts = StateDictOptions(full_state_dict=True, ignore_frozen_params=True, strict=False)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=opts,
    )
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(meta["epoch"]), int(meta["step"])


#: Per-checkpoint metadata written beside the weights: epoch, step and validation loss.
CHECKPOINT_META = "tunestack_checkpoint.json"


def write_meta(ck_dir: Path, epoch: int, step: int, eval_loss: float | None) -> None:
    """Records which epoch and step a checkpoint is, and its validation loss (None without a
    validation set; read back from ``metrics.jsonl`` beside ``checkpoints/`` after a resume)."""
    if eval_loss is None:
        metrics_path = ck_dir.parent.parent / "metrics.jsonl"
        if metrics_path.exists():
            for line in metrics_path.read_text().splitlines():
                rec = json.loads(line) if line else {}
                if rec.get("step") == step and "eval_loss" in rec:
                    eval_loss = float(rec["eval_loss"])
    meta = {"epoch": epoch, "step": step, "eval_loss": eval_loss}
    (ck_dir / CHECKPOINT_META).write_text(json.dumps(meta) + "\n")
