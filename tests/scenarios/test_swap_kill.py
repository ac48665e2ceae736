"""``up --local`` killed (SIGKILL) in the middle of a blue/green swap, then re-run.

The endpoint serves gs:// weights (no training): weights A, then the spec moves to weights B
and ``up`` is killed at a step of the swap, seen in the server's state files: once B's model
is uploaded, and once B is deployed beside A. The re-run converges: one endpoint (the same
resource name), exactly one deployed model (B's, at 100%) and no orphan model. Every request
point of a swap is swept at the provider level (tests/providers/test_swaps.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from trainer.tiny import build_tiny_checkpoint

from infra import gcs

ENTRY = "import sys; from infra.cli import run; sys.exit(run())"
BUCKET = "tunestack-swap-kill"


def _spec(weights: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": {"id": "tunestack-swap-kill", "region": "us-central1"},
        "buckets": [{"name": BUCKET}],
    }
    if weights:
        spec["endpoints"] = [
            {
                "name": "swap",
                "model": f"gs://{BUCKET}/{weights}",
                "base_model": "meta/llama3-2@llama-3.2-1b-instruct",
                "machine_type": "g2-standard-12",
            }
        ]
    return spec


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.home, self.spec = tmp_path / "home", tmp_path / "swap.yaml"
        self.env = {**os.environ, "TUNESTACK_HOME": str(self.home)}

    def args(self, spec: dict[str, Any]) -> list[str]:
        self.spec.write_text(yaml.safe_dump(spec, sort_keys=False))
        return [sys.executable, "-c", ENTRY, "up", str(self.spec), "--local", "--smoke"]

    def up(self, spec: dict[str, Any]) -> str:
        done = subprocess.run(
            self.args(spec), env=self.env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def kill_when(self, spec: dict[str, Any], moment: Callable[[], bool]) -> None:
        proc = subprocess.Popen(
            self.args(spec), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300
        while not moment():
            assert proc.poll() is None, "up finished before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def resources(self, collection: str) -> list[dict[str, Any]]:
        out = []
        for p in (self.home / "local" / "state" / collection).glob("*.json"):
            try:
                out.append(json.loads(p.read_text())["resource"])
            except (OSError, ValueError):
                continue
        return out

    def down(self) -> None:
        """Removes everything and stops the server (it is a background process)."""
        subprocess.run(
            [sys.executable, "-c", ENTRY, "down", str(self.spec), "--local"],
            env=self.env, capture_output=True, timeout=300, check=False,
        )  # fmt: skip

    def deployed(self) -> list[dict[str, Any]]:
        eps = self.resources("endpoints")
        return list(eps[0].get("deployedModels", [])) if eps else []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["uploaded", "both deployed"])
def test_up_killed_mid_swap_converges_with_one_model(tmp_path: Path, point: str) -> None:
    run = Run(tmp_path)
    try:
        _swap_then_kill(run, tmp_path, point)
    finally:
        run.down()


def _swap_then_kill(run: Run, tmp_path: Path, point: str) -> None:
    run.up(_spec(None))  # the server and the bucket
    api = json.loads((run.home / "local" / "api.json").read_text())
    client = gcs.client(
        "tunestack-swap-kill",
        api["storage_url"],
        token=(run.home / "local" / "token").read_text().strip(),
    )
    for name, seed in (("a", 1), ("b", 2)):
        local = build_tiny_checkpoint("llama", tmp_path / name, seed=seed)
        for f in sorted(p for p in local.rglob("*") if p.is_file()):
            client.bucket(BUCKET).blob(f"{name}/{f.relative_to(local)}").upload_from_filename(f)
    run.up(_spec("a"))
    (endpoint,) = run.resources("endpoints")
    moments = {
        "uploaded": lambda: len(run.resources("models")) == 2,
        "both deployed": lambda: len(run.deployed()) == 2,
    }
    run.kill_when(_spec("b"), moments[point])
    out = run.up(_spec("b"))
    assert "updated" in out
    (after,) = run.resources("endpoints")
    assert after["name"] == endpoint["name"]
    (deployed,) = after["deployedModels"]
    (model,) = run.resources("models")  # no orphan
    assert deployed["model"] == model["name"] and model["artifactUri"] == f"gs://{BUCKET}/b"
    assert after["trafficSplit"] == {deployed["id"]: 100}
