"""Loading the model to tune: the HF model, its dtype, LoRA or FSDP2 wrapping, frozen vision.

LoRA runs wrap the PEFT model in DDP; full runs shard with FSDP2 (``fully_shard`` per decoder
layer, then the whole model) when there is more than one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from trainer.config import FULL, LORA_TARGET_MODULES, TrainConfig
from trainer.distributed import Dist


def load_model(
    cfg: TrainConfig, base: Path, hf_config: Any, d: Dist, vision: bool
) -> tuple[torch.nn.Module, Any, torch.dtype]:
    """(training module, the underlying HF model, dtype). Vision towers are frozen."""
    if cfg.dtype == "float32" or (cfg.dtype == "auto" and d.device.type != "cuda"):
        dtype = torch.float32
    else:
        dtype = torch.bfloat16
    cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    hf_model = cls.from_pretrained(base, dtype=dtype, attn_implementation="sdpa")
    hf_model.config.use_cache = False
    fix_llama4_forward(hf_model)
    for name, p in hf_model.named_parameters():
        if vision and any(
            k in name for k in ("vision_tower", "vision_model", "multi_modal_projector")
        ):
            # Text-only or image data alike: the vision encoder is not tuned (Vertex tunes the
            # language model; the projector stays aligned with the frozen tower).
            p.requires_grad_(False)
    if cfg.gradient_checkpointing:
        hf_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    hf_model.to(d.device)  # type: ignore[arg-type]
    if cfg.tuning_mode != FULL:
        from peft import LoraConfig, get_peft_model  # noqa: PLC0415  (LoRA runs only)

        lora = LoraConfig(
            r=cfg.adapter_size,
            lora_alpha=2 * cfg.adapter_size,
            lora_dropout=cfg.lora_dropout,
            target_modules=lora_targets(hf_model),
            task_type="CAUSAL_LM",
        )
        model: torch.nn.Module = get_peft_model(hf_model, lora)
        if d.world > 1:
            model = DistributedDataParallel(
                model, device_ids=[d.local_rank] if d.device.type == "cuda" else None
            )
        return model, hf_model, dtype
    if d.world > 1:
        from torch.distributed.fsdp import fully_shard  # noqa: PLC0415  (multi-process only)

        layer_names = set(getattr(hf_model, "_no_split_modules", None) or [])
        for m in hf_model.modules():
            if type(m).__name__ in layer_names:
                fully_shard(m)
        fully_shard(hf_model)
    return hf_model, hf_model, dtype


def fix_llama4_forward(model: Any) -> None:
    """Makes Llama4ForConditionalGeneration's forward work under transformers 5.24.

    Its forward builds the output from ``outputs.image_outputs`` of the language model, whose
    MoeCausalLMOutputWithPast has no such field (AttributeError on every call, training or
    inference). A forward hook gives the language model's output ``image_outputs = None``.
    No-op for other models, and once transformers fixes it.
    """
    if type(model).__name__ != "Llama4ForConditionalGeneration":
        return

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        if not hasattr(output, "image_outputs"):
            object.__setattr__(output, "image_outputs", None)
        return output

    model.language_model.register_forward_hook(hook)


def lora_targets(model: torch.nn.Module) -> list[str]:
    """Full module names of the language model's linear projections (never vision, never head)."""
    names = []
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear) or "vision" in name or "projector" in name:
            continue
        if name.rsplit(".", 1)[-1] in LORA_TARGET_MODULES:
            names.append(name)
    return names


def model_type(hf_config: Any) -> str:
    """The Hugging Face ``model_type`` of a config (``llama``, ``gemma3``, ``llama4`` ...)."""
    return str(hf_config.model_type)
