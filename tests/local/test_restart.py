"""State on disk: jobs survive a server restart (even kill -9); base model mapping rules."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from trainer import tiny

from infra.gcs import client as gcs_client
from tests.local.conftest import PARENT, fake_trainer_env, start_server, tuning_body, wait_state

CHAT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _internal(home: Path, name: str) -> dict:
    return json.loads(
        (home / "local" / "state" / "tuningJobs" / f"{name.rsplit('/', 1)[1]}.json").read_text()
    )["internal"]


@pytest.mark.slow
def test_state_survives_kill_9_and_the_running_job_is_queued_again(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["--smoke"], fake_trainer_env())
    try:
        gcs = gcs_client(endpoint=server.storage_url, token=server.token)
        gcs.create_bucket("restart")
        gcs.bucket("restart").blob("train.jsonl").upload_from_string(CHAT)
        gcs.bucket("restart").blob("slow/train.jsonl").upload_from_string(CHAT)
        _, done = server.call(
            "POST",
            f"/v1beta1/{PARENT}/tuningJobs",
            tuning_body("gs://restart/train.jsonl", "gs://restart/out-a"),
        )
        wait_state(server, done["name"], {"JOB_STATE_SUCCEEDED"})
        _, slow = server.call(
            "POST",
            f"/v1beta1/{PARENT}/tuningJobs",
            tuning_body("gs://restart/slow/train.jsonl", "gs://restart/out-b"),
        )
        wait_state(server, slow["name"], {"JOB_STATE_RUNNING"})
        trainer_pid = _internal(tmp_path, slow["name"])["pid"]
        assert _alive(trainer_pid)
        server.stop("kill")
        deadline = time.monotonic() + 15
        while _alive(trainer_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(trainer_pid), "the trainer outlived its server"

        server = start_server(tmp_path, ["--smoke"], fake_trainer_env())
        _, again = server.call("GET", f"/v1beta1/{done['name']}")
        assert (
            again["state"] == "JOB_STATE_SUCCEEDED"
            and again["tunedModel"]["checkpoints"][-1]["checkpointId"] == "final"
        )
        wait_state(server, slow["name"], {"JOB_STATE_RUNNING"})
        assert _internal(tmp_path, slow["name"])["pid"] != trainer_pid
        log = (
            tmp_path / "local" / "logs" / f"tuningJobs-{slow['name'].rsplit('/', 1)[1]}.log"
        ).read_text()
        assert "server restarted; job queued again" in log
        _, listed = server.call("GET", f"/v1beta1/{PARENT}/tuningJobs")
        assert {j["name"] for j in listed["tuningJobs"]} == {done["name"], slow["name"]}
        server.call("POST", f"/v1beta1/{slow['name']}:cancel", {})
        assert wait_state(server, slow["name"], {"JOB_STATE_CANCELLED"})["error"]["code"] == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_base_models_need_a_mapping_outside_smoke_mode(tmp_path: Path) -> None:
    server = start_server(tmp_path, [], fake_trainer_env())
    try:
        gcs = gcs_client(endpoint=server.storage_url, token=server.token)
        gcs.create_bucket("mapped")
        gcs.bucket("mapped").blob("train.jsonl").upload_from_string(CHAT)
        _, job = server.call(
            "POST",
            f"/v1beta1/{PARENT}/tuningJobs",
            tuning_body("gs://mapped/train.jsonl", "gs://mapped/out"),
        )
        assert "tunestack-smoke" not in job.get("labels", {})
        failed = wait_state(server, job["name"], {"JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"})
        assert failed["state"] == "JOB_STATE_FAILED" and failed["error"]["code"] == 9
        assert "no local weights for meta/llama3_1@llama-3.1-8b" in failed["error"]["message"]
        assert (
            "models.json" in failed["error"]["message"] and "--smoke" in failed["error"]["message"]
        )

        weights = tiny.build_tiny_checkpoint("llama", tmp_path / "my-llama")
        (tmp_path / "local" / "models.json").write_text(
            json.dumps({"meta/llama3_1@llama-3.1-8b": str(weights)})
        )
        _, job = server.call(
            "POST",
            f"/v1beta1/{PARENT}/tuningJobs",
            tuning_body("gs://mapped/train.jsonl", "gs://mapped/out"),
        )
        assert (
            wait_state(server, job["name"], {"JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"})["state"]
            == "JOB_STATE_SUCCEEDED"
        )
        log = (
            tmp_path / "local" / "logs" / f"tuningJobs-{job['name'].rsplit('/', 1)[1]}.log"
        ).read_text()
        assert f"--base-model {weights}" in log and "SMOKE" not in log
    finally:
        server.stop()
