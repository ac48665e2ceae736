"""Exact token counts with a (tiny, offline) tokenizer; estimates otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from trainer.data import read_examples
from trainer.encoding import Encoder, count_tokens
from trainer.formats import parse_example
from trainer.tiny import build_tiny_tokenizer
from transformers import AutoTokenizer

from infra.checks import validate
from infra.checks.dataset import validate_dataset_file
from infra.checks.tokens import TokenizerUnavailable, estimate_tokens, load_tokenizer

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


# --- the contract: validate's exact count is the trainer's encoded length ------------------

ROOT = Path(__file__).resolve().parents[2]
DATASETS = sorted(
    [*ROOT.glob("tests/golden/*/data/**/*.jsonl"), *ROOT.glob("specs/data/**/*.jsonl")]
)
# (name, family, chat template): the family's own template; none (the trainer's fallback
# template), with and without a BOS token; a template that adds BOS on top of the tokenizer's.
TOKENIZERS = [
    ("llama", "llama", "own"),
    ("gemma3", "gemma3", "own"),
    ("qwen3", "qwen3", "own"),
    ("llama4", "llama4", "own"),
    ("llama-fallback", "llama", None),
    ("qwen3-fallback", "qwen3", None),
    ("llama-double-bos", "llama", "bos+own"),
]


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name, family, template in TOKENIZERS:
        tok = build_tiny_tokenizer(family)
        if template is None:
            tok.chat_template = None
        elif template == "bos+own":
            tok.chat_template = "{{ bos_token }}" + tok.chat_template
        out[name] = tmp_path_factory.mktemp(name)
        tok.save_pretrained(out[name])
    return out


def test_the_datasets_cover_every_text_format() -> None:
    seen = set()
    for path in DATASETS:
        for line in path.read_text().splitlines():
            ex = parse_example(json.loads(line)).example
            assert ex is not None, (path, line)
            seen.add(ex.format)
    assert {"chat", "prompt_completion", "generate_content"} <= seen
    assert len(DATASETS) >= 20


@pytest.mark.parametrize("name", [t[0] for t in TOKENIZERS])
def test_exact_counts_equal_the_trainers_encoded_lengths(
    name: str, tokenizer_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """Every text example of every test dataset: validate counts what the trainer encodes,
    and flags exactly the examples the trainer drops as over-long."""
    tok_dir = tokenizer_dirs[name]
    checked = 0
    for path in DATASETS:
        examples = [parse_example(json.loads(x)).example for x in path.read_text().splitlines()]
        # Images are estimated by validate (it has no processor); text examples are exact.
        lines = [
            x
            for x, ex in zip(path.read_text().splitlines(), examples, strict=True)
            if ex is not None and not ex.has_images
        ]
        if not lines:
            continue
        data = tmp_path / f"{checked}.jsonl"
        data.write_text("".join(x + "\n" for x in lines))
        # The trainer's side, as trainer/recipe.py does it: its own tokenizer, read_examples.
        trainer_tok = AutoTokenizer.from_pretrained(tok_dir)
        parsed, _, errors = read_examples(data)
        assert not errors
        encoded = [Encoder(trainer_tok, 10**9).encode(ex) for ex in parsed]
        lengths = [len(e.input_ids) for e in encoded if not isinstance(e, str)]
        assert len(lengths) == len(lines), (path, encoded)
        # validate's side: infra/checks with the tokenizer it loads.
        tok = load_tokenizer(str(tok_dir))
        assert [count_tokens(tok, ex) for ex in parsed] == lengths, path
        summary, diags = validate_dataset_file(
            data, display=str(path), model=None, tokenizer=tok, max_seq_length=None
        )
        assert not diags and summary.tokens_exact and summary.tokens == sum(lengths), path
        for limit in sorted({n - 1 for n in lengths}):
            drops = Encoder(AutoTokenizer.from_pretrained(tok_dir), limit).encode
            dropped = [k + 1 for k, ex in enumerate(parsed) if drops(ex) == "overlong"]
            _, diags = validate_dataset_file(
                data, display=str(path), model=None, tokenizer=tok, max_seq_length=limit
            )
            too_long = [d for d in diags if d.code == "sequence-too-long"]
            assert all(d.severity == "error" for d in too_long)
            assert [d.line for d in too_long] == dropped, (path, limit)
            assert [d.message.split()[0] for d in too_long] == [
                str(lengths[k - 1]) for k in dropped
            ]
        checked += len(lines)
    assert checked >= 80
    # validate never changes the tokenizer it was given (the trainer gives its own the
    # fallback template, so the checkpoint's saved tokenizer renders the same way).
    assert bool(load_tokenizer(str(tok_dir)).chat_template) == (name.endswith("fallback") is False)
