"""``up --local`` with stdout not a terminal prints plain progress lines; ``status --format
json`` then describes the job and the endpoint (snapshot with ids and numbers normalised);
``logs`` prints the trainer log; the loss curve is a real file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from infra.cli import run; sys.exit(run())"
#: The job version's own prefix: ``runs/vehicles-llama/<run key>`` (16 hex of its inputs).
RUN = "gs://tunestack-local-demo/runs/vehicles-llama/<run>"
PREFIX = f"{RUN}/postprocess/node-0"
_RUN_KEY = re.compile(r"(runs/vehicles-llama)/[0-9a-f]{16}\b")


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNESTACK_HOME": str(home),
           "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'trainer_image'}"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], env=env, capture_output=True, text=True, timeout=600
    )


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_normalise(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, float):
        return "<float>"
    if isinstance(value, str):
        value = _RUN_KEY.sub(r"\1/<run>", value)
        return re.sub(
            r"/(tuningJobs|endpoints|models)/\d+", r"/\1/<id>", re.sub(r"^\d{6,}$", "<id>", value)
        )
    return value


@pytest.mark.slow
def test_up_progress_lines_then_status_json_then_logs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(REPO / "specs" / "data" / "local-demo", tmp_path / "data" / "local-demo")
    spec = tmp_path / "local-demo.yaml"
    spec.write_text(
        (REPO / "specs" / "local-demo.yaml").read_text().replace("epochs: 25", "epochs: 2")
    )
    try:
        up = _cli(home, "up", str(spec), "--local", "--smoke", "--no-predict")
        assert up.returncode == 0, up.stdout + up.stderr
        lines = up.stdout.splitlines()
        progress = [line for line in lines if line.startswith("  job vehicles-llama: ")]
        assert progress[0] in ("  job vehicles-llama: PENDING", "  job vehicles-llama: RUNNING")
        pattern = re.compile(
            r"  job vehicles-llama: RUNNING(  step \d+/12 \(epoch [12]/2\)  loss \d+\.\d{4}"
            r"(  eval loss \d+\.\d{4})?  [\d,]+ tok/s  ETA \d:\d\d:\d\d)?$"
        )
        running = [line for line in progress if "RUNNING" in line]
        assert running and all(pattern.match(line) for line in running), running
        summary = [line for line in progress if "succeeded" in line]
        assert re.fullmatch(
            r"  job vehicles-llama: succeeded: train loss \d+\.\d{4}, eval loss \d+\.\d{4} \(12 steps\)",
            summary[0],
        )
        assert f"  checkpoints: {PREFIX}/checkpoints/{{checkpoint-6, checkpoint-12, final}}" in [
            _normalise(line) for line in lines
        ]
        curve = next(line for line in lines if line.startswith("  loss curve: ")).split(": ", 1)[1]
        assert Path(curve).is_file() and Path(curve).read_bytes()[:4] == b"\x89PNG"
        assert Path(curve).is_relative_to(home)

        status = _cli(home, "status", str(spec), "--local", "--format", "json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert _normalise({k: v for k, v in doc.items() if k != "spec"}) == {
            "target": "local",
            "project": "tunestack-local-demo",
            "region": "us-central1",
            "jobs": [{
                "name": "vehicles-llama",
                "job": "projects/tunestack-local-demo/locations/us-central1/tuningJobs/<id>",
                "output_uri": RUN,
                "progress": {
                    "state": "SUCCEEDED", "step": 12, "total_steps": 12, "epoch": 2, "epochs": 2,
                    "loss": "<float>", "eval_loss": "<float>", "tokens_per_s": "<float>",
                    "eta_s": "<float>",
                    "checkpoints": [f"{PREFIX}/checkpoints/checkpoint-6",
                                    f"{PREFIX}/checkpoints/checkpoint-12",
                                    f"{PREFIX}/checkpoints/final"],
                    "loss_curve": f"{PREFIX}/loss_curve.png",
                },
            }],
            "endpoints": [{
                "name": "vehicles-llama",
                "endpoint": "projects/tunestack-local-demo/locations/us-central1/endpoints/<id>",
                "deployed_models": [{
                    "id": "<id>",
                    "model": "projects/tunestack-local-demo/locations/us-central1/models/<id>",
                    "display_name": doc["endpoints"][0]["deployed_models"][0]["display_name"],
                    "min_replicas": 1, "max_replicas": 1, "machine_type": "g2-standard-12",
                    "accelerator_type": "NVIDIA_L4", "accelerator_count": 1,
                }],
                "traffic_split": {"<id>": 100},
            }],
        }  # fmt: skip
        job_id = doc["jobs"][0]["job"].rsplit("/", 1)[1]
        logs = _cli(home, "logs", job_id, "--local")
        assert logs.returncode == 0 and "done:" in logs.stdout, logs.stderr
        assert "it/s]" not in logs.stdout  # --no-progress honoured by the trainer
    finally:
        _cli(home, "down", str(spec), "--local")
