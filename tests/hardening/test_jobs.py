"""Jobs always terminate (issue 14, finding 4): setup errors fail the job; the watchdog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.gcs import client as gcs_client
from tests.local.conftest import (
    PARENT,
    Server,
    fake_trainer_env,
    start_server,
    tuning_body,
    wait_state,
)


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("jobs-home")
    models = home / "models.json"
    models.write_text('{"meta/llama3_1@llama-3.1-8b": ')  # the invalid models.json
    env = {
        **fake_trainer_env(),
        "TUNESTACK_MODEL_MAP": str(models),
        "TUNESTACK_JOB_WATCHDOG_SECONDS": "2",
    }
    srv = start_server(home, ["--smoke"], env)
    client = gcs_client(endpoint=srv.storage_url, token=srv.token)
    bucket = client.create_bucket("jobs")
    bucket.blob("train.jsonl").upload_from_string(b"{}\n")
    bucket.blob("slow/train.jsonl").upload_from_string(b"{}\n")
    bucket.blob("base/config.json").upload_from_string(b"{}")  # a custom base model to name
    try:
        yield srv
    finally:
        srv.stop()


def test_invalid_models_json_fails_the_job_and_create_is_not_500(jobs_server: Server) -> None:
    status, job = jobs_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body("gs://jobs/train.jsonl", "gs://jobs/out-a"),
    )
    assert status == 200, job
    done = wait_state(jobs_server, job["name"], {"JOB_STATE_FAILED"}, timeout=30)
    message = done["error"]["message"]
    assert "could not start" in message and "models.json" in message
    # Fixing the file helps the next job: it starts.
    models = Path(jobs_server.env["TUNESTACK_MODEL_MAP"])
    models.write_text("{}")
    status, job = jobs_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body("gs://jobs/train.jsonl", "gs://jobs/out-b"),
    )
    assert status == 200
    wait_state(jobs_server, job["name"], {"JOB_STATE_SUCCEEDED"}, timeout=60)


@pytest.mark.parametrize("content", ["[]", "null", "garbage"])
def test_models_json_of_the_wrong_shape_fails_the_job(jobs_server: Server, content: str) -> None:
    Path(jobs_server.env["TUNESTACK_MODEL_MAP"]).write_text(content)
    status, job = jobs_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body("gs://jobs/train.jsonl", f"gs://jobs/out-{content}"),
    )
    assert status == 200
    done = wait_state(jobs_server, job["name"], {"JOB_STATE_FAILED"}, timeout=30)
    assert "could not start" in done["error"]["message"]
    assert "models.json" in done["error"]["message"]


def test_watchdog_fails_a_job_without_progress(jobs_server: Server) -> None:
    body = tuning_body("gs://jobs/slow/train.jsonl", "gs://jobs/out-slow")
    body["customBaseModel"] = "gs://jobs/base"  # no models.json lookup
    status, job = jobs_server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", body)
    assert status == 200
    done = wait_state(jobs_server, job["name"], {"JOB_STATE_FAILED"}, timeout=30)
    assert "no progress" in done["error"]["message"] and "watchdog" in done["error"]["message"]
