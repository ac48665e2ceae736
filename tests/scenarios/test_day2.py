"""Day 2 on ``up --local --smoke``: a sequence of spec edits, each converged and checked.

One spec (``specs/local-demo.yaml``, 1 epoch) is edited step by step the way a team edits it in
PRs; after every ``up`` the test asserts the jobs, the endpoint (its resource name never
changes), its deployed models and traffic split, and the artifacts in the emulator. Two
trainer runs in all (epochs 1 and 2): every later step reuses their checkpoints, and the last
step reverts to the first spec, which serves the first job's weights again without training.

The scenario table (step, what changed, seconds) is printed at the end (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from infra.cli import run; sys.exit(run())"
CKPTS = "postprocess/node-0/checkpoints"


def _spec(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    shutil.copytree(
        REPO / "specs" / "data" / "local-demo", tmp_path / "spec" / "data" / "local-demo"
    )
    data = yaml.safe_load((REPO / "specs" / "local-demo.yaml").read_text())
    data["tuning_jobs"][0]["epochs"] = 1
    return tmp_path / "spec" / "local-demo.yaml", data


class Local:
    """The home of one local API and what its state files say."""

    def __init__(self, home: Path, spec: Path) -> None:
        self.home, self.spec = home, spec

    def up(
        self, data: dict[str, Any], watch: Callable[[], None] | None = None
    ) -> tuple[str, float]:
        self.spec.write_text(yaml.safe_dump(data, sort_keys=False))
        env = {**os.environ, "TUNESTACK_HOME": str(self.home)}
        t0 = time.monotonic()
        stop = threading.Event()
        watcher = None
        if watch is not None:

            def loop() -> None:
                while not stop.is_set():
                    watch()
                    time.sleep(0.02)

            watcher = threading.Thread(target=loop, daemon=True)
            watcher.start()
        try:
            done = subprocess.run(
                [sys.executable, "-c", ENTRY, "up", str(self.spec), "--local", "--smoke"],
                env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout, time.monotonic() - t0

    def resources(self, collection: str) -> list[dict[str, Any]]:
        out = []
        for p in (self.home / "local" / "state" / collection).glob("*.json"):
            try:
                out.append(json.loads(p.read_text())["resource"])
            except (OSError, ValueError):
                continue  # being replaced this instant
        return out

    def endpoint(self) -> dict[str, Any]:
        (ep,) = self.resources("endpoints")
        return ep

    def serving(self) -> list[tuple[str, int]]:
        """(artifactUri, traffic percent) of every deployed model."""
        ep = self.endpoint()
        models = {m["name"]: m for m in self.resources("models")}
        split = ep.get("trafficSplit", {})
        return sorted(
            (models[d["model"]]["artifactUri"], int(split.get(d["id"], 0)))
            for d in ep.get("deployedModels", [])
        )

    def gcs(self, uri: str) -> Path:
        return self.home / "local" / "gcs" / uri.removeprefix("gs://")

    def jobs(self) -> list[dict[str, Any]]:
        return sorted(self.resources("tuningJobs"), key=lambda j: j["createTime"])


def _meta(local: Local, ckpt_uri: str) -> dict[str, Any]:
    path = local.gcs(ckpt_uri) / "tunestack_checkpoint.json"
    return dict(json.loads(path.read_text()))


@pytest.mark.slow
def test_day2_scenario(tmp_path: Path) -> None:
    spec, data = _spec(tmp_path)
    local = Local(tmp_path / "home", spec)
    try:
        _scenario(local, data)
    finally:
        # Removes what the scenario deployed and stops the background server.
        subprocess.run(
            [sys.executable, "-c", ENTRY, "down", str(spec), "--local"],
            env={**os.environ, "TUNESTACK_HOME": str(local.home)},
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip


def _scenario(local: Local, data: dict[str, Any]) -> None:
    table: list[tuple[str, str, float]] = []

    def step(name: str, edit: dict[str, Any], watch: Callable[[], None] | None = None) -> str:
        out, seconds = local.up(edit, watch)
        summary = next(
            line for line in out.splitlines() if line.startswith(("done:", "up to date"))
        )
        table.append((name, summary, seconds))
        return out

    # 0. The first apply: one job, one endpoint serving its final checkpoint.
    base = json.loads(json.dumps(data))
    step("0 first apply (epochs 1)", base)
    (job1,) = local.jobs()
    run1 = job1["outputUri"]
    assert (
        run1.startswith("gs://tunestack-local-demo/runs/vehicles-llama/") and run1.count("/") == 5
    )
    endpoint = local.endpoint()["name"]
    assert local.serving() == [(f"{run1}/{CKPTS}/final", 100)]
    first_model = local.endpoint()["deployedModels"][0]["model"]

    # 1. epochs 1 -> 2: a new job under its own prefix; new weights on the SAME endpoint;
    #    the first job's artifacts intact; the old model resource deleted.
    two = json.loads(json.dumps(base))
    two["tuning_jobs"][0]["epochs"] = 2
    counts: list[int] = []
    step("1 epochs 1 -> 2", two, lambda: counts.append(_deployed(local)))
    job1_again, job2 = local.jobs()
    run2 = job2["outputUri"]
    assert job1_again["name"] == job1["name"] and run2 != run1
    assert local.endpoint()["name"] == endpoint
    assert local.serving() == [(f"{run2}/{CKPTS}/final", 100)]
    assert first_model not in {m["name"] for m in local.resources("models")}
    assert len(local.resources("models")) == 1
    assert (local.gcs(run1) / CKPTS / "final" / "config.json").exists()  # rollback material
    assert (
        json.loads((local.gcs(run1) / "postprocess/node-0/run_config.json").read_text())["fields"][
            "epochs"
        ]
        == 1
    )
    assert counts and min(c for c in counts if c >= 0) >= 1, counts
    steps2 = sorted(
        int(c["step"]) for c in job2["tunedModel"]["checkpoints"] if c["checkpointId"] != "final"
    )
    assert len(steps2) == 2

    # 2. max_replicas 1 -> 2: no job, the same deployed model, changed in place.
    replicas = json.loads(json.dumps(two))
    replicas["endpoints"][0]["max_replicas"] = 2
    before = local.endpoint()["deployedModels"][0]
    step("2 max_replicas 1 -> 2", replicas)
    (after,) = local.endpoint()["deployedModels"]
    assert (after["id"], after["model"]) == (before["id"], before["model"])
    assert after["dedicatedResources"]["maxReplicaCount"] == 2
    assert len(local.jobs()) == 2

    # 3. checkpoint final -> epoch-1: the first epoch's checkpoint of job 2.
    epoch1 = json.loads(json.dumps(replicas))
    epoch1["endpoints"][0]["checkpoint"] = "epoch-1"
    step("3 checkpoint final -> epoch-1", epoch1)
    e1_uri = f"{run2}/{CKPTS}/checkpoint-{steps2[0]}"
    assert local.serving() == [(e1_uri, 100)] and _meta(local, e1_uri)["epoch"] == 1

    # 4. epoch-1 -> best: the checkpoint with the lowest validation loss the trainer recorded.
    best = json.loads(json.dumps(epoch1))
    best["endpoints"][0]["checkpoint"] = "best"
    step("4 checkpoint epoch-1 -> best", best)
    losses = {
        f"{run2}/{CKPTS}/checkpoint-{s}": _meta(local, f"{run2}/{CKPTS}/checkpoint-{s}")[
            "eval_loss"
        ]
        for s in steps2
    }
    want = min(losses, key=lambda u: (losses[u], -int(u.rsplit("-", 1)[1])))
    assert local.serving() == [(want, 100)], losses

    # 5. canary 10 (back to final): the new model takes 10%, the previous one keeps 90%.
    canary = json.loads(json.dumps(replicas))
    canary["endpoints"][0]["canary_percent"] = 10
    step("5 canary_percent 10 (final)", canary)
    assert local.serving() == sorted([(f"{run2}/{CKPTS}/final", 10), (want, 90)])

    # 6. canary removed: the new model alone at 100%, the previous one undeployed and deleted.
    step("6 canary removed", replicas)
    assert local.serving() == [(f"{run2}/{CKPTS}/final", 100)]
    assert len(local.resources("models")) == 1

    # 7. machine type: blue/green on the same endpoint; at every poll a deployed model.
    machine = json.loads(json.dumps(replicas))
    machine["endpoints"][0].update(machine_type="g2-standard-24", accelerator_count=2)
    counts = []
    step("7 machine g2-standard-12 -> 24", machine, lambda: counts.append(_deployed(local)))
    (dm,) = local.endpoint()["deployedModels"]
    assert dm["dedicatedResources"]["machineSpec"]["machineType"] == "g2-standard-24"
    assert local.endpoint()["name"] == endpoint and len(local.resources("models")) == 1
    assert counts and min(c for c in counts if c >= 0) >= 1, counts
    assert max(counts) == 2  # the new one served beside the old before the old left

    # 8. revert to the first spec: job 1 adopted by key (no training), its weights served.
    out = step("8 revert to the first spec", base)
    assert len(local.jobs()) == 2 and "submitted" not in out
    assert local.endpoint()["name"] == endpoint
    assert local.serving() == [(f"{run1}/{CKPTS}/final", 100)]
    assert len(local.resources("models")) == 1

    print("\nstep | up summary | seconds")
    for name, summary, seconds in table:
        print(f"{name} | {summary} | {seconds:.1f}")


def _deployed(local: Local) -> int:
    eps = local.resources("endpoints")
    return len(eps[0].get("deployedModels", [])) if eps else -1
