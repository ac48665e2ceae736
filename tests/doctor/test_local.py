"""``tunestack doctor --local``: discovery files, API + token, storage emulator, buckets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main
from infra.doctor.local import run_local_checks
from infra.doctor.results import CANNOT_CHECK, FAIL, PASS, CheckResult, exit_code
from infra.spec.models import Spec

from .conftest import TOKEN


def make_spec(buckets: list[dict[str, Any]] | None = None, region: str = "us-central1") -> Spec:
    return Spec.model_validate(
        {
            "project": {"id": "tuned-proj-1", "region": region},
            "buckets": buckets
            if buckets is not None
            else [{"name": "tuned-data", "create": False}],
        }
    )


def write_discovery(home: Path, api_url: str, storage_url: str, token: str = TOKEN) -> None:
    (home / "local").mkdir(parents=True, exist_ok=True)
    (home / "local" / "api.json").write_text(
        json.dumps({"api_url": api_url, "storage_url": storage_url, "pid": os.getpid()})
    )
    (home / "local" / "token").write_text(token + "\n")


@pytest.fixture(autouse=True)
def emulator_without_auth(world):
    world.open_storage = True


def check(spec: Spec, home: Path) -> dict[str, CheckResult]:
    return {r.check: r for r in run_local_checks(spec, home)}


def test_running_stack_passes(tmp_path, fake_google, world):
    write_discovery(tmp_path, fake_google, fake_google)
    world.jobs["us-central1"] = [("qwen/qwen3@qwen3-4b", "JOB_STATE_RUNNING")]
    results = check(
        make_spec([{"name": "tuned-data", "create": False}, {"name": "later"}]), tmp_path
    )
    assert {n: r.status for n, r in results.items()} == {
        "region": PASS,
        "local-discovery": PASS,
        "local-api": PASS,
        "local-storage": PASS,
        "bucket:tuned-data": PASS,
        "bucket:later": PASS,
    }
    assert "accepts the token (1 tuning job(s)" in results["local-api"].detail
    assert "created when the spec is applied" in results["bucket:later"].detail
    paths = [p for _, p, _ in world.requests]
    assert "/v1beta1/projects/tuned-proj-1/locations/us-central1/tuningJobs" in paths
    assert "/storage/v1/b/tuned-data" in paths


def test_no_discovery_file_fails_with_tunestack_up(tmp_path):
    results = check(make_spec(), tmp_path)
    assert results["local-discovery"].status == FAIL
    assert "tunestack up" in results["local-discovery"].fix
    assert results["local-api"].status == CANNOT_CHECK
    assert results["bucket:tuned-data"].status == CANNOT_CHECK


def test_corrupt_discovery_file_fails(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "api.json").write_text("{not json")
    (tmp_path / "local" / "token").write_text(TOKEN)
    results = check(make_spec(), tmp_path)
    assert results["local-discovery"].status == FAIL
    assert "unreadable" in results["local-discovery"].detail


def test_rejected_token_fails(tmp_path, fake_google):
    write_discovery(tmp_path, fake_google, fake_google, token="stale-token")
    results = check(make_spec(), tmp_path)
    assert results["local-api"].status == FAIL
    assert "refused the token (HTTP 401)" in results["local-api"].detail
    assert results["local-storage"].status == PASS


def test_stale_discovery_file_fails_api_and_storage(tmp_path):
    write_discovery(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    results = check(make_spec(), tmp_path)
    assert results["local-api"].status == FAIL
    assert "does not answer" in results["local-api"].detail
    assert results["local-storage"].status == FAIL
    assert results["bucket:tuned-data"].status == CANNOT_CHECK
    assert exit_code(list(results.values())) == 1


def test_adopted_bucket_missing_from_the_emulator_fails(tmp_path, fake_google, world):
    world.buckets = {}
    write_discovery(tmp_path, fake_google, fake_google)
    results = check(make_spec(), tmp_path)
    assert results["bucket:tuned-data"].status == FAIL
    assert "set create: true" in results["bucket:tuned-data"].fix


def test_wrong_region_fails_locally_too(tmp_path, fake_google):
    write_discovery(tmp_path, fake_google, fake_google)
    results = check(make_spec(region="europe-west1"), tmp_path)
    assert results["region"].status == FAIL


def test_cli_local_json(tmp_path, fake_google, monkeypatch, capsys):
    write_discovery(tmp_path, fake_google, fake_google)
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "project:\n  id: tuned-proj-1\n  region: us-central1\nbuckets:\n  - name: tuned-data\n    create: false\n"
    )
    assert main(["doctor", str(spec), "--local", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "local"
    assert [c["check"] for c in report["checks"]] == [
        "region",
        "local-discovery",
        "local-api",
        "local-storage",
        "bucket:tuned-data",
    ]


@pytest.mark.slow
def test_against_the_real_local_stack(local_api):
    client = local_api.storage_client()
    if not client.bucket("doctor-adopted").exists():
        client.create_bucket("doctor-adopted")
    spec = make_spec(
        [{"name": "doctor-adopted", "create": False}, {"name": "doctor-missing", "create": False}]
    )
    results = check(spec, local_api.home)
    assert results["local-discovery"].status == PASS
    assert results["local-api"].status == PASS, results["local-api"]
    assert results["local-storage"].status == PASS, results["local-storage"]
    assert results["bucket:doctor-adopted"].status == PASS
    assert results["bucket:doctor-missing"].status == FAIL
