"""``tunestack logs``: a local job's trainer log by any of its names, ``--follow`` until the
job ends, and the Cloud Logging command for a Vertex job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli import main


def _job(home: Path, state: str, lines: int = 300) -> None:
    local = home / "local"
    (local / "logs").mkdir(parents=True)
    (local / "state" / "tuningJobs").mkdir(parents=True)
    (local / "logs" / "tuningJobs-42.log").write_text("".join(f"line {i}\n" for i in range(lines)))
    (local / "state" / "tuningJobs" / "42.json").write_text(
        json.dumps({"resource": {"state": state}})
    )


@pytest.mark.parametrize(
    "name", ["42", "tuningJobs/42", "projects/p/locations/us-central1/tuningJobs/42"]
)
def test_local_log_by_any_name(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    _job(tmp_path, "JOB_STATE_SUCCEEDED")
    assert main(["logs", name, "--local", "--tail", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == ["line 297", "line 298", "line 299"]


def test_follow_ends_with_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    _job(tmp_path, "JOB_STATE_FAILED", lines=2)
    assert main(["logs", "42", "--local", "--follow"]) == 0
    assert capsys.readouterr().out == "line 0\nline 1\n"


def test_unknown_job_and_bad_names_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    assert main(["logs", "7", "--local"]) == 1
    assert capsys.readouterr().err.startswith("error: no local job 7")
    assert main(["logs", "a/b/c", "--local"]) == 1
    assert main(["logs", "7", "--local", "--tail", "-1"]) == 1


def test_cloud_job_gets_the_logging_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "projects/acme/locations/us-central1/customJobs/99"]) == 0
    out = capsys.readouterr().out
    assert (
        'gcloud logging read \'resource.type="ml_job" AND resource.labels.job_id="99"\' --project acme'
        in out
    )
