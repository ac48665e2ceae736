"""Every suggestion our diagnostics make ("did you mean 'X'", "try K: V"), applied exactly as
given, makes the spec validate: advice that leads to a second error is a bug."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from infra import checks

REPO = Path(__file__).resolve().parents[2]
LLAMA = (REPO / "specs" / "llama.yaml").read_text()
DID_YOU_MEAN = re.compile(r"did you mean '([^']+)'\?")
TRY = re.compile(r"; try (.+)$")
PAIR = re.compile(r"(\w+): ([\w.-]+)")

#: (case, text replaced in specs/llama.yaml, its replacement, the wrong token).
CASES = [
    (
        "machine typo",
        "machine_type: g2-standard-12",
        "machine_type: g2-standard-13",
        "g2-standard-13",
    ),
    (
        "model typo",
        "llama-3.1-8b-instruct\n",
        "llama-3.1-8b-instrct\n",
        "meta/llama3_1@llama-3.1-8b-instrct",
    ),
    ("region typo", "region: us-central1", "region: us-centrl1", "us-centrl1"),
    ("key typo", "epochs: 3", "epoch: 3", "epoch"),
    ("reference typo", "model: support-llama", "model: support-lama", "support-lama"),
    ("dataset typo", "dataset: support-chat", "dataset: support-chta", "support-chta"),
    ("too small, explicit count", "qwen-placeholder", "", ""),
    ("too small, defaulted count", "qwen-placeholder", "", ""),
]


def _write(tmp_path: Path, text: str) -> Path:
    shutil.copytree(REPO / "specs" / "data" / "support", tmp_path / "data" / "support")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _too_small(explicit_count: bool) -> str:
    text = LLAMA.replace("meta/llama3_1@llama-3.1-8b-instruct", "qwen/qwen3@qwen3-32b")
    return text if explicit_count else text.replace("    accelerator_count: 1\n", "")


def _apply(text: str, message: str, line: int, wrong: str) -> str:
    lines = text.splitlines(keepends=True)
    if m := DID_YOU_MEAN.search(message):
        assert wrong in lines[line - 1], (message, lines[line - 1])
        lines[line - 1] = lines[line - 1].replace(wrong, m.group(1))
        return "".join(lines)
    m = TRY.search(message)
    assert m, f"no suggestion in {message!r}"
    out = text
    for key, value in PAIR.findall(m.group(1)):
        pattern = re.compile(rf"^(\s*){key}: .*$", re.M)
        if pattern.search(out):
            out = pattern.sub(rf"\g<1>{key}: {value}", out)
        else:  # a field left to its default: add it to the endpoint
            out = out.replace("    machine_type:", f"    {key}: {value}\n    machine_type:", 1)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_suggestion_applied_as_given_validates(tmp_path: Path, case: tuple) -> None:
    name, old, new, wrong = case
    if name.startswith("too small"):
        text = _too_small("explicit" in name)
    else:
        assert old in LLAMA
        text = LLAMA.replace(old, new)
    spec = _write(tmp_path, text)
    report = checks.validate(spec, check_datasets=False)
    assert not report.ok
    errors = [d for d in report.diagnostics if d.severity == "error"]
    assert len(errors) == 1, [d.format() for d in errors]
    fixed = _apply(text, errors[0].message, errors[0].line, wrong)
    spec.write_text(fixed)
    again = checks.validate(spec, check_datasets=False)
    assert again.ok, [d.format() for d in again.diagnostics]


def test_accelerator_count_defaults_from_the_machine(tmp_path: Path) -> None:
    text = LLAMA.replace("    accelerator_count: 1\n", "").replace(
        "g2-standard-12", "g2-standard-24"
    )
    report = checks.validate(_write(tmp_path, text), check_datasets=False)
    assert report.ok, [d.format() for d in report.diagnostics]
    assert report.spec is not None and report.spec.endpoints[0].accelerator_count == 2


def test_explicit_wrong_accelerator_count_is_still_an_error(tmp_path: Path) -> None:
    text = LLAMA.replace("g2-standard-12", "g2-standard-24")
    report = checks.validate(_write(tmp_path, text), check_datasets=False)
    assert [d.code for d in report.diagnostics] == ["accelerator-mismatch"]
