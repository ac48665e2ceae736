"""From JSONL lines to training rows, for all five Vertex dataset formats.

- Every line goes through :func:`trainer.formats.parse_example` (shared with infra's dataset
  validation), so the trainer and the validator agree on what an example means.
- :class:`trainer.encoding.Encoder` turns each example into token ids and labels (the rules
  are in :mod:`trainer.encoding`, which infra's ``validate`` counts tokens with too).
- Padding never enters the loss: labels are -100 wherever a position is padding, whatever the
  pad id is (a tokenizer whose pad equals EOS still has its EOS supervised).
- Packing concatenates examples into rows of at most ``max_seq_length`` tokens with
  per-example ``position_ids`` and ``attention_mask=None``: transformers then builds a
  block-diagonal causal mask (``find_packed_sequence_indices``), so no token attends across
  examples. Image examples are never packed.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import torch

from trainer.encoding import IGNORE, Encoded, Encoder
from trainer.formats import Example, Image, parse_example


@dataclass
class DataReport:
    """What happened to every line of a dataset file."""

    lines: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # first few skip reasons, for the log

    def skip(self, reason: str, detail: str) -> None:
        """Counts a skipped example under ``reason`` and keeps the first details."""
        self.skipped[reason] += 1
        if len(self.samples) < 10:
            self.samples.append(detail)

    def summary(self) -> str:
        """One line: kept and skipped counts by reason."""
        parts = [f"{self.kept}/{self.lines} examples kept"]
        parts += [f"{n} skipped ({r})" for r, n in sorted(self.skipped.items())]
        return ", ".join(parts)


def read_examples(path: Path) -> tuple[list[Example], DataReport, list[str]]:
    """Parses a JSONL file with :func:`parse_example`.

    Returns:
        (examples, report, errors): ``errors`` are ``file:line:col: error[code]: field: message``
        strings for lines that are unusable (the caller decides whether that is fatal).
    """
    examples: list[Example] = []
    report = DataReport()
    errors: list[str] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                errors.append(f"{path}:{lineno}:1: error[invalid-json]: : {e}")
                continue
            res = parse_example(obj)
            for issue in res.issues:
                if issue.severity == "error":
                    errors.append(
                        f"{path}:{lineno}:1: error[{issue.code}]: {issue.field}: {issue.message}"
                    )
            if res.example is not None:
                examples.append(res.example)
    return examples, report, errors


def encode_all(examples: list[Example], encoder: Encoder, report: DataReport) -> list[Encoded]:
    """Encodes every example, counting skips in ``report``."""
    out: list[Encoded] = []
    for n, ex in enumerate(examples):
        res = encoder.encode(ex)
        if isinstance(res, str):
            report.skip(res, f"example {n + 1}: {res}")
            continue
        out.append(res)
    report.kept = len(out)
    return out


@dataclass
class Row:
    """A training row: one example, or several packed ones (``starts`` marks each)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    images: tuple[Image, ...] = ()


def make_rows(
    encoded: list[Encoded], *, packing: bool, max_seq_length: int, seed: int
) -> list[Row]:
    """Rows for training: one per example, or greedy packs (after a seeded shuffle)."""
    if not packing or any(e.images for e in encoded):
        return [
            Row(e.input_ids, e.labels, list(range(len(e.input_ids))), e.images) for e in encoded
        ]
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    rows: list[Row] = []
    cur = Row([], [], [])
    for k in order:
        e = encoded[k]
        if cur.input_ids and len(cur.input_ids) + len(e.input_ids) > max_seq_length:
            rows.append(cur)
            cur = Row([], [], [])
        cur.input_ids += e.input_ids
        cur.labels += e.labels
        cur.position_ids += list(range(len(e.input_ids)))
    if cur.input_ids:
        rows.append(cur)
    return rows


def collate(rows: list[Row], *, pad_id: int, packed: bool) -> dict[str, torch.Tensor]:
    """Right-pads rows into a batch.

    Unpacked batches get an ``attention_mask``. Packed batches get none (so transformers
    isolates examples by ``position_ids``); their padding is its own segment (positions
    restart at 0) so real tokens never attend to it. Labels are -100 on padding.
    """
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.input_ids)
        ids[b, :n] = torch.tensor(r.input_ids)
        labels[b, :n] = torch.tensor(r.labels)
        pos[b, :n] = torch.tensor(r.position_ids)
        pos[b, n:] = torch.arange(width - n)
        mask[b, :n] = 1
    batch = {"input_ids": ids, "labels": labels, "position_ids": pos}
    if not packed:
        batch["attention_mask"] = mask
    return batch


def load_image(img: Image, fetch_bytes: Any) -> Any:
    """A PIL image from inline bytes or a gs:// URI (``fetch_bytes(uri) -> bytes``)."""
    from PIL import Image as PILImage  # noqa: PLC0415  (only image datasets need Pillow)

    data = img.data if img.data is not None else fetch_bytes(img.uri)
    return PILImage.open(io.BytesIO(data)).convert("RGB")
