"""One optimizer step, evaluation, the loss, the schedule, and feeding batches to the model.

The loss is a sum of token losses divided by the number of supervised tokens in the whole
optimizer step (all micro-batches, all processes), so gradient accumulation and world size do
not change what is optimised.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from trainer import storage
from trainer.config import TrainConfig
from trainer.data import Row, collate, load_image
from trainer.distributed import Dist
from trainer.encoding import IGNORE
from trainer.formats import Image


class Feeder:
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


class Llama4ImageSequence:
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


def gcs_bytes(uri: str) -> bytes:
    """The bytes of a gs:// object (read through the /gcs/ mount when Vertex provides one)."""
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


def train_step(
    model: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    rows: list[list[Row]],
    feed: Feeder,
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
def evaluate(
    model: torch.nn.Module, rows: list[Row], cfg: TrainConfig, pad_id: int, feed: Feeder, d: Dist
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


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))
