"""State that survives (issue 14, finding 5): quarantine, atomic 0600 writes, down when stopped."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from infra.gcs import client as gcs_client
from infra.local import daemon, home
from infra.local.state import Store
from tests.local.conftest import (
    ENTRY,
    PARENT,
    Server,
    fake_trainer_env,
    start_server,
    tuning_body,
    wait_state,
)

BAD = {
    "1.json": '{"resource": {"name": "x", "sta',  # truncated
    "2.json": "\x00\x01garbage",
    "3.json": "[]",
    "4.json": "null",
    "5.json": '{"resource": []}',
}


def test_unreadable_state_files_are_quarantined_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = tmp_path / "tuningJobs"
    jobs.mkdir(parents=True)
    for name, text in BAD.items():
        (jobs / name).write_text(text)
    (jobs / "9.json").write_text(json.dumps({"resource": {"state": "JOB_STATE_SUCCEEDED"}}))
    (tmp_path / "last_id.json").write_text("null")
    store = Store(tmp_path)
    assert [rid for rid, _ in store.items("tuningJobs")] == ["9"]
    err = capsys.readouterr().err
    for name in [*BAD, "last_id.json"]:
        assert name in err, err
    moved = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert len(moved) == len(BAD) + 1 and all(not (jobs / n).exists() for n in BAD)
    assert int(store.new_id()) > 9


def test_server_starts_with_list_and_null_state_files(tmp_path: Path) -> None:
    state = tmp_path / "local" / "state"
    for collection, text in (("endpoints", "[]"), ("tuningJobs", "null"), ("models", "{")):
        (state / collection).mkdir(parents=True)
        (state / collection / "77.json").write_text(text)
    srv = start_server(tmp_path, ["--smoke"], fake_trainer_env())
    try:
        status, listed = srv.call("GET", f"/v1beta1/{PARENT}/endpoints")
        assert status == 200 and not listed.get("endpoints")
        assert len(list((state / "quarantine").iterdir())) == 3
        log = (tmp_path / "local" / "server.log").read_text()
        assert "endpoints/77.json" in log and "quarantine" in log
    finally:
        srv.stop()


def test_atomic_write_is_private_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    home.write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_files_under_the_home_are_private(server: Server) -> None:
    # The job's data exists (the API checks it at create, as Vertex does).
    data = gcs_client(endpoint=server.storage_url, token=server.token).create_bucket("mode-data")
    data.blob("t.jsonl").upload_from_string(b"{}\n")
    status, job = server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body("gs://mode-data/t.jsonl", "gs://mode-data/o"),
    )
    assert status == 200
    wait_state(server, job["name"], {"JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"}, timeout=60)
    gcs_client(endpoint=server.storage_url, token=server.token).create_bucket("modes")
    local = server.home / "local"
    loose = [
        f"{p} {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in [local, *local.rglob("*")]
        if not p.is_symlink()
        and p.name != "server.log"  # opened by the test harness, not the server
        and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    assert loose == []
    assert stat.S_IMODE((local / "token").stat().st_mode) == 0o600


def test_has_state_reads_files_directly(tmp_path: Path) -> None:
    assert not daemon.has_state(tmp_path)
    jobs = tmp_path / "local" / "state" / "tuningJobs"
    jobs.mkdir(parents=True)
    (jobs / "1.json").write_text(json.dumps({"resource": {"state": "JOB_STATE_SUCCEEDED"}}))
    assert not daemon.has_state(tmp_path)
    (jobs / "2.json").write_text(json.dumps({"resource": {"state": "JOB_STATE_QUEUED"}}))
    assert daemon.has_state(tmp_path)


def test_down_with_the_server_stopped_starts_it_and_leaves_nothing(tmp_path: Path) -> None:
    env = {**fake_trainer_env(), "TUNESTACK_HOME": str(tmp_path)}
    srv = start_server(tmp_path, ["--smoke"], fake_trainer_env())
    client = gcs_client(endpoint=srv.storage_url, token=srv.token)
    client.create_bucket("downs").blob("slow/t.jsonl").upload_from_string(b"{}\n")
    status, job = srv.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body("gs://downs/slow/t.jsonl", "gs://downs/o"),
    )
    assert status == 200
    wait_state(srv, job["name"], {"JOB_STATE_RUNNING"}, timeout=30)
    spec = tmp_path / "spec.yaml"
    spec.write_text("project: {id: test-project, region: us-central1}\n")
    digest = hashlib.sha256(str(spec.resolve()).encode()).hexdigest()[:16]
    record = tmp_path / "local" / "applied" / f"{digest}.json"
    home.write_json_atomic(record, {"jobs": {"j": job["name"]}, "endpoints": {}})
    srv.stop()  # the job is queued again in state; nothing answers now
    assert daemon.has_state(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", ENTRY, "down", str(spec), "--local"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The restarted server may fail the re-queued job first (it starts without --smoke);
    # either way the job ends and nothing is left running.
    assert "starting it" in out.stdout, out.stdout
    assert "Traceback" not in out.stderr
    assert not daemon.has_state(tmp_path)
    rid = job["name"].rsplit("/", 1)[1]
    final = json.loads((tmp_path / "local" / "state" / "tuningJobs" / f"{rid}.json").read_text())
    assert final["resource"]["state"] in ("JOB_STATE_CANCELLED", "JOB_STATE_FAILED")
    assert not (tmp_path / "local" / "api.json").exists()  # stopped again: nothing left running
