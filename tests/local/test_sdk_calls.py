"""The calls a user reaches quickly after the seed snippet, through Google's own SDK and
GAPIC clients (REST), each parsed into the real proto types: deploy options
(``:recommendSpec``), endpoints create/patch, model versions and ``deployed_models``,
operations list/wait, and page tokens.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import vertexai
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.cloud import aiplatform
from google.cloud.aiplatform_v1 import EndpointServiceClient, PredictionServiceClient
from google.cloud.aiplatform_v1beta1 import ModelServiceClient
from trainer import tiny
from vertexai.preview import model_garden

from infra.gcs import client as gcs_client

PROJECT = "calls-project"
REGION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"


@pytest.fixture(scope="module")
def weights(local_api: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    ckpt = tiny.build_tiny_checkpoint("llama", tmp_path_factory.mktemp("calls-ckpt"))
    bucket = gcs_client(endpoint=local_api.storage_url, token=local_api.token).create_bucket(
        "calls-weights"
    )
    for f in Path(ckpt).iterdir():
        bucket.blob(f"final/{f.name}").upload_from_filename(str(f))
    return "gs://calls-weights/final"


@pytest.fixture(autouse=True)
def init(local_api: Any) -> None:
    vertexai.init(
        project=PROJECT,
        location=REGION,
        api_endpoint=local_api.api_url,
        api_transport="rest",
        credentials=local_api.credentials(),
    )


def _gapic(cls: Any, local_api: Any) -> Any:
    return cls(
        credentials=local_api.credentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=local_api.api_url),
    )


def test_list_deploy_options_recommends_g2_machines(local_api: Any, weights: str) -> None:
    options = model_garden.CustomModel(gcs_uri=weights).list_deploy_options()
    assert 'machine_type="g2-standard-4"' in options and 'accelerator_type="NVIDIA_L4"' in options
    resp = _gapic(ModelServiceClient, local_api).recommend_spec(
        request={"parent": PARENT, "gcs_uri": weights}
    )
    machines = [r.spec.machine_spec.machine_type for r in resp.recommendations]
    assert machines[0] == "g2-standard-4" and len(machines) == 8
    with pytest.raises(gexc.BadRequest):
        _gapic(ModelServiceClient, local_api).recommend_spec(
            request={"parent": PARENT, "gcs_uri": "gs://calls-weights/none"}
        )


def test_deployed_model_is_listed_on_the_model_and_versions(local_api: Any, weights: str) -> None:
    endpoint = model_garden.CustomModel(gcs_uri=weights).deploy(
        machine_type="g2-standard-12", accelerator_type="NVIDIA_L4", accelerator_count=1
    )
    endpoint = aiplatform.Endpoint(endpoint.resource_name)
    model_name = endpoint.list_models()[0].model
    model = aiplatform.Model(model_name)
    refs = list(model.gca_resource.deployed_models)
    assert [r.endpoint for r in refs] == [endpoint.resource_name]
    versions = aiplatform.models.ModelRegistry(model_name).list_versions()
    assert [v.version_id for v in versions] == ["1"]
    assert aiplatform.Model(f"{model_name}@1").resource_name == model_name
    # Chat through the SDK: a chatCompletions instance; rawPredict through GAPIC (REST).
    messages = [{"role": "user", "content": "What is a car?"}]
    chat = endpoint.predict(
        instances=[{"@requestFormat": "chatCompletions", "messages": messages, "max_tokens": 4}]
    )
    assert chat.predictions[0]["object"] == "chat.completion"
    raw = _gapic(PredictionServiceClient, local_api).raw_predict(
        endpoint=endpoint.resource_name,
        http_body={
            "content_type": "application/json",
            "data": json.dumps({"messages": messages, "max_tokens": 3}).encode(),
        },
    )
    assert json.loads(raw.data)["choices"][0]["message"]["role"] == "assistant"
    endpoint.undeploy_all()
    assert list(aiplatform.Model(model_name).gca_resource.deployed_models) == []
    endpoint.delete()
    aiplatform.Model(model_name).delete()


def test_endpoint_create_get_patch_delete(local_api: Any) -> None:
    ep = aiplatform.Endpoint.create(display_name="calls-empty", labels={"team": "ml"})
    assert ep.display_name == "calls-empty" and ep.list_models() == []
    ep.update(display_name="calls-renamed", labels={"team": "infra"})
    again = aiplatform.Endpoint(ep.resource_name)
    assert again.display_name == "calls-renamed" and again.labels == {"team": "infra"}
    with pytest.raises(gexc.BadRequest):  # the SDK checks this too; GAPIC does not
        _gapic(EndpointServiceClient, local_api).create_endpoint(
            parent=PARENT, endpoint={"display_name": "x" * 129}
        )
    ep.delete()
    with pytest.raises(gexc.NotFound):
        _gapic(EndpointServiceClient, local_api).get_endpoint(name=ep.resource_name)


def test_operations_list_and_wait(local_api: Any) -> None:
    client = _gapic(EndpointServiceClient, local_api)
    op = client.create_endpoint(parent=PARENT, endpoint={"display_name": "calls-ops"})
    created = op.result(timeout=30)
    names = [o.name for o in client.list_operations(request={"name": PARENT}).operations]
    assert op.operation.name in names
    start = time.monotonic()
    waited = client.wait_operation(request={"name": op.operation.name, "timeout": {"seconds": 5}})
    assert waited.done and time.monotonic() - start < 5
    client.delete_endpoint(name=created.name).result(timeout=30)


def test_bad_page_token_is_400(local_api: Any) -> None:
    client = _gapic(EndpointServiceClient, local_api)
    with pytest.raises(gexc.BadRequest):
        list(client.list_endpoints(request={"parent": PARENT, "page_token": "bogus"}))
