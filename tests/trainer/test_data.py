"""Masks, BOS, pad/EOS, skips and over-long policy, on every text architecture's template."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from trainer.data import DataReport, encode_all, read_examples
from trainer.encoding import IGNORE, Encoder
from trainer.formats import parse_example
from transformers import AutoTokenizer

FAMILIES = ("llama", "gemma3", "qwen3", "llama4")


def _ex(obj: dict) -> object:
    res = parse_example(obj)
    assert res.example is not None, res.issues
    return res.example


def _supervised(enc: object) -> list[int]:
    return [i for i, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_conversation_same_supervised_tokens_in_every_format(
    family: str, tiny: Callable[[str], Path]
) -> None:
    tok = AutoTokenizer.from_pretrained(tiny(family))
    enc = Encoder(tok, 512)
    forms = [
        {
            "messages": [
                {"role": "user", "content": "copy: red blue"},
                {"role": "assistant", "content": "red blue"},
            ]
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "copy: red blue"}]},
                {"role": "assistant", "parts": [{"text": "red blue"}]},
            ]
        },
        {"prompt": "copy: red blue", "completion": "red blue"},
    ]
    outs = [enc.encode(_ex(f)) for f in forms]
    assert all(not isinstance(o, str) for o in outs)
    sup = [_supervised(o) for o in outs]
    assert sup[0] == sup[1] == sup[2]
    assert outs[0].input_ids == outs[1].input_ids == outs[2].input_ids
    # Exactly the answer followed by the end-of-turn token.
    answer = tok("red blue", add_special_tokens=False).input_ids
    assert sup[0] == [*answer, enc.eot_id]
    assert tok.convert_ids_to_tokens(enc.eot_id) in (
        "<|eot_id|>",
        "<end_of_turn>",
        "<|im_end|>",
        "<|eot|>",
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_turn_system_masks_only_assistant_turns(
    family: str, tiny: Callable[[str], Path]
) -> None:
    tok = AutoTokenizer.from_pretrained(tiny(family))
    enc = Encoder(tok, 512)
    gc = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "one"}]},
            {"role": "assistant", "parts": [{"text": "two"}]},
            {"role": "user", "parts": [{"text": "three"}]},
            {"role": "assistant", "parts": [{"text": "four five"}]},
        ],
    }
    out = enc.encode(_ex(gc))
    text = tok.decode(_supervised(out))
    eot = tok.convert_ids_to_tokens(enc.eot_id)
    assert text == f"two{eot}four five{eot}"
    assert out.n_supervised == len(_supervised(out))


@pytest.mark.parametrize("family", ["llama", "gemma3", "llama4"])
def test_no_double_bos(family: str, tiny: Callable[[str], Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny(family))
    # The trap is real: this tokenizer adds BOS itself, and the template adds one too.
    assert tok("x").input_ids[0] == tok.bos_token_id
    out = Encoder(tok, 512).encode(_ex({"prompt": "a", "completion": "b"}))
    assert out.input_ids[0] == tok.bos_token_id
    assert out.input_ids.count(tok.bos_token_id) == 1
    # Even a template that already has BOS in the text gets it once.
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    out = Encoder(tok, 512).encode(_ex({"prompt": "a", "completion": "b"}))
    assert out.input_ids[:2].count(tok.bos_token_id) == 1


def test_eos_supervised_even_when_pad_equals_eos(tiny: Callable[[str], Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny("qwen3"))
    assert tok.pad_token_id != tok.eos_token_id
    tok.pad_token = tok.eos_token  # the trap: pad == eos
    out = Encoder(tok, 512).encode(_ex({"prompt": "a", "completion": "b"}))
    assert _supervised(out)[-1] == tok.eos_token_id


def test_fallback_template_without_chat_template(tiny: Callable[[str], Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny("llama"))
    tok.chat_template = None
    enc = Encoder(tok, 512)
    out = enc.encode(_ex({"prompt": "copy: red", "completion": "red"}))
    assert enc.eot_id == tok.eos_token_id
    assert tok.decode(out.input_ids).startswith(tok.bos_token + "User: copy: red")
    assert tok.decode(_supervised(out)).strip() == "red" + tok.eos_token


def test_qwen3_history_thinking_stripped_and_masks_still_right(tiny: Callable[[str], Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny("qwen3"))
    enc = Encoder(tok, 512)
    conv = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "<think>x</think>\n\nb"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    }
    out = enc.encode(_ex(conv))
    assert tok.decode(_supervised(out)) == "b<|im_end|>d<|im_end|>"


def test_skips_are_reported(tmp_path: Path, tiny: Callable[[str], Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny("llama"))
    long = " ".join(["red"] * 200)
    f = tmp_path / "d.jsonl"
    f.write_text(
        f'{{"prompt": "a", "completion": "b"}}\n{{"prompt": "{long}", "completion": "b"}}\n'
    )
    examples, report, errors = read_examples(f)
    assert not errors and len(examples) == 2
    kept = encode_all(examples, Encoder(tok, 64), report)
    assert len(kept) == 1 and report.skipped["overlong"] == 1
    report2 = DataReport()
    trunc = encode_all(examples, Encoder(tok, 64, overlong="truncate"), report2)
    # Truncation cuts the answer away: nothing supervised is left, so it is skipped too.
    assert len(trunc) == 1 and report2.skipped["no-supervised-tokens"] == 1


def test_invalid_lines_are_errors_with_positions(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\nnot json\n{"messages": []}\n')
    _, _, errors = read_examples(f)
    assert errors[0].startswith(f"{f}:2:1: error[invalid-json]")
    assert errors[1].startswith(f"{f}:3:1: error[missing-assistant-turn]: messages:")
