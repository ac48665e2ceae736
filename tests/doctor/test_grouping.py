"""One doctor line per root cause: the checks a failure blocks are one line under it."""

from __future__ import annotations

import io
from pathlib import Path

import google.auth
import google.auth.exceptions
import pytest
from rich.console import Console

from infra.cli import main
from infra.doctor.results import FAIL, PASS, CheckResult, GroupedPrinter, blocked

SPEC = """\
project:
  id: tuned-proj-1
  region: us-central1
buckets:
  - name: tuned-data
"""


def _printed(results: list[CheckResult]) -> list[str]:
    out = io.StringIO()
    printer = GroupedPrinter(Console(file=out, width=400, highlight=False))
    for r in results:
        printer.add(r)
    printer.flush()
    return out.getvalue().splitlines()


def test_blocked_checks_print_as_one_line_per_cause() -> None:
    results = [
        CheckResult("region", PASS, "ok"),
        CheckResult("credentials", FAIL, "none", "log in"),
        *blocked(["project", "billing", "api:x"], "no usable credentials", "credentials"),
        *blocked(["api:y", "api:z"], "Service Usage client: boom"),
        CheckResult("quota", PASS, "ok"),
    ]
    lines = _printed(results)
    assert lines == [
        "pass region: ok",
        "FAIL credentials: none",
        "    fix: log in",
        "    not checked (3): project, billing, api:x (blocked: no usable credentials; re-run after the fix above)",
        "    not checked (2): api:y, api:z (blocked: Service Usage client: boom; re-run after the fix above)",
        "pass quota: ok",
    ]
    assert {r.blocked_by for r in results[2:5]} == {"credentials"}


def test_doctor_without_credentials_prints_one_failure_and_one_blocked_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_adc(**_: object) -> None:
        raise google.auth.exceptions.DefaultCredentialsError("no ADC here")

    monkeypatch.setattr(google.auth, "default", no_adc)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["doctor", str(spec)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sum("FAIL" in line for line in lines) == 1
    assert sum(line.lstrip().startswith("not checked") for line in lines) == 1
    assert not any(line.startswith("cannot-check") for line in lines)
