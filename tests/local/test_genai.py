"""Google's Gen AI SDK (``google-genai``, the successor of ``vertexai.tuning``), unmodified,
runs open-model tuning jobs against the local API: create, get, list and cancel, with the
seed's models in both modes; ``vertexai.tuning.sft`` reads the same job.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import vertexai
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials
from vertexai.tuning import sft

from infra.gcs import client as gcs_client
from tests.local.conftest import Server

PROJECT = "genai-project"
REGION = "us-central1"
CHAT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'


@pytest.fixture(scope="module")
def bucket(fake_server: Server) -> str:
    gcs = gcs_client(endpoint=fake_server.storage_url, token=fake_server.token)
    gcs.create_bucket("genai-bucket")
    gcs.bucket("genai-bucket").blob("slow/train.jsonl").upload_from_string(CHAT)
    gcs.bucket("genai-bucket").blob("train.jsonl").upload_from_string(CHAT)
    return "gs://genai-bucket"


@pytest.fixture()
def client(fake_server: Server) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location=REGION,
        credentials=Credentials(token=fake_server.token),
        http_options=types.HttpOptions(base_url=fake_server.api_url),
    )


@pytest.mark.parametrize(
    ("base_model", "mode", "extra"),
    [
        ("meta/llama3_1@llama-3.1-8b", "TUNING_MODE_FULL", {"learning_rate": 1e-5}),
        (
            "qwen/qwen3@qwen3-32b",
            "TUNING_MODE_PEFT_ADAPTER",
            {"adapter_size": "ADAPTER_SIZE_EIGHT", "learning_rate_multiplier": 2.0},
        ),
        ("google/gemma3@gemma-3-1b-it", "TUNING_MODE_FULL", {}),
        ("qwen/qwen3@qwen3-4b", "TUNING_MODE_FULL", {"batch_size": 4}),
    ],
)
def test_genai_create_get_list_cancel(
    client: genai.Client, bucket: str, base_model: str, mode: str, extra: dict[str, Any]
) -> None:
    job = client.tunings.tune(
        base_model=base_model,
        training_dataset=types.TuningDataset(gcs_uri=f"{bucket}/slow/train.jsonl"),
        config=types.CreateTuningJobConfig(
            tuned_model_display_name=f"genai-{mode.lower()}",
            epoch_count=2,
            tuning_mode=mode,
            output_uri=f"{bucket}/out-{mode.lower()}",
            labels={"suite": "genai"},
            **extra,
        ),
    )
    assert job.name and job.name.startswith(f"projects/{PROJECT}/locations/{REGION}/tuningJobs/")
    assert job.base_model == base_model
    got = client.tunings.get(name=job.name)
    assert got.name == job.name and got.state is not None
    assert got.supervised_tuning_spec is not None
    assert got.supervised_tuning_spec.tuning_mode == types.TuningMode(mode)
    assert got.supervised_tuning_spec.hyper_parameters.epoch_count == 2
    if "adapter_size" in extra:
        assert got.supervised_tuning_spec.hyper_parameters.adapter_size == types.AdapterSize(
            extra["adapter_size"]
        )
    assert got.labels is not None and got.labels["suite"] == "genai"
    names = [j.name for j in client.tunings.list(config=types.ListTuningJobsConfig(page_size=2))]
    assert job.name in names
    client.tunings.cancel(name=job.name)
    final = client.tunings.get(name=job.name)
    assert final.state in (types.JobState.JOB_STATE_CANCELLING, types.JobState.JOB_STATE_CANCELLED)


def test_custom_base_model_through_genai(
    client: genai.Client, bucket: str, fake_server: Server
) -> None:
    gcs = gcs_client(endpoint=fake_server.storage_url, token=fake_server.token)
    gcs.bucket("genai-bucket").blob("weights/config.json").upload_from_string(b"{}")
    job = client.tunings.tune(
        base_model="meta/llama3_1@llama-3.1-8b",
        training_dataset=types.TuningDataset(gcs_uri=f"{bucket}/slow/train.jsonl"),
        config=types.CreateTuningJobConfig(
            tuning_mode="TUNING_MODE_PEFT_ADAPTER",
            custom_base_model=f"{bucket}/weights",
            output_uri=f"{bucket}/out-custom",
        ),
    )
    got = client.tunings.get(name=job.name)
    assert got.custom_base_model == f"{bucket}/weights"
    client.tunings.cancel(name=job.name)


def test_genai_errors_are_the_local_apis(client: genai.Client, bucket: str) -> None:
    with pytest.raises(genai.errors.ClientError) as e:
        client.tunings.tune(
            base_model="meta/llama3_1@llama-3.1-8b",
            training_dataset=types.TuningDataset(gcs_uri=f"{bucket}/absent.jsonl"),
            config=types.CreateTuningJobConfig(
                tuning_mode="TUNING_MODE_FULL", output_uri=f"{bucket}/o"
            ),
        )
    assert e.value.code == 400 and e.value.status == "FAILED_PRECONDITION"
    assert "absent.jsonl" in (e.value.message or "")


def test_list_survives_every_stored_job(client: genai.Client, fake_server: Server) -> None:
    # tuningMode 99 used to be stored and then crashed client.tunings.list(); now refused.
    body = {
        "baseModel": "meta/llama3_1@llama-3.1-8b",
        "outputUri": "gs://genai-bucket/o",
        "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://genai-bucket/train.jsonl",
            "tuningMode": 99,
        },
    }
    status, err = fake_server.call(
        "POST", f"/v1beta1/projects/{PROJECT}/locations/{REGION}/tuningJobs", body
    )
    assert status == 400, err
    jobs = list(client.tunings.list())
    assert all(
        j.supervised_tuning_spec is None
        or j.supervised_tuning_spec.tuning_mode is None
        or isinstance(j.supervised_tuning_spec.tuning_mode, types.TuningMode)
        for j in jobs
    )


def test_vertexai_sft_reads_the_genai_job(
    client: genai.Client, bucket: str, fake_server: Server
) -> None:
    job = client.tunings.tune(
        base_model="meta/llama3_1@llama-3.1-8b",
        training_dataset=types.TuningDataset(gcs_uri=f"{bucket}/slow/train.jsonl"),
        config=types.CreateTuningJobConfig(
            tuning_mode="TUNING_MODE_FULL", output_uri=f"{bucket}/out-sft"
        ),
    )
    vertexai.init(
        project=PROJECT,
        location=REGION,
        api_endpoint=fake_server.api_url,
        api_transport="rest",
        credentials=Credentials(token=fake_server.token),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sft_job = sft.SupervisedTuningJob(job.name)
        assert sft_job.resource_name == job.name
        assert sft_job._gca_resource.base_model == "meta/llama3_1@llama-3.1-8b"
        assert job.name in [j.resource_name for j in sft.SupervisedTuningJob.list()]
        sft_job.cancel()
    assert client.tunings.get(name=job.name).state in (
        types.JobState.JOB_STATE_CANCELLING,
        types.JobState.JOB_STATE_CANCELLED,
    )
