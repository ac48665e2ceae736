"""From JSONL lines to token ids and labels, for all five Vertex dataset formats.

The rules, and why:

- Every line goes through :func:`trainer.formats.parse_example` (shared with infra's dataset
  validation), so the trainer and the validator agree on what an example means.
- The model's own chat template renders the conversation. A tokenizer without one gets
  :data:`FALLBACK_CHAT_TEMPLATE` (``User: ...``/``Assistant: ...`` blocks, the assistant's text
  ending with the EOS token, which then is the end-of-turn token).
- Labels are computed from turn boundaries, never from ``{% generation %}`` markers (the stock
  Llama 3 / Qwen 3 / Gemma 3 templates have none, which makes ``return_assistant_tokens_mask``
  silently all zeros). For each assistant turn, the conversation before it is rendered with the
  generation prompt; the assistant's tokens start where that prefix ends (located by character
  offsets in the full rendering) and run through the first end-of-turn token, which is
  supervised so the model learns to stop. Template text after it (e.g. a newline) is not.
- The template owns BOS: text is tokenised with ``add_special_tokens=False``, and a doubled BOS
  at the start is collapsed to one.
- Padding never enters the loss: labels are -100 wherever a position is padding, whatever the
  pad id is (a tokenizer whose pad equals EOS still has its EOS supervised).
- An example with no supervised token is reported and skipped. Over-long examples (more tokens
  than ``max_seq_length``) are dropped and counted by default; ``overlong="truncate"`` cuts them
  and keeps them when a supervised token survives.
- Packing concatenates examples into rows of at most ``max_seq_length`` tokens with
  per-example ``position_ids`` and ``attention_mask=None``: transformers then builds a
  block-diagonal causal mask (``find_packed_sequence_indices``), so no token attends across
  examples. Image examples are never packed.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import torch

from trainer.formats import Example, Image, parse_example

IGNORE = -100

FALLBACK_CHAT_TEMPLATE = (
    "{{- bos_token or '' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'user' %}{{- 'User: ' + message['content'] + '\n\n' }}"
    "{%- else %}{{- 'Assistant: ' + message['content'] + eos_token + '\n\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant: ' }}{%- endif %}"
)


@dataclass
class Encoded:
    """One tokenised example. ``labels`` is -100 where the token is not supervised."""

    input_ids: list[int]
    labels: list[int]
    images: tuple[Image, ...] = ()

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


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


class Encoder:
    """Turns examples into :class:`Encoded` with the rules in the module docstring.

    Args:
        tokenizer: A Hugging Face tokenizer; given :data:`FALLBACK_CHAT_TEMPLATE` if it has none.
        max_seq_length: Longest example in tokens.
        overlong: ``drop`` or ``truncate``.
        image_sequence: For vision models, the text each image placeholder expands to (the
            processor's ``full_image_sequence``), or a function of the image giving it (Llama 4
            tiles each image into a number of tokens that depends on its size); None for
            text-only models.
        image_placeholder: The text the chat template renders for an image (default: the
            tokenizer's ``boi_token``, as Gemma 3's template writes).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_seq_length: int,
        overlong: str = "drop",
        image_sequence: str | Callable[[Image], str] | None = None,
        image_placeholder: str | None = None,
    ) -> None:
        self.tok = tokenizer
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.max_seq_length = max_seq_length
        self.overlong = overlong
        self.image_sequence = image_sequence
        self.image_placeholder = (
            (image_placeholder or getattr(tokenizer, "boi_token", None)) if image_sequence else None
        )
        self._sequences: list[str] = []
        self.eot_id = self._end_of_turn_id()

    def encode(self, example: Example) -> Encoded | str:
        """The encoded example, or the reason it is skipped (``no-supervised-tokens``,
        ``overlong``, ``images-unsupported``)."""
        if example.has_images and self.image_sequence is None:
            return "images-unsupported"
        msgs = self._messages(example)
        images = tuple(img for t in example.turns for img in t.images)
        self._sequences = (
            [self.image_sequence(img) for img in images] if callable(self.image_sequence) else []
        )
        full_text = self._render(msgs, generation_prompt=False)
        enc = self.tok(full_text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
        bos = self.tok.bos_token_id
        drop = 0
        while bos is not None and len(ids) - drop >= 2 and ids[drop] == bos == ids[drop + 1]:
            drop += 1  # a template that adds BOS on top of text that already has one
        ids, offsets = ids[drop:], offsets[drop:]
        labels = [IGNORE] * len(ids)
        for i, turn in enumerate(example.turns):
            if turn.role != "assistant":
                continue
            prefix = self._render(msgs[:i], generation_prompt=True)
            start = self._start_token(prefix, full_text, offsets, ids)
            end = start
            while end < len(ids) and ids[end] != self.eot_id:
                end += 1
            end = min(end + 1, len(ids))  # the end-of-turn token is supervised
            labels[start:end] = ids[start:end]
        if len(ids) > self.max_seq_length:
            if self.overlong == "drop":
                return "overlong"
            ids, labels = ids[: self.max_seq_length], labels[: self.max_seq_length]
        out = Encoded(ids, labels, images)
        if out.n_supervised == 0:
            return "no-supervised-tokens"
        return out

    # --- helpers ---------------------------------------------------------------------------

    def _messages(self, example: Example) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        for t in example.turns:
            if self.image_sequence is None:
                msgs.append({"role": t.role, "content": t.text})
                continue
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in t.images]
            if t.text:
                parts.append({"type": "text", "text": t.text})
            msgs.append({"role": t.role, "content": parts})
        return msgs

    def _render(self, msgs: list[dict[str, Any]], *, generation_prompt: bool) -> str:
        if not msgs:  # never for parsed examples: they start with a system or user turn
            return ""
        text = self.tok.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=generation_prompt
        )
        if self.image_sequence and self.image_placeholder:
            if isinstance(self.image_sequence, str):
                text = text.replace(self.image_placeholder, self.image_sequence)
            else:  # one sequence per image, in order (a prefix holds the first images)
                pieces = text.split(self.image_placeholder)
                seqs = self._sequences
                text = pieces[0] + "".join(
                    (seqs[k] if k < len(seqs) else self.image_placeholder) + p
                    for k, p in enumerate(pieces[1:])
                )
        return text

    def _start_token(
        self, prefix: str, full: str, offsets: list[tuple[int, int]], ids: list[int]
    ) -> int:
        if full.startswith(prefix):
            cut = len(prefix)
            for k, (_s, e) in enumerate(offsets):
                if e > cut:
                    return k
            return len(ids)
        # The template renders earlier turns differently once later turns exist (e.g. Qwen 3
        # strips <think> from history): fall back to the longest common token prefix.
        pids = self.tok(prefix, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(pids), len(ids)) and pids[k] == ids[k]:
            k += 1
        return k

    def _end_of_turn_id(self) -> int:
        """The special token that closes an assistant turn in this template."""
        probe: list[dict[str, Any]] = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
        if self.image_sequence is not None:
            probe = [
                {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
                for m in probe
            ]
        prefix = self.tok.apply_chat_template(probe[:1], tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(probe, tokenize=False)
        rest = full[len(prefix) :] if full.startswith(prefix) else full
        special = set(self.tok.all_special_ids) | {
            i for i, t in self.tok.added_tokens_decoder.items() if t.special
        }
        for i in self.tok(rest, add_special_tokens=False)["input_ids"]:
            if i in special:
                return int(i)
        return int(self.tok.eos_token_id)


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
