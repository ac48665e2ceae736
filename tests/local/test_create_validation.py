"""Every bad request of issue 13, and the Vertex error it gets at create (never a late failure).

Table-driven: each row is a body (or a path) and the status, google.rpc status and field the
answer must name, in Vertex's error JSON (``details`` with a ``google.rpc.BadRequest``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.gcs import client as gcs_client
from tests.local.conftest import PARENT, Server, tuning_body

CHAT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
TRAIN = "gs://create-checks/train.jsonl"
OUT = "gs://create-checks/out"


@pytest.fixture(scope="module")
def bucket(fake_server: Server) -> str:
    gcs = gcs_client(endpoint=fake_server.storage_url, token=fake_server.token)
    gcs.create_bucket("create-checks")
    gcs.bucket("create-checks").blob("train.jsonl").upload_from_string(CHAT)
    return "gs://create-checks"


def _spec(**hyper: Any) -> dict[str, Any]:
    return {
        "supervisedTuningSpec": {
            "trainingDatasetUri": TRAIN,
            "tuningMode": 1,
            "hyperParameters": hyper,
        }
    }


def _peft(**hyper: Any) -> dict[str, Any]:
    return {
        "supervisedTuningSpec": {
            "trainingDatasetUri": TRAIN,
            "tuningMode": 2,
            "hyperParameters": hyper,
        }
    }


# (case, body patch, location, status, rpc status, field)
TUNING_CASES = [
    ("not a tuning region", {}, "asia-south1", 400, "INVALID_ARGUMENT", "parent"),
    (
        "unknown enum number",
        {"supervisedTuningSpec": {"trainingDatasetUri": TRAIN, "tuningMode": 99}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.tuningMode",
    ),
    (
        "unknown enum name",
        {"supervisedTuningSpec": {"trainingDatasetUri": TRAIN, "tuningMode": "FULLEST"}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        None,
    ),
    (
        "negative epochs",
        _spec(epochCount="-1"),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.epochCount",
    ),
    (
        "zero epochs",
        _spec(epochCount="0"),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.epochCount",
    ),
    (
        "negative lr multiplier",
        _spec(learningRateMultiplier=-1),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.learningRateMultiplier",
    ),
    (
        "zero learning rate",
        _spec(learningRate=0),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.learningRate",
    ),
    (
        "zero batch size",
        _spec(batchSize="0"),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.batchSize",
    ),
    (
        "adapter size with FULL",
        _spec(adapterSize="ADAPTER_SIZE_EIGHT"),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.adapterSize",
    ),
    (
        "adapter size two",
        _peft(adapterSize="ADAPTER_SIZE_TWO"),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.adapterSize",
    ),
    (
        "unknown adapter size number",
        _peft(adapterSize=42),
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.hyperParameters.adapterSize",
    ),
    (
        "mode the model lacks",
        {"baseModel": "google/gemma3@gemma-3-1b-it", **_peft()},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.tuningMode",
    ),
    (
        "unknown model",
        {"baseModel": "meta/llama-9"},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "baseModel",
    ),
    (
        "upper-case label key",
        {"labels": {"Team": "ml"}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "labels.Team",
    ),
    (
        "label key starting with a digit",
        {"labels": {"1team": "ml"}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "labels.1team",
    ),
    (
        "upper-case label value",
        {"labels": {"team": "ML"}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "labels.team",
    ),
    (
        "64-char label key",
        {"labels": {"k" * 64: "v"}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "labels." + "k" * 64,
    ),
    (
        "65 labels",
        {"labels": {f"k{i}": "v" for i in range(65)}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "labels",
    ),
    (
        "300-char display name",
        {"tunedModelDisplayName": "x" * 300},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "tunedModelDisplayName",
    ),
    (
        "output not gs://",
        {"outputUri": "/tmp/out"},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "outputUri",
    ),
    (
        "output bucket missing",
        {"outputUri": "gs://no-such-bucket-xyz/out"},
        "us-central1",
        400,
        "FAILED_PRECONDITION",
        "outputUri",
    ),
    (
        "training file missing",
        {
            "supervisedTuningSpec": {
                "trainingDatasetUri": "gs://create-checks/absent.jsonl",
                "tuningMode": 1,
            }
        },
        "us-central1",
        400,
        "FAILED_PRECONDITION",
        "supervisedTuningSpec.trainingDatasetUri",
    ),
    (
        "training bucket missing",
        {
            "supervisedTuningSpec": {
                "trainingDatasetUri": "gs://no-such-bucket-xyz/t.jsonl",
                "tuningMode": 1,
            }
        },
        "us-central1",
        400,
        "FAILED_PRECONDITION",
        "supervisedTuningSpec.trainingDatasetUri",
    ),
    (
        "validation file missing",
        {
            "supervisedTuningSpec": {
                "trainingDatasetUri": TRAIN,
                "validationDatasetUri": "gs://create-checks/nope.jsonl",
                "tuningMode": 1,
            }
        },
        "us-central1",
        400,
        "FAILED_PRECONDITION",
        "supervisedTuningSpec.validationDatasetUri",
    ),
    (
        "custom base model empty",
        {"customBaseModel": "gs://create-checks/no-weights"},
        "us-central1",
        400,
        "FAILED_PRECONDITION",
        "customBaseModel",
    ),
    (
        "no training data",
        {"supervisedTuningSpec": {"tuningMode": 1}},
        "us-central1",
        400,
        "INVALID_ARGUMENT",
        "supervisedTuningSpec.trainingDatasetUri",
    ),
]


@pytest.mark.parametrize(
    ("patch", "location", "status", "rpc", "field"),
    [c[1:] for c in TUNING_CASES],
    ids=[c[0] for c in TUNING_CASES],
)
def test_bad_tuning_jobs_are_refused_at_create(
    fake_server: Server,
    bucket: str,
    patch: dict[str, Any],
    location: str,
    status: int,
    rpc: str,
    field: str | None,
) -> None:
    body = tuning_body(TRAIN, OUT)
    body.update(copy.deepcopy(patch))
    parent = f"projects/test-project/locations/{location}"
    got, err = fake_server.call("POST", f"/v1beta1/{parent}/tuningJobs", body)
    assert (got, err["error"]["status"], err["error"]["code"]) == (status, rpc, status), err
    if field is not None:
        violations = err["error"]["details"][0]["fieldViolations"]
        assert err["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert violations[0]["field"] == field and field in err["error"]["message"]
    # Nothing was created.
    _, listed = fake_server.call("GET", f"/v1beta1/{PARENT}/tuningJobs")
    assert all(
        j.get("tunedModelDisplayName") != body.get("tunedModelDisplayName")
        or j.get("tunedModelDisplayName") != "x" * 300
        for j in listed.get("tuningJobs", [])
    )


def test_a_valid_job_in_every_tuning_region_is_accepted(fake_server: Server, bucket: str) -> None:
    for region in ("us-central1", "europe-west4", "us-west1", "us-east5", "asia-southeast1"):
        body = tuning_body(
            TRAIN, OUT, labels={"team": "ml-1", "ünicode": ""}, tunedModelDisplayName="x" * 128
        )
        status, job = fake_server.call(
            "POST", f"/v1beta1/projects/p/locations/{region}/tuningJobs", body
        )
        assert status == 200, job
        fake_server.call("POST", f"/v1beta1/{job['name']}:cancel", {})


def test_bad_custom_jobs_are_refused_at_create(fake_server: Server) -> None:
    pools = [
        {
            "machineSpec": {"machineType": "g2-standard-12"},
            "replicaCount": "1",
            "containerSpec": {"imageUri": "x"},
        }
    ]
    for patch, field in (
        ({}, "displayName"),
        ({"displayName": "y" * 129}, "displayName"),
        ({"displayName": "ok", "labels": {"A": "b"}}, "labels.A"),
    ):
        body = {"jobSpec": {"workerPoolSpecs": pools}, **patch}
        status, err = fake_server.call("POST", f"/v1beta1/{PARENT}/customJobs", body)
        assert (
            status == 400 and err["error"]["details"][0]["fieldViolations"][0]["field"] == field
        ), err


def test_resource_paths_must_match_project_and_location(fake_server: Server, bucket: str) -> None:
    status, job = fake_server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", tuning_body(TRAIN, OUT))
    assert status == 200, job
    rid = job["name"].rsplit("/", 1)[1]
    for parent in (
        "projects/OTHER/locations/us-central1",
        "projects/test-project/locations/europe-west4",
    ):
        for method, suffix in (("GET", ""), ("POST", ":cancel")):
            status, err = fake_server.call(
                method,
                f"/v1beta1/{parent}/tuningJobs/{rid}{suffix}",
                {} if method == "POST" else None,
            )
            assert status == 404 and err["error"]["status"] == "NOT_FOUND", (parent, suffix, err)
        _, listed = fake_server.call("GET", f"/v1beta1/{parent}/tuningJobs")
        assert rid not in str(listed)
    for collection in ("endpoints", "models", "operations", "customJobs"):
        status, err = fake_server.call(
            "GET", f"/v1/projects/OTHER/locations/us-central1/{collection}/{rid}"
        )
        assert status == 404, (collection, err)
    status, same = fake_server.call("GET", f"/v1beta1/{job['name']}")
    assert status == 200 and same["name"] == job["name"]
    fake_server.call("POST", f"/v1beta1/{job['name']}:cancel", {})


@pytest.mark.parametrize(
    "query", ["pageToken=bogus", "pageToken=999999", "pageToken=-1", "pageSize=abc", "pageSize=-5"]
)
def test_bad_page_tokens_and_sizes_are_400(fake_server: Server, query: str) -> None:
    for collection in ("tuningJobs", "customJobs", "endpoints", "models"):
        status, err = fake_server.call("GET", f"/v1beta1/{PARENT}/{collection}?{query}")
        assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT", (collection, err)


def test_non_finite_numbers_in_api_bodies_are_400(fake_server: Server, bucket: str) -> None:
    for raw in (b"NaN", b"Infinity", b"1e400"):
        body = (
            b'{"baseModel": "meta/llama3_1@llama-3.1-8b", "outputUri": "' + OUT.encode() + b'", '
            b'"supervisedTuningSpec": {"trainingDatasetUri": "' + TRAIN.encode() + b'", '
            b'"hyperParameters": {"learningRateMultiplier": ' + raw + b"}}}"
        )
        status, err = fake_server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", body)
        assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT", (raw, err)
