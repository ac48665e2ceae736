"""``tunestack doctor`` end to end: spec file in, report and exit code out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import google.auth
import pytest

from infra.cli import main

SPEC = """\
project:
  id: tuned-proj-1
  region: us-central1
buckets:
  - name: tuned-data
tuning_jobs:
  - name: sft
    base_model: meta/llama3_1@llama-3.1-8b-instruct
    tuning_mode: PEFT_ADAPTER
    dataset: chat
    output_uri: gs://tuned-data/out
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def adc(fake_google: str, creds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADC resolves to the static-token credentials; every Google API is the fake."""
    monkeypatch.setattr(google.auth, "default", lambda **kw: (creds, None))
    monkeypatch.setenv("TUNESTACK_GOOGLE_API_ENDPOINT", fake_google)


def test_json_report_of_a_healthy_project_exits_0(spec_file, adc, capsys):
    assert main(["doctor", str(spec_file), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["target"] == "gcp"
    assert {c["status"] for c in report["checks"]} == {"pass"}
    assert {"check", "status", "detail", "fix", "blocked_by"} == set(report["checks"][0])


def test_text_report_shows_each_failure_with_its_fix_and_exits_1(spec_file, adc, world, capsys):
    world.billing_enabled = False
    world.buckets["tuned-data"] = {"storage.objects.get"}
    assert main(["doctor", str(spec_file)]) == 1
    out, err = capsys.readouterr()
    assert "FAIL billing: billing is not enabled on tuned-proj-1" in out
    assert "fix: `gcloud billing projects link tuned-proj-1" in out
    assert "FAIL bucket:tuned-data" in out
    assert "pass project: tuned-proj-1 exists" in out
    assert out.rstrip().endswith("2 failed, 0 could not be checked")
    assert "Traceback" not in out + err


def test_cannot_check_is_shown_but_does_not_fail(spec_file, adc, world, capsys):
    world.quotas_status = 403
    assert main(["doctor", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert "cannot-check tuning-quota" in out
    assert "1 could not be checked" in out


def test_invalid_spec_prints_diagnostics_and_calls_nothing(tmp_path, adc, world, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("project:\n  id: tuned-proj-1\n  regoin: us-central1\n")
    assert main(["doctor", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:3: error[unknown-field]" in err
    assert world.requests == []


def test_missing_spec_file_is_a_diagnostic_not_a_traceback(tmp_path, capsys):
    assert main(["doctor", str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err
    assert "error[file-not-found]" in err
    assert "Traceback" not in err


def test_unknown_format_is_a_usage_error(spec_file, capsys):
    with pytest.raises(SystemExit) as e:
        main(["doctor", str(spec_file), "--format", "yaml"])
    assert e.value.code == 2
