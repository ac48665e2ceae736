"""Images: Gemma 3 vision class (tiny), multimodal chat and GenerateContent with inline images."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image as PILImage
from safetensors.torch import load_file
from trainer.data import collate, make_rows
from trainer.encoding import Encoder
from trainer.formats import parse_example
from trainer.steps import Feeder
from trainer.train import train
from transformers import AutoModelForImageTextToText, AutoProcessor

from .conftest import config, write_jsonl


def _png(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", (28, 28), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _lines() -> list[dict]:
    out = []
    for color, name in [((255, 0, 0), "red"), ((0, 0, 255), "blue")] * 2:
        b64 = _png(color)
        out.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/png;base64,{b64}"},
                            },
                            {"type": "text", "text": "what color?"},
                        ],
                    },
                    {"role": "assistant", "content": name},
                ]
            }
        )
        out.append(
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"inline_data": {"mime_type": "image/png", "data": b64}},
                            {"text": "color?"},
                        ],
                    },
                    {"role": "assistant", "parts": [{"text": name}]},
                ]
            }
        )
    return out  # fmt: skip


def _weights(d: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in d.glob("model*.safetensors"):
        out.update(load_file(f))
    return out


def test_image_examples_train_with_frozen_vision_tower(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    base = tiny("gemma3", vision=True)
    data = write_jsonl(tmp_path / "mm.jsonl", _lines())
    out = tmp_path / "out"
    train(config(base_model=base, train_data=data, output_dir=out, epochs=2,
                 learning_rate=1e-2, batch_size=4))  # fmt: skip
    final = out / "postprocess/node-0/checkpoints/final"
    model = AutoModelForImageTextToText.from_pretrained(final)
    assert type(model).__name__ == "Gemma3ForConditionalGeneration"
    assert (final / "processor_config.json").exists()
    before, after = _weights(base), _weights(final)
    vision = [k for k in before if "vision_tower" in k or "multi_modal_projector" in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in before if "q_proj" in k)


def test_images_reach_the_model(tiny: Callable[..., Path]) -> None:
    base = tiny("gemma3", vision=True)
    proc = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base).eval()
    enc = Encoder(proc.tokenizer, 512, image_sequence=proc.full_image_sequence)
    ex = enc.encode(parse_example(_lines()[0]).example)
    image_id = model.config.image_token_id
    assert ex.input_ids.count(image_id) == 4  # tiny model: 4 tokens per image
    assert all(lab == -100 for i, lab in zip(ex.input_ids, ex.labels, strict=True)
               if i == image_id)  # fmt: skip
    rows = make_rows([ex], packing=True, max_seq_length=512, seed=0)
    assert rows[0].images  # image examples are never packed
    batch = collate(rows, pad_id=0, packed=False)
    feed = Feeder(proc, image_id, True, torch.device("cpu"), storage_fetch=None)
    inputs = feed(batch, rows)
    assert inputs["token_type_ids"].sum() == 4 and "pixel_values" in inputs
    with torch.no_grad():
        a = model(**inputs).logits
        inputs["pixel_values"] = torch.zeros_like(inputs["pixel_values"])
        b = model(**inputs).logits
    assert (a - b).abs().max() > 1e-4


def test_text_only_data_on_vision_class(
    tiny: Callable[..., Path], copy_data: Callable[..., Path], tmp_path: Path
) -> None:
    base = tiny("gemma3", vision=True)
    out = tmp_path / "out"
    res = train(config(base_model=base, train_data=copy_data(4), output_dir=out,
                       tuning_mode="FULL", learning_rate=1e-3, batch_size=2))  # fmt: skip
    trainable = {n for n, p in res.model.named_parameters() if p.requires_grad}
    assert trainable and not any("vision_tower" in n for n in trainable)
    before = _weights(base)
    after = _weights(out / "postprocess/node-0/checkpoints/final")
    assert all(torch.equal(before[k], after[k]) for k in before if "vision_tower" in k)
