"""Google's own Vertex AI SDK, unmodified, against ``tunestack serve`` with the real trainer.

Only ``vertexai.init`` differs from the seed page's snippet: the local endpoint, REST
transport and credentials carrying the local token.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import vertexai
from google.cloud import aiplatform
from vertexai.preview import model_garden
from vertexai.tuning import SourceModel, sft

from tests.local.conftest import http

PROJECT_ID = "sdk-project"
REGION = "us-central1"
CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]
    }
    for q, a in [
        ("What is a car?", "A road vehicle."),
        ("What is a boat?", "A vessel on water."),
        ("What is a bus?", "A big road vehicle."),
        ("What is a plane?", "A flying vehicle."),
    ]
]


@pytest.mark.slow
def test_seed_snippet_end_to_end(local_api: Any) -> None:
    gcs = local_api.storage_client()
    bucket = gcs.create_bucket("sdk-bucket")
    data = "".join(json.dumps(row) + "\n" for row in CHAT)
    bucket.blob("data/train.jsonl").upload_from_string(data)
    bucket.blob("data/validation.jsonl").upload_from_string(data)

    vertexai.init(
        project=PROJECT_ID,
        location=REGION,
        api_endpoint=local_api.api_url,
        api_transport="rest",
        credentials=local_api.credentials(),
    )

    # --- the seed page's snippet -------------------------------------------------------
    sft_tuning_job = sft.train(
        source_model=SourceModel(base_model="meta/llama3_1@llama-3.1-8b"),
        tuning_mode="FULL",
        epochs=2,
        train_dataset="gs://sdk-bucket/data/train.jsonl",
        validation_dataset="gs://sdk-bucket/data/validation.jsonl",
        output_uri="gs://sdk-bucket/tuned",
    )
    deadline = time.monotonic() + 600
    while not sft_tuning_job.has_ended and time.monotonic() < deadline:
        time.sleep(1)
        sft_tuning_job.refresh()
    job = sft_tuning_job._gca_resource
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error
    checkpoints = list(job.tuned_model.checkpoints)
    # 2 epochs: one checkpoint per epoch (step-numbered, increasing), then final.
    assert [c.checkpoint_id for c in checkpoints][-1] == "final" and len(checkpoints) == 3
    steps = [int(c.checkpoint_id.removeprefix("checkpoint-")) for c in checkpoints[:2]]
    assert steps == sorted(steps) and steps[0] < steps[1]
    assert [c.epoch for c in checkpoints[:2]] == [1, 2]
    assert job.labels["tunestack-smoke"] == "true" and "SMOKE" in job.description

    model = model_garden.CustomModel(
        gcs_uri="gs://sdk-bucket/tuned/postprocess/node-0/checkpoints/final"
    )
    endpoint = model.deploy(
        machine_type="g2-standard-12", accelerator_type="NVIDIA_L4", accelerator_count=1
    )
    endpoint = aiplatform.Endpoint(endpoint.resource_name)
    instances = [
        {
            "prompt": "What is a car?",
            "max_tokens": 200,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 1,
            "raw_response": True,
        }
    ]
    response = endpoint.predict(instances=instances)
    # ------------------------------------------------------------------------------------

    assert len(response.predictions) == 1 and isinstance(response.predictions[0], str)
    assert response.deployed_model_id
    model_names = [d.model for d in endpoint.list_models()]
    assert len(model_names) == 1
    endpoint.undeploy_all()
    assert endpoint.list_models() == []
    endpoint.delete()
    aiplatform.Model(model_names[0]).delete()
    for name in (endpoint.resource_name, model_names[0]):
        status, err = http("GET", f"{local_api.api_url}/v1/{name}", token=local_api.token)
        assert status == 404 and err["error"]["status"] == "NOT_FOUND"
