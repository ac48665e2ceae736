"""Blue/green model swaps on a stable endpoint: upload, ``:deployModel``, traffic, undeploy.

An endpoint keeps its resource name for life; what it serves changes under it. Every model of
an endpoint carries ``[ts-<endpoint key>-<model key>]`` in its display name (the model
resource's and its DeployedModel's), so :func:`converge` can tell the wanted model from the
previous ones after any interruption and pick up where it stopped:

1. the wanted model is uploaded (``models:upload`` with the serving model's container spec and
   the new ``artifactUri``), unless an upload of it already exists;
2. it is deployed onto the same endpoint (``:deployModel``); its ``trafficSplit`` gives it 100%
   (or ``canary_percent``, the previous model keeping the rest) only once it serves, so there
   is never a moment with no deployed model;
3. every other deployed model is undeployed (``:undeployModel``, the split moving its traffic
   away) and its model resource deleted; a canary keeps the previous one until the spec drops
   ``canary_percent``;
4. replica counts change the deployed model in place (``:mutateDeployedModel``).

Each step is idempotent: a re-run after a kill at any point converges with exactly one
deployed model (two with a canary) and no orphan model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import operation
from google.cloud import aiplatform_v1beta1 as aip
from google.protobuf import field_mask_pb2

from infra.plan.keys import (
    deployment_key,
    endpoint_models_marker,
    model_key,
    model_tag,
    tagged,
)
from infra.vertex.errors import DeadlineExceeded
from infra.vertex.operations import wait_operation
from infra.vertex.target import Target, client
from infra.wait import INITIAL_DELAY, MAX_DELAY, poll

#: Fields of a deployed model that change in place.
REPLICA_PATHS = ("dedicated_resources.min_replica_count", "dedicated_resources.max_replica_count")


@dataclass
class Serving:
    """What an endpoint serves after :func:`converge`.

    Attributes:
        model: The wanted model's resource name (no ``@version``).
        deployed_model_id: Its DeployedModel id on the endpoint.
        previous_model: The model kept beside it for a canary, or "".
        traffic_split: Deployed model id -> percent.
        steps: What this call changed (``uploaded``, ``deployed``, ``traffic``, ``undeployed``,
            ``deleted``, ``mutated``), in order; empty when it was already converged.
    """

    model: str
    deployed_model_id: str
    previous_model: str = ""
    traffic_split: dict[str, int] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)


def converge(
    target: Target,
    endpoint: str,
    inputs: Mapping[str, Any],
    deadline_s: float,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> Serving:
    """Makes ``endpoint`` serve the model ``inputs`` name, blue/green; idempotent.

    Args:
        target: Where the endpoint lives.
        endpoint: The endpoint's resource name (kept for life).
        inputs: The deployment inputs (``gcs_uri``, machine, accelerators, replicas,
            ``model_display_name``, ``endpoint_display_name``, ``canary_percent``).
        deadline_s: Longest wait for each operation.
        initial_delay: First poll interval.
        max_delay: Longest poll interval.

    Raises:
        google.api_core.exceptions.NotFound: the endpoint is gone.
        VertexError: a deploy failed (the previous model keeps serving).
        DeadlineExceeded: an operation is not done in time (a re-run continues).
    """
    every = {"initial_delay": initial_delay, "max_delay": max_delay}
    eps = client(aip.EndpointServiceClient, target)
    tag = model_tag(deployment_key(inputs), model_key(inputs))
    steps: list[str] = []
    ep = eps.get_endpoint(name=endpoint)
    current = _deployed_with(ep, tag)
    if current is None:
        model = _find_model(target, tag)
        if model is None:
            model = _upload(target, ep, inputs, tag, deadline_s, every)
            steps.append("uploaded")
        current = _deploy(target, ep, model, inputs, tag, deadline_s, every)
        steps.append("deployed")
        ep = eps.get_endpoint(name=endpoint)
    canary = int(inputs.get("canary_percent") or 0)
    others = [d for d in ep.deployed_models if d.id != current.id]
    traffic = {k: int(v) for k, v in ep.traffic_split.items()}
    keep = None
    if canary and others:
        keep = max(others, key=lambda d: (traffic.get(d.id, 0), d.create_time.timestamp()))
        wanted = {current.id: canary, keep.id: 100 - canary}
    else:
        wanted = {current.id: 100}
    drop = [d for d in others if keep is None or d.id != keep.id]
    if {k: v for k, v in traffic.items() if v} != wanted:
        _set_traffic(eps, endpoint, wanted)
        steps.append("traffic")
    for d in drop:
        _wait(eps.undeploy_model(request=aip.UndeployModelRequest(
            endpoint=endpoint, deployed_model_id=d.id, traffic_split=wanted,
        )), deadline_s, every)  # fmt: skip
        steps.append("undeployed")
        if _delete_model(target, _strip(d.model), deadline_s, every):
            steps.append("deleted")
    steps += _mutate_replicas(eps, endpoint, current, inputs, deadline_s, every)
    serving = {_strip(current.model), *(_strip(d.model) for d in ([keep] if keep else []))}
    for orphan in models_of(target, deployment_key(inputs)):
        if orphan not in serving and _delete_model(target, orphan, deadline_s, every):
            steps.append("deleted")
    return Serving(
        model=_strip(current.model),
        deployed_model_id=current.id,
        previous_model=_strip(keep.model) if keep else "",
        traffic_split=wanted,
        steps=steps,
    )


def models_of(target: Target, endpoint_key: str) -> list[str]:
    """Every model resource whose display name marks it as one of this endpoint's."""
    marker = endpoint_models_marker(endpoint_key)
    svc = client(aip.ModelServiceClient, target)
    try:
        return [
            m.name
            for m in svc.list_models(request={"parent": target.parent})
            if marker in m.display_name
        ]
    except (gexc.MethodNotImplemented, gexc.NotFound):
        return []


def deployed_models(target: Target, endpoint: str) -> list[aip.DeployedModel]:
    """The endpoint's deployed models (empty when it is gone)."""
    try:
        return list(
            client(aip.EndpointServiceClient, target).get_endpoint(name=endpoint).deployed_models
        )
    except gexc.NotFound:
        return []


# -- steps ----------------------------------------------------------------------------------


def _deployed_with(ep: aip.Endpoint, tag: str) -> aip.DeployedModel | None:
    found = [d for d in ep.deployed_models if d.display_name.endswith(tag)]
    traffic = dict(ep.traffic_split)
    # Two of the wanted model (a second deploy after a kill, on Vertex): keep the one serving.
    return max(found, key=lambda d: traffic.get(d.id, 0)) if found else None


def _find_model(target: Target, tag: str) -> str | None:
    svc = client(aip.ModelServiceClient, target)
    try:
        for m in svc.list_models(request={"parent": target.parent}):
            if m.display_name.endswith(tag):
                return str(m.name)
    except (gexc.MethodNotImplemented, gexc.NotFound):
        return None
    return None


def _upload(
    target: Target,
    ep: aip.Endpoint,
    inputs: Mapping[str, Any],
    tag: str,
    deadline_s: float,
    every: dict[str, float],
) -> str:
    """Uploads the new weights with the serving model's container spec."""
    models = client(aip.ModelServiceClient, target)
    container = None
    for d in ep.deployed_models:
        with contextlib.suppress(gexc.NotFound):
            container = models.get_model(name=_strip(d.model)).container_spec
            break
    model = aip.Model(
        display_name=tagged(str(inputs["model_display_name"]), tag),
        artifact_uri=str(inputs["gcs_uri"]),
        labels={"managed-by": "tunestack"},
    )
    if container is not None:
        model.container_spec = container
    future = models.upload_model(request=aip.UploadModelRequest(parent=target.parent, model=model))
    op = _wait(future, deadline_s, every)
    return _strip(aip.UploadModelResponse.deserialize(op.response.value).model)


def _deploy(
    target: Target,
    ep: aip.Endpoint,
    model: str,
    inputs: Mapping[str, Any],
    tag: str,
    deadline_s: float,
    every: dict[str, float],
) -> aip.DeployedModel:
    """``:deployModel``; the new model takes its traffic only once it serves."""
    eps = client(aip.EndpointServiceClient, target)
    canary = int(inputs.get("canary_percent") or 0)
    traffic = {k: int(v) for k, v in ep.traffic_split.items() if v}
    stable = max(traffic, key=lambda k: traffic[k]) if traffic else None
    split = {"0": canary, stable: 100 - canary} if canary and stable else {"0": 100}
    deployed = aip.DeployedModel(
        model=model,
        display_name=tagged(str(inputs["model_display_name"]), tag),
        dedicated_resources=_resources(inputs),
    )
    request = aip.DeployModelRequest(endpoint=ep.name, deployed_model=deployed, traffic_split=split)
    try:
        _wait(eps.deploy_model(request=request), deadline_s, every)
    except gexc.BadRequest as e:  # InvalidArgument, FailedPrecondition or a plain 400
        if "already deployed" not in str(e):
            raise
        # A deploy of this model is in flight (a re-run after a kill): wait for it.
    found = poll(
        lambda: eps.get_endpoint(name=ep.name),
        lambda e: _deployed_with(e, tag) is not None,
        deadline_s,
        lambda _e: DeadlineExceeded(
            f"{model} is not deployed on {ep.name} after {deadline_s:.0f} s"
        ),
        initial_delay=every["initial_delay"],
        max_delay=every["max_delay"],
    )
    current = _deployed_with(found, tag)
    assert current is not None
    return current


def _set_traffic(eps: Any, endpoint: str, wanted: dict[str, int]) -> None:
    ep = aip.Endpoint(name=endpoint, traffic_split=wanted)
    eps.update_endpoint(endpoint=ep, update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]))


def _mutate_replicas(
    eps: Any,
    endpoint: str,
    current: aip.DeployedModel,
    inputs: Mapping[str, Any],
    deadline_s: float,
    every: dict[str, float],
) -> list[str]:
    res = current.dedicated_resources
    lo, hi = int(inputs.get("min_replicas") or 1), int(inputs.get("max_replicas") or 1)
    if (res.min_replica_count, res.max_replica_count) == (lo, hi):
        return []
    deployed = aip.DeployedModel(id=current.id, dedicated_resources=_resources(inputs))
    future = eps.mutate_deployed_model(
        request=aip.MutateDeployedModelRequest(
            endpoint=endpoint,
            deployed_model=deployed,
            update_mask=field_mask_pb2.FieldMask(paths=list(REPLICA_PATHS)),
        )
    )
    _wait(future, deadline_s, every)
    return ["mutated"]


def _delete_model(target: Target, model: str, deadline_s: float, every: dict[str, float]) -> bool:
    try:
        _wait(client(aip.ModelServiceClient, target).delete_model(name=model), deadline_s, every)
    except gexc.NotFound:
        return False
    except gexc.FailedPrecondition:
        return False  # still deployed somewhere (a deploy in flight): the next run deletes it
    return True


def _resources(inputs: Mapping[str, Any]) -> aip.DedicatedResources:
    return aip.DedicatedResources(
        machine_spec=aip.MachineSpec(
            machine_type=str(inputs["machine_type"]),
            accelerator_type=str(inputs["accelerator_type"]),
            accelerator_count=int(inputs["accelerator_count"]),
        ),
        min_replica_count=int(inputs.get("min_replicas") or 1),
        max_replica_count=int(inputs.get("max_replicas") or 1),
    )


def _wait(future: operation.Operation, deadline_s: float, every: dict[str, float]) -> Any:
    return wait_operation(
        future, deadline_s, initial_delay=every["initial_delay"], max_delay=every["max_delay"]
    )


def _strip(model: str) -> str:
    return model.split("@", 1)[0]
