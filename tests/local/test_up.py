"""``tunestack up/down SPEC --local`` end to end with the real trainer: idempotent, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.local.conftest import ENTRY

REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, epochs: int = 1) -> Path:
    """specs/local-demo.yaml and its data, copied (1 epoch to stay quick)."""
    shutil.copytree(
        REPO / "specs" / "data" / "local-demo", tmp_path / "spec" / "data" / "local-demo"
    )
    text = (
        (REPO / "specs" / "local-demo.yaml").read_text().replace("epochs: 25", f"epochs: {epochs}")
    )
    path = tmp_path / "spec" / "local-demo.yaml"
    path.write_text(text)
    return path


def _tunestack(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNESTACK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _resources(home: Path, collection: str) -> list[dict]:
    return [
        json.loads(p.read_text())["resource"]
        for p in (home / "local" / "state" / collection).glob("*.json")
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, OSError):
        return False


@pytest.mark.slow
def test_up_kill_9_rerun_converges_then_noop_then_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = _spec(tmp_path)
    env = {**os.environ, "TUNESTACK_HOME": str(home)}
    first = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "up", str(spec), "--local", "--smoke"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    jobs_dir = home / "local" / "state" / "tuningJobs"
    deadline = time.monotonic() + 300
    while not any(jobs_dir.glob("*.json")) and time.monotonic() < deadline:
        assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # mid-run: the job was just submitted
    first.wait()

    second = _tunestack(home, "up", str(spec), "--local", "--smoke")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "adopted" in second.stdout and "sample prediction" in second.stdout
    jobs = _resources(home, "tuningJobs")
    assert len(jobs) == 1 and jobs[0]["state"] == "JOB_STATE_SUCCEEDED"  # exactly one job
    assert jobs[0]["labels"]["tunestack-key"] and jobs[0]["labels"]["tunestack-smoke"] == "true"
    assert len(_resources(home, "endpoints")) == 1 and len(_resources(home, "models")) == 1

    third = _tunestack(home, "up", str(spec), "--local")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "up to date: nothing to change" in third.stdout
    assert "+" not in "".join(line[:1] for line in third.stdout.splitlines())
    assert len(_resources(home, "tuningJobs")) == 1 and len(_resources(home, "endpoints")) == 1

    pid = json.loads((home / "local" / "api.json").read_text())["pid"]
    down = _tunestack(home, "down", str(spec), "--local")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "endpoint vehicles-llama undeployed and deleted" in down.stdout
    assert _resources(home, "endpoints") == [] and _resources(home, "models") == []
    assert all(j["state"] == "JOB_STATE_SUCCEEDED" for j in _resources(home, "tuningJobs"))
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "down left the local API running"
    assert (home / "local" / "gcs" / "tunestack-local-demo").is_dir()  # buckets are kept


@pytest.mark.slow
def test_invalid_dataset_uploads_nothing_and_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = _spec(tmp_path)
    train = spec.parent / "data" / "local-demo" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[3] = '{"messages": [{"role": "human", "content": "hi"}]}'
    train.write_text("\n".join(lines) + "\n")
    result = _tunestack(home, "up", str(spec), "--local", "--smoke", timeout=120)
    assert result.returncode == 1
    assert "train.jsonl:4:" in result.stdout and "error[" in result.stdout
    assert "nothing was uploaded" in result.stderr
    assert not (home / "local" / "api.json").exists() and not (home / "local" / "gcs").exists()


@pytest.mark.slow
def test_down_when_nothing_runs_is_a_noop(tmp_path: Path) -> None:
    result = _tunestack(tmp_path / "home", "down", str(_spec(tmp_path)), "--local", timeout=120)
    assert result.returncode == 0 and "no local API is running" in result.stdout
