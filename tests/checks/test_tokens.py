"""Exact token counts with a (tiny, offline) tokenizer; estimates otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer.formats import parse_example
from trainer.tiny import build_tiny_tokenizer

from infra.checks import validate
from infra.checks.tokens import TokenizerUnavailable, count_tokens, estimate_tokens, load_tokenizer

SPEC = """\
project: {{id: acme-ml-dev, region: us-central1}}
buckets: [{{name: acme-ml-dev-tuning}}]
datasets:
  - name: d
    train: train.jsonl
    bucket: acme-ml-dev-tuning
    tokenizer: {tokenizer}
tuning_jobs:
  - name: j
    base_model: meta/llama4@llama-4-scout-17b-16e-instruct
    tuning_mode: PEFT_ADAPTER
    epochs: 2
    dataset: d
    output_uri: gs://acme-ml-dev-tuning/j
"""


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    build_tiny_tokenizer("llama").save_pretrained(out)
    return out


def test_estimate() -> None:
    assert estimate_tokens(0, 0, 0) == 0
    assert estimate_tokens(9, 2, 1) == 3 + 8 + 576


def test_count_applies_the_chat_template(tokenizer_dir: Path) -> None:
    tok = load_tokenizer(str(tokenizer_dir))
    ex = parse_example(
        {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]}
    ).example
    assert ex is not None
    n = count_tokens(tok, ex)
    plain = len(tok("hello")["input_ids"]) + len(tok("hi")["input_ids"])
    assert n > plain  # the template adds role headers and end-of-turn tokens
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        tokenize=True,
    )
    assert n == len(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_unavailable_tokenizer() -> None:
    with pytest.raises(TokenizerUnavailable):
        load_tokenizer("no-such-org/no-such-tokenizer")


def test_exact_counts_make_sequence_too_long_an_error(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        + '{"messages": [{"role": "user", "content": "'
        + "zq " * 2500
        + '"}, {"role": "assistant", "content": "ok"}]}\n'
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(tokenizer=tokenizer_dir))
    r = validate(spec)
    (d,) = r.diagnostics
    assert (d.code, d.severity, d.line) == ("sequence-too-long", "error", 2)
    assert "estimated" not in d.message
    (job,) = r.jobs
    assert job.tokens_exact and job.training_tokens == 2 * job.tokens


def test_missing_tokenizer_is_a_warning_and_counts_are_estimated(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    spec = tmp_path / "s.yaml"
    text = SPEC.format(tokenizer="./no-such-dir")
    spec.write_text(text)
    r = validate(spec)
    (d,) = r.diagnostics
    assert (d.code, d.severity) == ("tokenizer-unavailable", "warning")
    assert d.line == 7 and d.field == "datasets[0].tokenizer"
    assert r.ok and not r.jobs[0].tokens_exact
