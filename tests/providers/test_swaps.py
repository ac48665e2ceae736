"""Blue/green model swaps on a stable endpoint, through Pulumi's provider host and the local API.

Every update keeps the endpoint's resource name; a new model is uploaded, deployed beside the
old one and given the traffic once it serves; the old one is undeployed and deleted. At every
request of a swap the endpoint has at least one deployed model. A kill at any request of a
swap converges when the update is re-run: exactly one deployed model, no orphan model.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from conftest import LocalVertex
from provider_host import ProviderHost
from test_deployment import deploy_inputs

from infra.providers.deployment import ModelDeploymentProvider

NEW_WEIGHTS = "gs://out/job2/postprocess/node-0/checkpoints/final"


def watch(fake: LocalVertex, endpoint: str) -> list[int]:
    """Records the endpoint's deployed-model count after every API request."""
    seen: list[int] = []

    def hook(_kind: str, _path: str) -> None:
        ep = fake.ctx.store.get("endpoints", endpoint.rsplit("/", 1)[-1])
        seen.append(len(ep["resource"].get("deployedModels", [])) if ep else 0)

    fake.hook = hook
    return seen


def served(fake: LocalVertex, endpoint: str) -> tuple[list[str], dict[str, int]]:
    ep = fake.endpoints[endpoint]
    return [d.model for d in ep.deployed_models], dict(ep.traffic_split)


def test_new_weights_swap_blue_green_on_the_same_endpoint(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    first = outs["model"]
    seen = watch(fake, id_)
    new = host.update(id_, outs, deploy_inputs(url, gcs_uri=NEW_WEIGHTS))
    fake.hook = None
    assert new["endpoint"] == id_ and new["model"] != first
    assert served(fake, id_) == ([new["model"]], {new["deployed_model_id"]: 100})
    assert list(fake.models) == [new["model"]]  # the old model resource is deleted
    assert fake.models[new["model"]].artifact_uri == NEW_WEIGHTS
    assert fake.count("POST", "models.upload") == 1
    assert fake.count("POST", "endpoints.deployModel") == 1
    assert fake.count("POST", "deploy") == 1  # only the endpoint's first model
    assert seen and min(seen) >= 1, seen  # never a moment without a deployed model
    assert max(seen) == 2  # the new one served beside the old before the old left
    # Converged: the same inputs again change nothing.
    calls = len(fake.calls)
    again = host.update(id_, new, deploy_inputs(url, gcs_uri=NEW_WEIGHTS))
    assert again["model"] == new["model"]
    assert not any(m == "POST" for m, _ in fake.calls[calls:])


def test_replicas_change_in_place(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    before = fake.endpoints[id_].deployed_models[0]
    new = host.update(id_, outs, deploy_inputs(url, min_replicas=2, max_replicas=3))
    (after,) = fake.endpoints[id_].deployed_models
    assert (
        (after.id, after.model)
        == (before.id, before.model)
        == (
            new["deployed_model_id"],
            new["model"],
        )
    )
    res = after.dedicated_resources
    assert (res.min_replica_count, res.max_replica_count) == (2, 3)
    assert fake.count("POST", "endpoints.mutate") == 1
    assert fake.count("POST", "endpoints.deployModel") == 0
    assert fake.count("POST", "models.upload") == 0


def test_canary_keeps_the_previous_model_until_removed(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    first = outs["model"]
    canary = host.update(id_, outs, deploy_inputs(url, gcs_uri=NEW_WEIGHTS, canary_percent=10))
    models, split = served(fake, id_)
    assert sorted(models) == sorted([first, canary["model"]])
    assert canary["previous_model"] == first
    old_id = next(d.id for d in fake.endpoints[id_].deployed_models if d.model == first)
    assert split == {canary["deployed_model_id"]: 10, old_id: 90} == canary["traffic_split"]
    # 10 -> 30: the split moves, nothing is redeployed.
    wider = host.update(id_, canary, deploy_inputs(url, gcs_uri=NEW_WEIGHTS, canary_percent=30))
    assert served(fake, id_)[1] == {canary["deployed_model_id"]: 30, old_id: 70}
    assert wider["model"] == canary["model"] and fake.count("POST", "endpoints.deployModel") == 1
    # Removed: the new model takes 100%, the previous one is undeployed and deleted.
    done = host.update(id_, wider, deploy_inputs(url, gcs_uri=NEW_WEIGHTS))
    assert served(fake, id_) == ([done["model"]], {done["deployed_model_id"]: 100})
    assert list(fake.models) == [done["model"]] and done["previous_model"] == ""


def test_machine_change_redeploys_blue_green_on_the_same_endpoint(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    seen = watch(fake, id_)
    inputs = deploy_inputs(url, machine_type="g2-standard-24", accelerator_count=2)
    new = host.update(id_, outs, inputs)
    fake.hook = None
    (deployed,) = fake.endpoints[id_].deployed_models
    assert new["endpoint"] == id_ and deployed.model == new["model"] != outs["model"]
    assert deployed.dedicated_resources.machine_spec.machine_type == "g2-standard-24"
    assert deployed.dedicated_resources.machine_spec.accelerator_count == 2
    assert list(fake.models) == [new["model"]]
    assert min(seen) >= 1, seen


def test_destroy_removes_both_models_of_a_canary(vertex, make_host):
    fake, url = vertex
    host = make_host(ModelDeploymentProvider())
    id_, outs = host.create(deploy_inputs(url))
    canary = host.update(id_, outs, deploy_inputs(url, gcs_uri=NEW_WEIGHTS, canary_percent=50))
    host.delete(id_, canary)
    assert fake.endpoints == {} and fake.models == {}


def kill_at(fake: LocalVertex, host: ProviderHost, n: int, endpoint: str, seen: list[int]) -> None:
    count = {"n": 0}

    def hook(_kind: str, _path: str) -> None:
        ep = fake.ctx.store.get("endpoints", endpoint.rsplit("/", 1)[-1])
        seen.append(len(ep["resource"].get("deployedModels", [])) if ep else 0)
        count["n"] += 1
        if count["n"] == n:
            host.kill()

    fake.hook = hook


@pytest.mark.slow
def test_a_kill_at_each_request_of_a_swap_then_rerun_converges(
    start_vertex, make_host, shared_host
):
    def setup() -> tuple[LocalVertex, str, dict[str, Any]]:
        fake = start_vertex()
        _, outs = shared_host.using(ModelDeploymentProvider()).create(deploy_inputs(fake.url))
        return fake, outs["endpoint"], outs

    fake, id_, outs = setup()
    calls = len(fake.calls)
    shared_host.using(ModelDeploymentProvider()).update(
        id_, outs, deploy_inputs(fake.url, gcs_uri=NEW_WEIGHTS)
    )
    points = len(fake.calls) - calls
    assert points >= 6  # get, list, upload, deployModel, polls, undeploy, delete...
    for n in range(1, points + 1):
        fake, id_, outs = setup()
        seen: list[int] = []
        victim = make_host(ModelDeploymentProvider(), fresh=True)
        kill_at(fake, victim, n, id_, seen)
        with pytest.raises(grpc.RpcError):
            victim.update(id_, outs, deploy_inputs(fake.url, gcs_uri=NEW_WEIGHTS))
        victim.close()
        fake.hook = None
        # The engine kept the old outputs (the update never returned): it runs it again.
        new = shared_host.using(ModelDeploymentProvider()).update(
            id_, outs, deploy_inputs(fake.url, gcs_uri=NEW_WEIGHTS)
        )
        (deployed,) = fake.endpoints[id_].deployed_models
        assert deployed.model == new["model"], n
        assert fake.models[new["model"]].artifact_uri == NEW_WEIGHTS
        assert list(fake.models) == [new["model"]], (n, list(fake.models))  # no orphan
        assert list(fake.endpoints) == [id_]
        assert min(seen) >= 1, (n, seen)


def test_the_local_api_checks_traffic_and_shapes_as_vertex_does(vertex, make_host):
    fake, url = vertex
    _, outs = make_host(ModelDeploymentProvider()).create(deploy_inputs(url))
    new = make_host(ModelDeploymentProvider()).update(
        outs["endpoint"], outs, deploy_inputs(url, gcs_uri=NEW_WEIGHTS, canary_percent=20)
    )
    path = "/v1beta1/" + new["endpoint"]
    old = next(k for k in new["traffic_split"] if k != new["deployed_model_id"])
    # A deployed model with traffic cannot be undeployed without moving that traffic.
    code, body = fake.request(
        "POST", path + ":undeployModel", b'{"deployedModelId": "%s"}' % old.encode()
    )
    assert code == 400 and "80% of the traffic" in body
    bad_split = b'{"trafficSplit": {"%s": 50}}' % new["deployed_model_id"].encode()
    code, body = fake.request("PATCH", path + "?updateMask=trafficSplit", bad_split)
    assert code == 400 and "add up to 100" in body
    code, body = fake.request(
        "PATCH", path + "?updateMask=trafficSplit", b'{"trafficSplit": {"nope": 100}}'
    )
    assert code == 400 and "not a deployed model" in body
    code, body = fake.request(
        "POST", path + ":mutateDeployedModel",
        b'{"deployedModel": {"id": "%s"}, "updateMask": "displayName"}' % old.encode(),
    )  # fmt: skip
    assert code == 400 and "update_mask" in body
    code, body = fake.request("POST", path + ":deployModel", b'{"deployedModel": {"modell": "x"}}')
    assert code == 400 and "Invalid JSON payload" in body  # parsed by the real proto
    code, body = fake.request(
        "POST", "/v1beta1/projects/proj/locations/us-central1/models:upload",
        b'{"model": {"displayName": "m", "artifactUri": "/tmp/w"}}',
    )  # fmt: skip
    assert code == 400 and "gs://" in body
