"""The local Vertex REST subset: proto-typed parsing, errors, listing, and the job scheduler.

These run the fake trainer (tests/local/fake_trainer.py) so they stay fast; the real trainer
runs in test_sdk.py and test_up.py.
"""

from __future__ import annotations

import time

import pytest

from infra.gcs import client as gcs_client
from infra.local import storage
from tests.local.conftest import PARENT, Server, tuning_body, wait_state

CHAT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture(scope="module")
def bucket(fake_server: Server) -> str:
    gcs = gcs_client(endpoint=fake_server.storage_url, token=fake_server.token)
    gcs.create_bucket("api-test")
    gcs.bucket("api-test").blob("train.jsonl").upload_from_string(CHAT)
    gcs.bucket("api-test").blob("slow/train.jsonl").upload_from_string(CHAT)
    gcs.bucket("api-test").blob("fail/train.jsonl").upload_from_string(CHAT)
    return "gs://api-test"


def test_create_accepts_enum_names_and_numbers_and_int64_strings(
    fake_server: Server, bucket: str
) -> None:
    body = tuning_body(f"{bucket}/train.jsonl", f"{bucket}/out-enum", labels={"case": "enums"})
    body["supervisedTuningSpec"]["tuningMode"] = "TUNING_MODE_PEFT_ADAPTER"
    body["supervisedTuningSpec"]["hyperParameters"] = {
        "epochCount": "3",
        "adapterSize": 2,
        "learningRateMultiplier": 1.5,
    }
    status, job = fake_server.call(
        "POST", f"/v1beta1/{PARENT}/tuningJobs?$alt=json;enum-encoding=int", body
    )
    assert status == 200, job
    assert job["name"].startswith(f"{PARENT}/tuningJobs/")
    assert job["state"] == 1  # JOB_STATE_QUEUED, as a number when the SDK asks for ints
    assert job["supervisedTuningSpec"]["tuningMode"] == 2
    assert job["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": "3",
        "adapterSize": 2,
        "learningRateMultiplier": 1.5,
    }
    status, named = fake_server.call("GET", f"/v1beta1/{job['name']}")
    assert named["supervisedTuningSpec"]["hyperParameters"]["adapterSize"] == "ADAPTER_SIZE_FOUR"
    assert named["labels"]["tunestack-smoke"] == "true"
    assert "SMOKE" in named["description"]
    fake_server.call("POST", f"/v1beta1/{job['name']}:cancel", {})


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"bogus": 1}, "bogus"),
        ({"baseModel": "meta/llama-9"}, "not an open model"),
        (
            {
                "baseModel": "google/gemma3@gemma-3-1b-it",
                "supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t", "tuningMode": 2},
            },
            "not supported",
        ),
        (
            {"supervisedTuningSpec": {"trainingDatasetUri": "gs://b/t", "tuningMode": "FULLEST"}},
            "FULLEST",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": "gs://b/t",
                    "hyperParameters": {"epochCount": "two"},
                }
            },
            "epochCount",
        ),
        (
            {
                "supervisedTuningSpec": {
                    "trainingDatasetUri": "gs://b/t",
                    "hyperParameters": {"learningRate": 1e-4, "learningRateMultiplier": 1.0},
                }
            },
            "mutually exclusive",
        ),
        ({"outputUri": "/tmp/out"}, "outputUri"),
    ],
)
def test_bad_tuning_job_bodies_are_400_invalid_argument(
    fake_server: Server, patch: dict, needle: str
) -> None:
    body = tuning_body("gs://b/t.jsonl", "gs://b/out")
    body.update(patch)
    status, err = fake_server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", body)
    assert status == 400
    assert err["error"]["status"] == "INVALID_ARGUMENT" and err["error"]["code"] == 400
    assert needle in err["error"]["message"]


def test_unknown_resources_404_and_unsupported_methods_501(fake_server: Server) -> None:
    status, err = fake_server.call("GET", f"/v1beta1/{PARENT}/tuningJobs/123")
    assert status == 404 and err["error"]["status"] == "NOT_FOUND"
    status, err = fake_server.call("GET", f"/v1/{PARENT}/datasets")
    assert status == 501 and err["error"]["status"] == "UNIMPLEMENTED"
    assert f"GET /v1/{PARENT}/datasets" in err["error"]["message"]
    status, err = fake_server.call(
        "POST",
        f"/v1beta1/{PARENT}:deploy",
        {"publisherModelName": "publishers/google/models/gemma3"},
    )
    assert status == 501 and "publisherModelName" in err["error"]["message"]


def test_list_filters_on_labels(fake_server: Server, bucket: str) -> None:
    names = []
    for value in ("aaa", "bbb"):
        body = tuning_body(
            f"{bucket}/train.jsonl", f"{bucket}/out-{value}", labels={"tunestack-key": value}
        )
        _, job = fake_server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", body)
        names.append(job["name"])
    status, page = fake_server.call(
        "GET", f"/v1beta1/{PARENT}/tuningJobs?filter=labels.tunestack-key%3D%22bbb%22"
    )
    assert status == 200
    assert [j["name"] for j in page["tuningJobs"]] == [names[1]]
    _, page = fake_server.call(
        "GET", f"/v1beta1/{PARENT}/tuningJobs?filter=labels.tunestack-key%3A*"
    )
    assert set(names) <= {j["name"] for j in page["tuningJobs"]}
    status, err = fake_server.call("GET", f"/v1beta1/{PARENT}/tuningJobs?filter=create_time%3E1")
    assert status == 400 and "Unsupported filter" in err["error"]["message"]
    _, other = fake_server.call("GET", "/v1beta1/projects/other/locations/us-central1/tuningJobs")
    assert other.get("tuningJobs", []) == []
    for name in names:
        fake_server.call("POST", f"/v1beta1/{name}:cancel", {})


def test_jobs_run_one_at_a_time_and_cancel_stops_the_trainer(
    fake_server: Server, bucket: str
) -> None:
    _, slow = fake_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body(f"{bucket}/slow/train.jsonl", f"{bucket}/out-slow"),
    )
    _, quick = fake_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body(
            f"{bucket}/train.jsonl",
            f"{bucket}/out-quick",
            supervisedTuningSpec={
                "trainingDatasetUri": f"{bucket}/train.jsonl",
                "tuningMode": "TUNING_MODE_FULL",
                "hyperParameters": {"epochCount": "2"},
            },
        ),
    )
    wait_state(fake_server, slow["name"], {"JOB_STATE_RUNNING"})
    time.sleep(1.0)
    _, waiting = fake_server.call("GET", f"/v1beta1/{quick['name']}")
    assert waiting["state"] == "JOB_STATE_QUEUED"  # one job at a time, like Vertex's default quota
    status, _ = fake_server.call("POST", f"/v1beta1/{slow['name']}:cancel", {})
    assert status == 200
    cancelled = wait_state(fake_server, slow["name"], {"JOB_STATE_CANCELLED", "JOB_STATE_FAILED"})
    assert cancelled["state"] == "JOB_STATE_CANCELLED" and cancelled["error"]["code"] == 1
    done = wait_state(fake_server, quick["name"], {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    ids = [c["checkpointId"] for c in done["tunedModel"]["checkpoints"]]
    assert ids == ["checkpoint-1", "checkpoint-2", "final"]
    assert done["startTime"] >= done["createTime"] and done["endTime"] >= done["startTime"]
    log = (
        fake_server.home / "local" / "logs" / f"tuningJobs-{quick['name'].rsplit('/', 1)[1]}.log"
    ).read_text()
    assert "SMOKE" in log and "fake trainer: done" in log


def test_failed_trainer_fails_the_job_with_its_message(fake_server: Server, bucket: str) -> None:
    _, job = fake_server.call(
        "POST",
        f"/v1beta1/{PARENT}/tuningJobs",
        tuning_body(f"{bucket}/fail/train.jsonl", f"{bucket}/out-fail"),
    )
    failed = wait_state(fake_server, job["name"], {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert failed["state"] == "JOB_STATE_FAILED"
    message = failed["error"]["message"]
    # Vertex-style: what failed, no emulator URL, no local path; the log stays reachable.
    assert message.startswith("Training failed (trainer exit code 3): error: 404 GET")
    assert "127.0.0.1" not in message and str(fake_server.home) not in message
    rid = job["name"].rsplit("/", 1)[1]
    assert f"/local/v1/tuningJobs/{rid}/log" in message
    status, log = fake_server.call("GET", f"/local/v1/tuningJobs/{rid}/log")
    assert status == 200 and any("127.0.0.1:4443" in ln for ln in log["lines"])


def test_custom_jobs_run_the_trainer_natively(fake_server: Server, bucket: str) -> None:
    args = [
        "--base-model",
        "qwen/qwen3@qwen3-4b",
        "--train-data",
        "/gcs/api-test/train.jsonl",
        "--output-dir",
        f"{bucket}/out-custom",
        "--tuning-mode",
        "FULL",
        "--epochs",
        "1",
    ]
    body = {
        "displayName": "custom",
        "labels": {"tunestack-key": "ccc"},
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "machineSpec": {
                        "machineType": "a2-highgpu-1g",
                        "acceleratorType": "NVIDIA_TESLA_A100",
                        "acceleratorCount": 1,
                    },
                    "replicaCount": "1",
                    "containerSpec": {
                        "imageUri": "us-docker.pkg.dev/x/y/trainer:abc",
                        "command": ["python", "-m", "trainer"],
                        "args": args,
                    },
                }
            ]
        },
    }
    status, job = fake_server.call("POST", f"/v1beta1/{PARENT}/customJobs", body)
    assert status == 200, job
    done = wait_state(fake_server, job["name"], {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    gcs = gcs_client(endpoint=fake_server.storage_url, token=fake_server.token)
    assert storage.list_dirs(gcs, f"{bucket}/out-custom/postprocess/node-0/checkpoints") == [
        "checkpoint-1",
        "final",
    ]
    log = (
        fake_server.home / "local" / "logs" / f"customJobs-{job['name'].rsplit('/', 1)[1]}.log"
    ).read_text()
    assert (
        "smoke-models/qwen3" in log and "gs://api-test/train.jsonl" in log
    )  # /gcs/ mapped to gs://
    _, page = fake_server.call(
        "GET", f"/v1/{PARENT}/customJobs?filter=labels.tunestack-key%3D%22ccc%22"
    )
    assert [j["name"] for j in page["customJobs"]] == [job["name"]]
    status, _ = fake_server.call("POST", f"/v1/{job['name']}:cancel", {})
    assert status == 200
    _, after = fake_server.call("GET", f"/v1/{job['name']}")
    assert after["state"] == "JOB_STATE_SUCCEEDED"  # cancelling a finished job changes nothing


def test_deploy_of_missing_weights_fails_the_operation_and_leaves_nothing(
    fake_server: Server, bucket: str
) -> None:
    body = {
        "customModel": {"gcsUri": f"{bucket}/nothing-here"},
        "modelConfig": {"modelDisplayName": "ghost"},
        "deployConfig": {
            "dedicatedResources": {
                "machineSpec": {
                    "machineType": "g2-standard-12",
                    "acceleratorType": 11,
                    "acceleratorCount": 1,
                },
                "minReplicaCount": 1,
                "maxReplicaCount": 1,
            }
        },
    }
    status, op = fake_server.call("POST", f"/v1beta1/{PARENT}:deploy", body)
    assert status == 200 and not op.get("done")  # proto JSON omits false
    deadline = time.monotonic() + 30
    while not op.get("done") and time.monotonic() < deadline:
        time.sleep(0.2)
        _, op = fake_server.call("GET", f"/ui/{op['name']}")
    assert op["error"]["code"] == 9 and "no objects" in op["error"]["message"]
    _, endpoints = fake_server.call("GET", f"/v1/{PARENT}/endpoints")
    assert all("ghost" not in e["displayName"] for e in endpoints.get("endpoints", []))
