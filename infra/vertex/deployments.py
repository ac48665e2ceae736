"""Deployments: a stable endpoint (Model Garden ``:deploy`` of its first model) and the
models behind it (blue/green swaps: :mod:`infra.vertex.swaps`).

``:deploy`` takes no request id and no labels, so the endpoint's key (project, location,
endpoint name) travels in the endpoint's display name and the model's key in the model's
(:func:`infra.plan.keys.deploy_display_names`): a caller killed mid-deploy re-runs, finds
the endpoint by key and waits for it instead of deploying twice. Removal undeploys every
model, deletes the endpoint, then the models, which the SDK's own endpoint delete would leave
behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import operation
from google.cloud import aiplatform_v1beta1 as aip

from infra.plan.keys import deploy_display_names, deployment_key, display_tag, model_key
from infra.vertex import swaps
from infra.vertex.errors import DeadlineExceeded, VertexError
from infra.vertex.operations import wait_operation
from infra.vertex.target import Target, client
from infra.wait import INITIAL_DELAY, MAX_DELAY, poll


def build_deploy_request(
    target: Target,
    gcs_uri: str,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    min_replicas: int,
    max_replicas: int,
    endpoint_display_name: str,
    model_display_name: str,
    key: str,
    model: str = "",
) -> aip.DeployRequest:
    """The ``:deploy`` request for custom HF weights (pure).

    Args:
        key: The endpoint key (:func:`infra.plan.keys.deployment_key`).
        model: The model key (:func:`infra.plan.keys.model_key`), tagged on the model.
    """
    endpoint_name, model_name = deploy_display_names(
        key, endpoint_display_name, model_display_name, model
    )
    return aip.DeployRequest(
        destination=target.parent,
        custom_model=aip.DeployRequest.CustomModel(gcs_uri=gcs_uri),
        model_config=aip.DeployRequest.ModelConfig(model_display_name=model_name),
        endpoint_config=aip.DeployRequest.EndpointConfig(endpoint_display_name=endpoint_name),
        deploy_config=aip.DeployRequest.DeployConfig(
            dedicated_resources=aip.DedicatedResources(
                machine_spec=aip.MachineSpec(
                    machine_type=machine_type,
                    accelerator_type=accelerator_type,
                    accelerator_count=int(accelerator_count),
                ),
                min_replica_count=int(min_replicas),
                max_replica_count=int(max_replicas),
            )
        ),
    )


def deploy(target: Target, inputs: Mapping[str, Any], key: str) -> operation.Operation:
    """Starts ``:deploy`` of custom weights; returns the long-running operation future.

    Call :func:`find_deployment` first; :func:`ensure_deployment` does both.
    """
    request = build_deploy_request(
        target, inputs["gcs_uri"], inputs["machine_type"], inputs["accelerator_type"],
        int(inputs["accelerator_count"]), int(inputs["min_replicas"]), int(inputs["max_replicas"]),
        inputs["endpoint_display_name"], inputs["model_display_name"], key, model_key(inputs),
    )  # fmt: skip
    return client(aip.ModelGardenServiceClient, target).deploy(request=request)


def wait_deploy(
    future: operation.Operation,
    deadline_s: float,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> tuple[str, str]:
    """Waits for a ``:deploy`` operation; returns ``(endpoint, model)`` resource names.

    Raises:
        VertexError: the operation failed (its error message).
        DeadlineExceeded: not done by the deadline (it keeps running; a re-run adopts it).
    """
    op = wait_operation(
        future, deadline_s, what="deployment", initial_delay=initial_delay, max_delay=max_delay
    )
    response = aip.DeployResponse.deserialize(op.response.value)
    return response.endpoint, _strip_version(response.model)


def find_deployment(target: Target, key: str) -> tuple[str, str | None] | None:
    """An endpoint (and its model, once deployed) whose display name carries ``key``.

    Returns:
        ``(endpoint, model or None while the model is still deploying)``, or None.
    """
    found = find_endpoints(target, key)
    return found[0] if found else None


def find_endpoints(target: Target, key: str) -> list[tuple[str, str | None]]:
    """Every endpoint whose display name carries ``key``, with its serving model."""
    tag = display_tag(key)
    svc = client(aip.EndpointServiceClient, target)
    out: list[tuple[str, str | None]] = []
    for ep in svc.list_endpoints(request={"parent": target.parent}):
        if ep.display_name.endswith(tag):
            out.append((ep.name, deployed_model(ep)))
    return out


def find_models(target: Target, key: str) -> list[str]:
    """Models of the endpoint with key ``key`` (orphans of an interrupted deploy or swap).

    Returns an empty list when the server cannot list models.
    """
    return swaps.models_of(target, key)


def deployed_model(endpoint: aip.Endpoint) -> str | None:
    """The endpoint's serving model (the most traffic; without its ``@version``), or None."""
    traffic = dict(endpoint.traffic_split)
    models = sorted(
        (d for d in endpoint.deployed_models if d.model), key=lambda d: -traffic.get(d.id, 0)
    )
    return _strip_version(models[0].model) if models else None


def wait_for_deployed_model(
    target: Target,
    endpoint: str,
    deadline_s: float,
    *,
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> str:
    """Waits until an adopted endpoint has a deployed model; returns the model name.

    Raises:
        DeadlineExceeded: no model appeared in time.
        google.api_core.exceptions.NotFound: the endpoint went away.
    """
    svc = client(aip.EndpointServiceClient, target)
    ep = poll(
        lambda: svc.get_endpoint(name=endpoint),
        lambda ep: deployed_model(ep) is not None,
        deadline_s,
        lambda _ep: DeadlineExceeded(
            f"endpoint {endpoint} has no deployed model after {deadline_s:.0f} s"
        ),
        initial_delay=initial_delay,
        max_delay=max_delay,
    )
    return deployed_model(ep) or ""


def ensure_deployment(
    target: Target, inputs: Mapping[str, Any], deadline_s: float, **poll_every: float
) -> tuple[str, str, bool]:
    """Adopts the endpoint with this input's key, or deploys it; then makes it serve the
    wanted model (:func:`infra.vertex.swaps.converge`: blue/green, replicas in place).

    Args:
        target: Where to deploy.
        inputs: ``gcs_uri``, ``machine_type``, ``accelerator_type``, ``accelerator_count``,
            ``min_replicas``, ``max_replicas``, ``endpoint_display_name``,
            ``model_display_name``, ``canary_percent``; plus ``project`` and ``location``
            (with the endpoint name, the endpoint's key).
        deadline_s: Longest wait for the deployment.
        **poll_every: ``initial_delay`` / ``max_delay`` for polling.

    Returns:
        ``(endpoint, model, adopted)``.
    """
    endpoint, _model, adopted = ensure_endpoint(target, inputs, deadline_s, **poll_every)
    serving = swaps.converge(target, endpoint, inputs, deadline_s, **poll_every)
    return endpoint, serving.model, adopted


def ensure_endpoint(
    target: Target, inputs: Mapping[str, Any], deadline_s: float, **poll_every: float
) -> tuple[str, str, bool]:
    """Adopts the endpoint with this input's key (waiting for its first model), or creates it
    with ``:deploy`` of the wanted weights; returns ``(endpoint, model, adopted)``."""
    key = deployment_key(inputs)
    found = find_deployment(target, key)
    if found is not None:
        endpoint, model = found
        if model is None:
            model = wait_for_deployed_model(target, endpoint, deadline_s, **poll_every)
        return endpoint, model, True
    future = deploy(target, inputs, key)
    try:
        endpoint, model = wait_deploy(future, deadline_s, **poll_every)
    except DeadlineExceeded:
        raise  # still deploying: a re-run adopts it by key
    except VertexError:
        # A failed deploy may leave an endpoint without a model (or a model without an
        # endpoint); remove what carries our key so the failure leaves nothing billed behind.
        delete_deployment_by_key(target, key, **poll_every)
        raise
    return endpoint, model, False


def delete_deployment_by_key(
    target: Target, key: str, deadline_s: float = 1800.0, **poll_every: float
) -> None:
    """Undeploys and deletes every endpoint and model whose display name carries ``key``."""
    for endpoint, model in find_endpoints(target, key):
        undeploy_and_delete(target, endpoint, model, deadline_s, **poll_every)
    for model in find_models(target, key):
        undeploy_and_delete(target, None, model, deadline_s, **poll_every)


def get_endpoint(target: Target, endpoint: str) -> aip.Endpoint | None:
    """The endpoint, or None when it does not exist."""
    try:
        return client(aip.EndpointServiceClient, target).get_endpoint(name=endpoint)
    except gexc.NotFound:
        return None


def model_exists(target: Target, model: str) -> bool:
    """Whether the model resource exists."""
    try:
        client(aip.ModelServiceClient, target).get_model(name=model)
        return True
    except gexc.NotFound:
        return False


def undeploy_and_delete(
    target: Target,
    endpoint: str | None,
    model: str | None,
    deadline_s: float = 1800.0,
    **poll_every: float,
) -> None:
    """Undeploys every model from the endpoint, deletes the endpoint, then the model.

    Idempotent: anything already gone is skipped. The models are deleted even when the
    endpoint is already gone (the SDK's endpoint delete leaves models behind).
    """
    served = [model] if model else []
    if endpoint:
        eps = client(aip.EndpointServiceClient, target)
        try:
            ep = eps.get_endpoint(name=endpoint)
            # The least traffic first, so each undeploy leaves the rest a valid split.
            traffic = {k: int(v) for k, v in ep.traffic_split.items()}
            left = sorted(ep.deployed_models, key=lambda d: traffic.get(d.id, 0))
            while left:
                deployed = left.pop(0)
                served.append(_strip_version(deployed.model))
                split = _rest_split(left, traffic, deployed.id)
                request = aip.UndeployModelRequest(
                    endpoint=endpoint, deployed_model_id=deployed.id, traffic_split=split
                )
                _wait(eps.undeploy_model(request=request), deadline_s, poll_every)
            _wait(eps.delete_endpoint(name=endpoint), deadline_s, poll_every)
        except gexc.NotFound:
            pass
    models = client(aip.ModelServiceClient, target)
    for name in dict.fromkeys(served):
        with contextlib.suppress(gexc.NotFound):
            _wait(models.delete_model(name=name), deadline_s, poll_every)


def _rest_split(
    left: list[aip.DeployedModel], traffic: dict[str, int], leaving: str
) -> dict[str, int]:
    """The split once ``leaving`` is gone: its share moves to the busiest model left."""
    if not left:
        return {}
    split = {d.id: traffic.get(d.id, 0) for d in left}
    split[max(split, key=lambda k: split[k])] += traffic.get(leaving, 0)
    total = sum(split.values())
    if total != 100:
        split[max(split, key=lambda k: split[k])] += 100 - total
    return split


def _wait(future: operation.Operation, deadline_s: float, poll_every: dict[str, float]) -> None:
    wait_operation(
        future,
        deadline_s,
        initial_delay=poll_every.get("initial_delay", INITIAL_DELAY),
        max_delay=poll_every.get("max_delay", MAX_DELAY),
    )


def _strip_version(model: str) -> str:
    return model.split("@", 1)[0]
