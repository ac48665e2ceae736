"""Packed rows do not leak across examples: logits match each example run alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from trainer.data import collate, make_rows
from trainer.encoding import Encoded, Encoder
from trainer.formats import parse_example
from transformers import AutoModelForCausalLM, AutoTokenizer

from .conftest import copy_conversations


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen3"])
def test_packed_logits_match_unpacked(family: str, tiny: Callable[[str], Path]) -> None:
    path = tiny(family)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").eval()
    enc = Encoder(tok, 512)
    examples = [
        parse_example({"prompt": p, "completion": a}).example
        for p, a in copy_conversations(4, seed=3)
    ]
    encoded = [enc.encode(e) for e in examples]
    rows = make_rows(encoded, packing=True, max_seq_length=512, seed=0)
    assert len(rows) == 1  # all four in one row
    batch = collate(rows, pad_id=tok.pad_token_id, packed=True)
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        contaminated = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=torch.ones_like(batch["input_ids"]),
            use_cache=False,
        ).logits[0]
    starts = [i for i, p in enumerate(rows[0].position_ids) if p == 0]
    ends = [*starts[1:], len(rows[0].position_ids)]
    leaked = 0.0
    for s, e in zip(starts, ends, strict=True):
        ids = rows[0].input_ids[s:e]
        assert any(x.input_ids == ids for x in encoded)
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        torch.testing.assert_close(packed[s:e], alone, atol=1e-5, rtol=1e-5)
        leaked = max(leaked, (contaminated[s:e] - alone).abs().max().item())
    # The check has teeth: an all-ones mask makes later examples attend to earlier ones.
    assert leaked > 1e-3


def test_packing_respects_max_len_and_pads_as_own_segment() -> None:
    encoded = [Encoded([1] * n, [5] * n) for n in (5, 4, 3, 6)]
    rows = make_rows(encoded, packing=True, max_seq_length=9, seed=0)
    assert all(len(r.input_ids) <= 9 for r in rows)
    assert sum(len(r.input_ids) for r in rows) == 18
    batch = collate(rows, pad_id=0, packed=True)
    for b, r in enumerate(rows):
        n = len(r.input_ids)
        assert (batch["labels"][b, n:] == -100).all()
        if n < batch["input_ids"].shape[1]:
            assert batch["position_ids"][b, n] == 0
