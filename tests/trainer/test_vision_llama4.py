"""Images on Llama 4 (tiny Llama4ForConditionalGeneration): per-image token expansion, training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from trainer.data import collate, make_rows
from trainer.encoding import Encoder
from trainer.formats import parse_example
from trainer.model import fix_llama4_forward
from trainer.steps import Feeder, Llama4ImageSequence
from trainer.train import train
from transformers import AutoModelForImageTextToText, AutoProcessor

from .conftest import config, write_jsonl
from .test_vision import _lines, _weights


def test_llama4_image_examples_train_with_frozen_vision_model(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    base = tiny("llama4", vision=True)
    data = write_jsonl(tmp_path / "mm.jsonl", _lines()[:4])
    out = tmp_path / "out"
    res = train(config(base_model=base, train_data=data, output_dir=out, epochs=2,
                       learning_rate=1e-2, batch_size=2))  # fmt: skip
    node = out / "postprocess/node-0"
    run = json.loads((node / "run.json").read_text())
    assert run["train_data"]["kept"] == 4 and not run["train_data"]["skipped"]
    losses = [json.loads(x)["loss"] for x in (node / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(x)]  # fmt: skip
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    trainable = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert trainable and not any("vision" in n or "projector" in n for n in trainable)
    final = node / "checkpoints/final"
    model = AutoModelForImageTextToText.from_pretrained(final)
    assert type(model).__name__ == "Llama4ForConditionalGeneration"
    assert type(AutoProcessor.from_pretrained(final)).__name__ == "Llama4Processor"
    before, after = _weights(base), _weights(final)
    vision = [k for k in before if "vision_model" in k or "multi_modal_projector" in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in before if "q_proj" in k
               and "vision" not in k)  # fmt: skip


def test_llama4_images_reach_the_model(tiny: Callable[..., Path]) -> None:
    base = tiny("llama4", vision=True)
    proc = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base).eval()
    fix_llama4_forward(model)
    seq = Llama4ImageSequence(proc, fetch=None)
    enc = Encoder(proc.tokenizer, 512, image_sequence=seq, image_placeholder="<|image|>")
    ex = enc.encode(parse_example(_lines()[0]).example)
    assert not isinstance(ex, str)
    patch = model.config.image_token_id
    assert ex.input_ids.count(patch) == 4  # one 28x28 tile: 16 patches, pixel shuffle 0.5
    start = proc.tokenizer.convert_tokens_to_ids("<|image_start|>")
    assert ex.input_ids.count(start) == 1
    assert all(lab == -100 for i, lab in zip(ex.input_ids, ex.labels, strict=True)
               if i == patch)  # fmt: skip
    # Tiled images (the real processor's aspect ratios): tiles, separators, then the global tile.
    assert proc._prompt_split_image((1, 2), 4).count("<|patch|>") == 12
    rows = make_rows([ex], packing=True, max_seq_length=512, seed=0)
    batch = collate(rows, pad_id=0, packed=False)
    feed = Feeder(proc, patch, True, torch.device("cpu"), storage_fetch=None,
                   token_type_ids=False)  # fmt: skip
    inputs = feed(batch, rows)
    assert "pixel_values" in inputs and "token_type_ids" not in inputs
    with torch.no_grad():
        a = model(**inputs).logits
        inputs["pixel_values"] = torch.zeros_like(inputs["pixel_values"])
        b = model(**inputs).logits
    assert (a - b).abs().max() > 1e-4


def test_llama4_text_only_lora_on_vision_class(
    tiny: Callable[..., Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    base = tiny("llama4", vision=True)
    out = tmp_path / "out"
    res = train(config(base_model=base, train_data=copy_data(4), output_dir=out,
                       learning_rate=1e-3, batch_size=2))  # fmt: skip
    trainable = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert trainable and not any("vision" in n or "projector" in n for n in trainable)
    assert (out / "postprocess/node-0/checkpoints/final/adapter").is_dir()
