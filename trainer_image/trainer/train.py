"""The training run: setup, train, save. One process per device under ``torchrun``.

Artifacts (under ``<output>/postprocess/node-0/``, the layout Vertex writes):

- ``checkpoints/checkpoint-<step>/``: merged full weights after an epoch: one per epoch when
  epochs < 10, else 10 spread over training (``ceil(k * epochs / 10)`` for k = 1..10).
- ``checkpoints/final/``: merged full weights as ``model-0000k-of-0000n.safetensors`` shards
  (always at least two, so names match Vertex) + ``model.safetensors.index.json``, config,
  generation config, tokenizer (and processor for vision models); LoRA runs add ``adapter/``.
- ``metrics.jsonl`` (one line per logged step and per epoch evaluation), ``loss_curve.png``,
  ``run.json`` (configuration, data report, base model id, versions).
- ``resume/``: the latest training state (trainable weights, optimizer, scheduler, RNG, step).
  Re-running with the same output continues from there; a finished run exits at once.

Distribution: LoRA runs use DDP, full runs FSDP2 (``fully_shard`` per decoder layer); gloo on
CPU, NCCL on CUDA. The loss is a sum of token losses divided by the number of supervised tokens
in the whole optimizer step (all micro-batches, all processes), so gradient accumulation and
world size do not change what is optimised.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.nn.parallel import DistributedDataParallel
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)

from trainer import storage
from trainer.config import FULL, LORA_TARGET_MODULES, TrainConfig, default_max_seq_length
from trainer.data import (
    IGNORE,
    DataReport,
    Encoder,
    Row,
    collate,
    encode_all,
    load_image,
    make_rows,
    read_examples,
)
from trainer.formats import Image

#: Vertex keeps at most this many checkpoints per run.
MAX_CHECKPOINTS = 10
#: Shard size for saved weights (Vertex's layout); tiny models are split in two regardless.
MAX_SHARD_BYTES = 5 * 1024**3


class DataError(Exception):
    """The dataset is unusable (lines that do not parse, or no trainable example)."""


def checkpoint_epochs(epochs: int) -> list[int]:
    """Epochs after which a checkpoint is written: every epoch below 10, else 10 spread out."""
    if epochs < MAX_CHECKPOINTS:
        return list(range(1, epochs + 1))
    return sorted({math.ceil(k * epochs / MAX_CHECKPOINTS) for k in range(1, MAX_CHECKPOINTS + 1)})


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Result:
    """What a run leaves in memory (tests compare it with what was saved)."""

    output: Path
    model: torch.nn.Module | None = None
    tokenizer: Any = None
    steps: int = 0
    already_done: bool = False


def run(cfg: TrainConfig) -> int:
    """Trains per ``cfg`` and writes the artifacts; returns the process exit code.

    Raises:
        DataError: when the dataset is unusable (reported by the CLI as a user error).
        FileNotFoundError: when an input does not exist.
    """
    train(cfg)
    return 0


def train(cfg: TrainConfig) -> Result:
    """Trains per ``cfg``, writes the artifacts, and returns the trained model.

    Raises:
        DataError: when the dataset is unusable.
        FileNotFoundError: when an input does not exist.
    """
    d = _init_distributed()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    console = Console(stderr=True)
    scratch = Path(tempfile.mkdtemp(prefix="tunestack-trainer-"))
    try:
        return _run(cfg, d, console, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, d: Dist, console: Console, scratch: Path) -> Result:
    base = storage.fetch(cfg.base_model, scratch / "base")
    train_path = storage.fetch(cfg.train_data, scratch / "data")
    val_path = storage.fetch(cfg.validation_data, scratch / "val") if cfg.validation_data else None
    hf_config = AutoConfig.from_pretrained(base)
    vision = hasattr(hf_config, "vision_config")
    max_len = cfg.max_seq_length or default_max_seq_length(_model_type(hf_config))
    train_ex, train_report, errors = read_examples(train_path)
    val_ex, val_report, val_errors = read_examples(val_path) if val_path else ([], DataReport(), [])
    if errors or val_errors:
        raise DataError("\n".join([*errors, *val_errors][:50]))
    out = storage.Output(cfg.output_dir, scratch)
    node = out.root / "postprocess" / "node-0"
    ckpts = node / "checkpoints"
    out.pull("postprocess/node-0/resume")
    out.pull("postprocess/node-0/metrics.jsonl")
    out.pull("postprocess/node-0/checkpoints/final/model.safetensors.index.json")
    if (ckpts / "final" / "model.safetensors.index.json").exists():
        _log(d, f"{ckpts / 'final'} exists: the run already finished")
        return Result(node, already_done=True)
    has_images = any(e.has_images for e in train_ex + val_ex)
    processor = AutoProcessor.from_pretrained(base) if vision and has_images else None
    tokenizer = (
        processor.tokenizer if processor is not None else AutoTokenizer.from_pretrained(base)
    )
    image_sequence = getattr(processor, "full_image_sequence", None)
    if image_sequence is None and hasattr(processor, "_prompt_split_image"):
        image_sequence = _Llama4ImageSequence(processor, _gcs_bytes)  # Llama 4: per image
    encoder = Encoder(
        tokenizer,
        max_len,
        cfg.overlong,
        image_sequence=image_sequence,
        image_placeholder=getattr(processor, "fake_image_token", None),
    )
    train_enc = encode_all(train_ex, encoder, train_report)
    val_enc = encode_all(val_ex, encoder, val_report)
    _log(d, f"train data: {train_report.summary()} (max_seq_length {max_len})")
    if val_path:
        _log(d, f"validation data: {val_report.summary()}")
    for s in train_report.samples:
        _log(d, f"  skipped {s}")
    if not train_enc:
        raise DataError(f"{cfg.train_data}: no trainable example ({train_report.summary()})")
    packing = cfg.packing and not has_images
    rows = make_rows(train_enc, packing=packing, max_seq_length=max_len, seed=cfg.seed)
    val_rows = make_rows(val_enc, packing=False, max_seq_length=max_len, seed=cfg.seed)

    _seed_everything(cfg.seed)
    model, hf_model, dtype = _load_model(cfg, base, hf_config, d, vision)
    per_rank = math.ceil(len(rows) / d.world)
    micro_per_epoch = math.ceil(per_rank / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.peak_learning_rate(),
        weight_decay=cfg.weight_decay,
        # Fused AdamW (CPU and CUDA) is ~4x faster than the per-tensor loop on CPU; FSDP2's
        # sharded DTensor parameters keep torch's default implementation.
        fused=not (cfg.tuning_mode == FULL and d.world > 1),
    )
    warmup = int(total_steps * cfg.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _linear_schedule(s, warmup, total_steps)
    )
    start_epoch, step = _maybe_resume(node / "resume", model, optimizer, scheduler, d)
    if step:
        _log(d, f"resuming at step {step} (epoch {start_epoch + 1}/{cfg.epochs})")
    if d.main:
        node.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(node, step)
        (node / "run.json").write_text(
            json.dumps(
                {
                    "config": cfg.to_dict(),
                    "base_model_id": cfg.base_model_id,
                    "model_type": _model_type(hf_config),
                    "max_seq_length": max_len,
                    "packing": packing,
                    "world_size": d.world,
                    "steps_per_epoch": steps_per_epoch,
                    "total_steps": total_steps,
                    "train_data": {
                        "kept": train_report.kept,
                        "lines": train_report.lines,
                        "skipped": dict(train_report.skipped),
                    },
                    "validation_data": {
                        "kept": val_report.kept,
                        "lines": val_report.lines,
                        "skipped": dict(val_report.skipped),
                    }
                    if val_path
                    else None,
                    "versions": {
                        "torch": torch.__version__,
                        "transformers": sys.modules["transformers"].__version__,
                    },
                },
                indent=2,
            )
        )
        out.push(node / "run.json")

    image_token_id = getattr(hf_config, "image_token_id", None)
    feed = _Feeder(
        processor,
        image_token_id,
        vision,
        d.device,
        storage_fetch=_gcs_bytes,
        token_type_ids=_model_type(hf_config) != "llama4",  # Gemma 3 needs them, Llama 4 not
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ck_epochs = set(checkpoint_epochs(cfg.epochs))
    progress = _progress(console, enabled=cfg.progress and d.main)
    task = progress.add_task("training", total=total_steps, completed=step, info="")
    model.train()
    with progress:
        for epoch in range(start_epoch, cfg.epochs):
            order = list(range(len(rows)))
            if cfg.shuffle:
                random.Random(cfg.seed + epoch).shuffle(order)
            order += order[: per_rank * d.world - len(order)]  # equal work on every rank
            mine = order[d.rank :: d.world]
            micro = [mine[i : i + cfg.batch_size] for i in range(0, len(mine), cfg.batch_size)]
            ga = cfg.gradient_accumulation_steps
            for k in range(steps_per_epoch):
                group = micro[k * ga : (k + 1) * ga]
                t0 = time.perf_counter()
                batches = [
                    collate([rows[i] for i in g], pad_id=pad_id, packed=packing) for g in group
                ]
                loss, n_sup, n_tok = _train_step(
                    model, batches, [[rows[i] for i in g] for g in group], feed, d, cfg
                )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                dt = time.perf_counter() - t0
                lr = scheduler.get_last_lr()[0]
                rec = {
                    "step": step,
                    "epoch": epoch + 1,
                    "loss": round(loss, 6),
                    "lr": lr,
                    "tokens_per_s": round(n_tok / dt, 1),
                    "supervised_tokens_per_s": round(n_sup / dt, 1),
                    "supervised_tokens": n_sup,
                    "tokens": n_tok,
                }
                if d.main and (step % cfg.log_every == 0 or step == total_steps):
                    _append_metrics(node, rec)
                    if not (cfg.progress and console.is_terminal):
                        # Logs read by callers (the local server) get a plain line instead.
                        _log(d, f"step {step}/{total_steps} epoch {epoch + 1} loss {loss:.4f} "
                                f"lr {lr:.2e} tokens/s {n_tok / dt:.0f}")  # fmt: skip
                progress.update(
                    task, advance=1, info=f"loss {loss:.4f}  {n_tok / dt:,.0f} tok/s  lr {lr:.2e}"
                )
            model.eval()
            if val_rows:
                eval_loss = _evaluate(model, val_rows, cfg, pad_id, feed, d)
                if d.main:
                    _append_metrics(
                        node, {"step": step, "epoch": epoch + 1, "eval_loss": round(eval_loss, 6)}
                    )
                _log(d, f"epoch {epoch + 1}: eval loss {eval_loss:.4f}")
            model.train()
            if epoch + 1 in ck_epochs:
                ck = ckpts / f"checkpoint-{step}"
                _save_weights(cfg, model, hf_model, hf_config, tokenizer, processor, ck, d)
                _save_resume(node / "resume", model, optimizer, scheduler, epoch + 1, step, d)
                if d.main:
                    out.push(ck)
                    out.push(node / "resume")
                    out.push(node / "metrics.jsonl")
                    _log(d, f"saved {ck.name}")
    final = ckpts / "final"
    _save_weights(cfg, model, hf_model, hf_config, tokenizer, processor, final, d, adapter=True)
    if d.main:
        _plot(node)
        for name in ("metrics.jsonl", "loss_curve.png"):
            if (node / name).exists():
                out.push(node / name)
        out.push(final)
        _log(d, f"done: {final}")
    if dist.is_initialized():
        dist.barrier()
    return Result(node, model, tokenizer, step)


# --- model ---------------------------------------------------------------------------------


def _load_model(
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
            target_modules=_lora_targets(hf_model),
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


def _lora_targets(model: torch.nn.Module) -> list[str]:
    """Full module names of the language model's linear projections (never vision, never head)."""
    names = []
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear) or "vision" in name or "projector" in name:
            continue
        if name.rsplit(".", 1)[-1] in LORA_TARGET_MODULES:
            names.append(name)
    return names


def _model_type(hf_config: Any) -> str:
    return str(hf_config.model_type)


# --- steps ---------------------------------------------------------------------------------


class _Feeder:
    """Moves a collated batch to the device and adds vision inputs when the model needs them."""

    def __init__(
        self,
        processor: Any,
        image_token_id: int | None,
        vision: bool,
        device: torch.device,
        storage_fetch: Any,
        token_type_ids: bool = True,
    ) -> None:
        self.processor = processor
        self.token_type_ids = token_type_ids
        self.image_token_id = image_token_id
        self.vision = vision
        self.device = device
        self.fetch = storage_fetch

    def __call__(self, batch: dict[str, torch.Tensor], rows: list[Row]) -> dict[str, Any]:
        inputs: dict[str, Any] = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
        if self.vision:
            ids = batch["input_ids"]
            tt = torch.zeros_like(ids)
            if self.image_token_id is not None:
                tt = (ids == self.image_token_id).long()
            if self.token_type_ids:
                inputs["token_type_ids"] = tt.to(self.device)
            images = [load_image(img, self.fetch) for r in rows for img in r.images]
            if images and self.processor is not None:
                pv = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
                inputs["pixel_values"] = pv.to(self.device)
        return inputs


class _Llama4ImageSequence:
    """The text one image expands to for a Llama 4 processor.

    Llama 4 tiles an image by its size and aspect ratio (``aspect_ratios`` from the image
    processor; a processor that gives none makes one tile), so the sequence is per image:
    ``<|image_start|>``, the tiles' ``<|patch|>`` tokens with separators, ``<|image|>``, the
    global tile's patches, ``<|image_end|>`` (``Llama4Processor._prompt_split_image``).
    """

    def __init__(self, processor: Any, fetch: Any) -> None:
        self.processor = processor
        self.fetch = fetch

    def __call__(self, img: Image) -> str:
        p = self.processor
        out = p.image_processor([load_image(img, self.fetch)], return_tensors="pt")
        h, w = out["pixel_values"].shape[-2:]
        per_tile = (h // p.patch_size) * (w // p.patch_size) // p.downsample_ratio
        ratios = out.get("aspect_ratios")
        ratio = tuple(int(x) for x in ratios[0]) if ratios is not None else (1, 1)
        return str(p._prompt_split_image(ratio, int(per_tile)))


def _gcs_bytes(uri: str) -> bytes:
    mounted = storage.mounted_path(uri)
    if mounted is not None:
        return mounted.read_bytes()
    bucket, name = storage.split_gs(uri)
    return storage.client().bucket(bucket).blob(name).download_as_bytes()


def loss_sum(model: torch.nn.Module, inputs: dict[str, Any], labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropy over supervised positions.

    Logits are computed only at positions whose next token is supervised in some row
    (``logits_to_keep`` as an index tensor), which saves the LM head most prompt positions.
    """
    shift = labels[:, 1:]
    keep = (shift != IGNORE).any(0).nonzero().squeeze(1)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep.to(labels.device)).logits
    target = shift[:, keep].to(logits.device)
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def _train_step(
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    rows: list[list[Row]],
    feed: _Feeder,
    d: Dist,
    cfg: TrainConfig,
) -> tuple[float, int, int]:
    """Forward/backward over one optimizer step's micro-batches; returns (loss, sup, tokens)."""
    counts = torch.tensor(
        [
            float(sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)),
            float(sum(sum(len(r.input_ids) for r in rs) for rs in rows)),
        ]
    )
    if d.world > 1:
        dist.all_reduce(counts)
    n_sup = counts[0].item()
    total = torch.zeros((), dtype=torch.float64)
    for k, (b, rs) in enumerate(zip(batches, rows, strict=True)):
        last = k == len(batches) - 1
        sync = (
            model.no_sync()
            if isinstance(model, DistributedDataParallel) and not last
            else contextlib.nullcontext()
        )
        with sync:
            ls = loss_sum(model, feed(b, rs), b["labels"].to(d.device))
            # DDP/FSDP average gradients over processes: scale by world to get a global mean.
            (ls * d.world / n_sup).backward()
        total += ls.detach().double().cpu()
    if d.world > 1:
        dist.all_reduce(total)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm
        )
    return float(total / n_sup), int(n_sup), int(counts[1].item())


@torch.no_grad()
def _evaluate(
    model: torch.nn.Module, rows: list[Row], cfg: TrainConfig, pad_id: int, feed: _Feeder, d: Dist
) -> float:
    """Mean token loss over the validation rows (sharded across processes)."""
    mine = rows[d.rank :: d.world]
    # FSDP needs every rank in every forward: pad shards to the same number of batches.
    n_batches = math.ceil(math.ceil(len(rows) / d.world) / cfg.batch_size)
    sums = torch.zeros(2, dtype=torch.float64)
    for k in range(n_batches):
        rs = mine[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        dummy = not rs
        rs = rs or rows[:1]
        b = collate(rs, pad_id=pad_id, packed=False)
        ls = loss_sum(model, feed(b, rs), b["labels"].to(d.device))
        if not dummy:
            sums[0] += ls.double().cpu()
            sums[1] += int((b["labels"][:, 1:] != IGNORE).sum())
    if d.world > 1:
        dist.all_reduce(sums)
    return float(sums[0] / sums[1].clamp(min=1))


def _linear_schedule(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


# --- saving --------------------------------------------------------------------------------


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


def _save_weights(
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
    if dist.is_initialized():
        dist.barrier()


def _save_resume(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    step: int,
    d: Dist,
) -> None:
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
    if dist.is_initialized():
        dist.barrier()


def _maybe_resume(
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


def _truncate_metrics(node: Path, step: int) -> None:
    """Drops metrics past the resume point (steps an interrupted run logged after its last
    checkpoint are trained again and logged again)."""
    path = node / "metrics.jsonl"
    if not path.exists():
        return
    keep = [x for x in path.read_text().splitlines() if x and json.loads(x)["step"] <= step]
    path.write_text("".join(x + "\n" for x in keep))


def _append_metrics(node: Path, rec: dict[str, Any]) -> None:
    node.mkdir(parents=True, exist_ok=True)
    with (node / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def _plot(node: Path) -> None:
    """Writes loss_curve.png from metrics.jsonl (train loss per step, eval loss per epoch)."""
    import matplotlib  # noqa: PLC0415  (only the main process plots)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    recs = [json.loads(x) for x in (node / "metrics.jsonl").read_text().splitlines() if x]
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in recs if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(node / "loss_curve.png", dpi=100)
    plt.close(fig)


# --- process -------------------------------------------------------------------------------


def _init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _progress(console: Console, *, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _log(d: Dist, msg: str) -> None:
    if d.main:
        print(msg, flush=True)
