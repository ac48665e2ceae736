"""ModelDeployment through Pulumi's provider host, against the fake Vertex API."""

from __future__ import annotations

from dataclasses import fields

import grpc
import pytest
from google.cloud import aiplatform_v1beta1 as aip
from pulumi.runtime.proto import provider_pb2

from infra.plan.inputs import ModelDeploymentArgs
from infra.providers.deployment import ModelDeploymentProvider


def deploy_inputs(url: str, **over: object) -> dict:
    return {
        "project": "proj",
        "location": "us-central1",
        "gcs_uri": "gs://out/job1/postprocess/node-0/checkpoints/final",
        "machine_type": "g2-standard-12",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "min_replicas": 1,
        "max_replicas": 1,
        "endpoint_display_name": "chat",
        "model_display_name": "chat-model",
        "deadline_seconds": 30,
        "api_endpoint": url,
        **over,
    }


def test_create_deploys_once_and_records_endpoint_and_model(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    assert id_ == outs["endpoint"] and id_ in fake.endpoints
    assert outs["model"] in fake.models and "@" not in outs["model"]
    assert outs["adopted"] is False
    req = aip.DeployRequest.from_json(
        next(b for b in fake.bodies if b"customModel" in b), ignore_unknown_fields=False
    )
    assert req.custom_model.gcs_uri == "gs://out/job1/postprocess/node-0/checkpoints/final"
    spec = req.deploy_config.dedicated_resources
    assert spec.machine_spec.machine_type == "g2-standard-12"
    assert spec.machine_spec.accelerator_type == aip.AcceleratorType.NVIDIA_L4
    assert spec.machine_spec.accelerator_count == 1 and spec.min_replica_count == 1
    assert req.endpoint_config.endpoint_display_name.startswith("chat [ts-")
    # Again with the same inputs: adopted, nothing deployed twice.
    id2, outs2 = host.create(deploy_inputs(url))
    assert (id2, outs2["model"], outs2["adopted"]) == (id_, outs["model"], True)
    assert fake.count("POST", "deploy") == 1


def test_check_fills_machine_defaults_and_rejects_mismatches(vertex, make_host):
    _, url = vertex
    host = make_host(ModelDeploymentProvider())
    inputs, failures = host.check(deploy_inputs(url, accelerator_type=None, accelerator_count=None))
    assert (
        failures == []
        and inputs["accelerator_type"] == "NVIDIA_L4"
        and inputs["accelerator_count"] == 1
    )
    _, failures = host.check(
        deploy_inputs(
            url,
            machine_type="g2-standard-24",
            accelerator_count=1,
            gcs_uri="/tmp/w",
            max_replicas=0,
        )
    )
    assert {p for p, _ in failures} == {"accelerator_count", "gcs_uri", "max_replicas"}


def test_failed_deploy_surfaces_the_operation_error_and_leaves_nothing(vertex, make_host):
    fake, url = vertex
    fake.deploy_error = "weights are quantized"
    with pytest.raises(grpc.RpcError) as err:
        make_host(ModelDeploymentProvider()).create(deploy_inputs(url))
    assert "weights are quantized" in err.value.details()
    # The half-made endpoint (created before the model failed) was removed.
    assert fake.count("POST", "deploy") == 1 and fake.endpoints == {} and fake.models == {}


def test_delete_also_removes_orphans_carrying_the_key(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    stray = aip.Model(
        name="projects/proj/locations/us-central1/models/9",
        display_name=f"chat-model [ts-{outs['key'][:16]}-{'0' * 16}]",
    )
    other = aip.Model(
        name="projects/proj/locations/us-central1/models/8", display_name="someone else's"
    )
    fake.models[stray.name] = stray
    fake.models[other.name] = other
    host.delete(id_, outs)
    assert fake.endpoints == {} and list(fake.models) == [other.name]


def test_diff_replaces_only_the_endpoints_identity_and_updates_the_rest(vertex, make_host):
    _, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    assert host.diff(id_, outs, deploy_inputs(url)).changes == provider_pb2.DiffResponse.DIFF_NONE
    d = host.diff(id_, outs, deploy_inputs(url, deadline_seconds=99))
    assert d.changes == provider_pb2.DiffResponse.DIFF_SOME and list(d.replaces) == []
    # The endpoint is stable: weights, machine, replicas and canary swap models behind it.
    for field, value in [
        ("gcs_uri", "gs://x/final"),
        ("machine_type", "g2-standard-24"),
        ("accelerator_count", 2),
        ("model_display_name", "other"),
        ("max_replicas", 2),
        ("canary_percent", 10),
    ]:
        d = host.diff(id_, outs, deploy_inputs(url, **{field: value}))
        assert d.changes == provider_pb2.DiffResponse.DIFF_SOME, field
        assert list(d.replaces) == [], field
    # Only what names the endpoint replaces it, as infra/plan/inputs.py declares.
    for field, value in [
        ("endpoint_display_name", "chat2"),
        ("project", "p2"),
        ("location", "europe-west4"),
    ]:
        assert list(host.diff(id_, outs, deploy_inputs(url, **{field: value})).replaces) == [field]
    assert (
        set(ModelDeploymentProvider.REPLACES)
        == {f.name for f in fields(ModelDeploymentArgs) if f.metadata.get("replace", True)}
        == {"project", "location", "endpoint_display_name", "api_endpoint"}
    )
    new = host.update(id_, outs, deploy_inputs(url, deadline_seconds=99))
    assert (
        new["endpoint"] == id_ and new["model"] == outs["model"] and new["deadline_seconds"] == 99
    )


def test_read_detects_an_endpoint_deleted_outside_pulumi(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    assert host.read(id_, outs)[0] == id_
    fake.endpoints.pop(id_)
    assert host.read(id_, outs)[0] == ""


def test_delete_undeploys_and_deletes_endpoint_and_model(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    host.delete(id_, outs)
    assert fake.endpoints == {} and fake.models == {}
    assert fake.count("POST", "endpoints.undeploy") == 1
    host.delete(id_, outs)  # idempotent


def test_delete_removes_the_model_even_when_the_endpoint_is_gone(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    fake.endpoints.pop(id_)
    host.delete(id_, outs)
    assert fake.models == {}


@pytest.mark.slow
@pytest.mark.parametrize("point", ["deploy", "operation.get"])
def test_crash_mid_deploy_then_rerun_adopts_without_orphans(vertex, make_host, point):
    """Kill the host right after :deploy is accepted, or while polling it; re-run adopts."""
    fake, url = vertex
    fake.deploy_polls = 4
    host = make_host(ModelDeploymentProvider(), fresh=True)

    def hook(kind: str, _path: str) -> None:
        if kind == point:
            fake.hook = None
            host.kill()

    fake.hook = hook
    with pytest.raises(grpc.RpcError):
        host.create(deploy_inputs(url))
    assert len(fake.endpoints) == 1
    rerun = make_host(ModelDeploymentProvider(), fresh=True)
    id_, outs = rerun.create(deploy_inputs(url))
    assert outs["adopted"] is True and fake.count("POST", "deploy") == 1
    assert list(fake.endpoints) == [id_] and list(fake.models) == [outs["model"]]
    rerun.delete(id_, outs)
    assert fake.endpoints == {} and fake.models == {}


def test_no_token_in_payloads(vertex, make_host, home):
    _, url = vertex
    token = (home / "local" / "token").read_text()
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    host.delete(id_, outs)
    assert all(token.encode() not in p for p in host.last_payloads)
    assert token not in repr(outs)
