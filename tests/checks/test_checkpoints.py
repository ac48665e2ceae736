"""An endpoint's ``checkpoint:`` is checked before any training: a table of selections.

Each row edits one spec (job epochs, validation file, the selection) and states the one
diagnostic expected (or none), with its file, line, field and code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.checks import validate

SPEC = """\
project:
  id: acme-ml-dev
  region: us-central1
buckets:
  - name: acme-ml-dev-tuning
datasets:
  - name: chat
    train: data/train.jsonl
{validation}    bucket: acme-ml-dev-tuning
tuning_jobs:
  - name: job-a
    base_model: google/gemma3@gemma-3-1b-it
    tuning_mode: FULL
    epochs: {epochs}
    dataset: chat
    output_uri: gs://acme-ml-dev-tuning/runs/job-a
endpoints:
  - name: ep
    model: {model}
    checkpoint: {checkpoint}
    machine_type: g2-standard-8
"""

TRAIN = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
)
VALIDATION = "    validation: data/train.jsonl\n"
WEIGHTS = "gs://acme-ml-dev-tuning/weights/x"

ROWS = [
    # (selection, epochs, has validation, model, expected code or None, severity)
    ("final", 3, False, "job-a", None, None),
    ("epoch-1", 3, False, "job-a", None, None),
    ("epoch-3", 3, False, "job-a", None, None),
    ("epoch-4", 3, False, "job-a", "invalid-checkpoint", "error"),
    ("epoch-0", 3, False, "job-a", "invalid-checkpoint", "error"),
    ("epoch-10", 10, False, "job-a", None, None),
    # 25 epochs keep epochs ceil(k * 25 / 10): 3, 5, 8, 10, 13, 15, 18, 20, 23, 25.
    ("epoch-3", 25, False, "job-a", None, None),
    ("epoch-25", 25, False, "job-a", None, None),
    ("epoch-4", 25, False, "job-a", "invalid-checkpoint", "error"),
    ("epoch-1", 25, False, "job-a", "invalid-checkpoint", "error"),
    ("best", 2, True, "job-a", None, None),
    ("best", 2, False, "job-a", "best-needs-validation", "error"),
    ("checkpoint-6", 2, False, "job-a", "checkpoint-step-unchecked", "warning"),
    ("checkpoint-0", 2, False, "job-a", "invalid-checkpoint", "error"),
    ("checkpoint-x", 2, False, "job-a", "invalid-checkpoint", "error"),
    ("last", 2, False, "job-a", "invalid-checkpoint", "error"),
    ("Final", 2, False, "job-a", "invalid-checkpoint", "error"),
    ("epoch-" + "9" * 40, 2, False, "job-a", "invalid-checkpoint", "error"),
    ("final", 2, False, WEIGHTS, None, None),
    ("epoch-1", 2, False, WEIGHTS, "invalid-checkpoint", "error"),
]


def run(tmp_path: Path, selection: str, epochs: int, validation: bool, model: str):  # noqa: ANN201
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "train.jsonl").write_text(TRAIN)
    text = SPEC.format(
        validation=VALIDATION if validation else "",
        epochs=epochs,
        model=model,
        checkpoint=selection,
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("    checkpoint:"))
    return validate(spec, check_datasets=False), spec, line


@pytest.mark.parametrize(("selection", "epochs", "validation", "model", "code", "severity"), ROWS)
def test_checkpoint_selection(
    tmp_path: Path,
    selection: str,
    epochs: int,
    validation: bool,
    model: str,
    code: str | None,
    severity: str | None,
) -> None:
    report, spec, line = run(tmp_path, selection, epochs, validation, model)
    found = [d for d in report.diagnostics if d.field == "endpoints[0].checkpoint"]
    if code is None:
        assert found == [], [d.format() for d in found]
        assert report.ok, [d.format() for d in report.diagnostics]
        return
    assert [(d.code, d.severity) for d in found] == [(code, severity)], [d.format() for d in found]
    (d,) = found
    assert (d.file, d.line, d.column) == (str(spec), line, 5)
    assert report.ok is (severity == "warning")
    assert len(d.message) < 400  # a long selection is cut, not echoed whole


def test_messages_say_what_the_job_keeps(tmp_path: Path) -> None:
    report, _, _ = run(tmp_path, "epoch-4", 25, False, "job-a")
    (d,) = [d for d in report.diagnostics if d.code == "invalid-checkpoint"]
    assert "epoch-3, epoch-5, epoch-8, epoch-10, epoch-13" in d.message and "25 epochs" in d.message
    report, _, _ = run(tmp_path, "epoch-4", 3, False, "job-a")
    (d,) = [d for d in report.diagnostics if d.code == "invalid-checkpoint"]
    assert "epoch-1 .. epoch-3" in d.message
    report, _, _ = run(tmp_path, "best", 2, False, "job-a")
    (d,) = [d for d in report.diagnostics if d.code == "best-needs-validation"]
    assert "'chat'" in d.message and "validation" in d.message
    report, _, _ = run(tmp_path, "lats", 2, False, "job-a")
    (d,) = [d for d in report.diagnostics if d.code == "invalid-checkpoint"]
    assert "final, best, epoch-N" in d.message


def test_strict_turns_the_step_warning_into_an_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(TRAIN)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(validation="", epochs=2, model="job-a", checkpoint="checkpoint-6"))
    report = validate(spec, strict=True, check_datasets=False)
    assert not report.ok
    assert [d.code for d in report.diagnostics] == ["checkpoint-step-unchecked"]


def test_canary_percent_bounds(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(TRAIN)
    spec = tmp_path / "spec.yaml"
    base = SPEC.format(validation="", epochs=2, model="job-a", checkpoint="final")
    for value, ok in ((1, True), (10, True), (99, True), (0, False), (100, False), (-5, False)):
        spec.write_text(base + f"    canary_percent: {value}\n")
        report = validate(spec, check_datasets=False)
        assert report.ok is ok, (value, [d.format() for d in report.diagnostics])
        if not ok:
            (d,) = report.diagnostics
            assert (d.code, d.field) == ("invalid-value", "endpoints[0].canary_percent")
            assert d.line == base.count("\n") + 1
