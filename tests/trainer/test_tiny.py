"""The tiny checkpoints are real architectures that transformers reloads, with sane tokenizers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainer.tiny import build_tiny_checkpoint, main
from transformers import AutoModelForCausalLM, AutoTokenizer

ARCH = {
    "llama": "LlamaForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "llama4": "Llama4ForCausalLM",
}


@pytest.mark.parametrize("family", sorted(ARCH))
def test_tiny_checkpoint_reloads(family: str, tmp_path: Path) -> None:
    out = build_tiny_checkpoint(family, tmp_path / family)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == ARCH[family]
    assert (out / "model.safetensors").exists()
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        tokenize=False,
    )
    assert "hello" in text and "hi" in text
    ids = tok(text, add_special_tokens=False).input_ids
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), model.config.vocab_size)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = AutoModelForCausalLM.from_pretrained(build_tiny_checkpoint("qwen3", tmp_path / "a"))
    b = AutoModelForCausalLM.from_pretrained(build_tiny_checkpoint("qwen3", tmp_path / "b"))
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na


def test_cli_writes_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llama", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "config.json").exists()
    assert main(["llama", str(tmp_path / "v"), "--vision"]) == 2
