"""The demo's learning criterion: the smoke model, tuned with the demo spec's settings on the
bundled data, answers the training question close to its training answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from trainer.config import from_dict
from trainer.tiny import build_tiny_checkpoint
from trainer.train import train

from infra import checks
from infra.local import demo
from infra.local.trainer import SMOKE_HIDDEN_SIZE

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "local-demo.yaml"


def test_word_overlap_counts_the_reference_words_found() -> None:
    ref = "A car is a road vehicle."
    assert demo.word_overlap(ref, ref) == 1.0
    assert demo.word_overlap("a car", ref) == pytest.approx(2 / 6)
    assert demo.word_overlap("", ref) == 0.0
    assert demo.word_overlap("car car car", "car wheel") == 0.5  # repeats count once each


def test_find_example_returns_the_messages_before_the_answer() -> None:
    ex = demo.find_example(REPO / "specs" / "data" / "local-demo" / "train.jsonl")
    assert [m["role"] for m in ex.messages] == ["system", "user"]
    assert ex.answer.startswith("A car is")


@pytest.mark.slow
def test_tuned_smoke_model_answers_the_training_question(tmp_path: Path) -> None:
    report = checks.validate(SPEC, check_datasets=False)
    assert report.ok and report.spec is not None
    job = report.spec.tuning_jobs[0]
    data = SPEC.parent / report.spec.datasets[0].train
    base = build_tiny_checkpoint(
        "llama",
        tmp_path / "base",
        hidden_size=SMOKE_HIDDEN_SIZE,
        intermediate_size=2 * SMOKE_HIDDEN_SIZE,
    )
    cfg = from_dict(
        {
            "base_model": str(base),
            "train_data": str(data),
            "output_dir": str(tmp_path / "out"),
            "tuning_mode": job.tuning_mode,
            "epochs": job.epochs,
            "learning_rate": job.learning_rate,
            "progress": False,
        }
    )
    train(cfg)
    final = tmp_path / "out" / "postprocess" / "node-0" / "checkpoints" / "final"
    example = demo.find_example(data)
    tuned = demo.ask_base(final, example.messages)
    untuned = demo.ask_base(base, example.messages)
    assert "\ufffd" not in tuned and "\ufffd" not in untuned
    tuned.encode("utf-8")
    assert demo.word_overlap(tuned, example.answer) >= demo.MIN_OVERLAP, tuned
    assert demo.word_overlap(untuned, example.answer) < demo.MIN_OVERLAP, untuned
