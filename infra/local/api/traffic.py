"""Models behind a stable endpoint: ``:deployModel``, ``:mutateDeployedModel``,
``:undeployModel`` and the traffic split (``PATCH {endpoint}?updateMask=trafficSplit``).

As on Vertex: ``:deployModel`` answers a running operation; the weights are copied and loaded
in the background and only then does the deployed model join the endpoint with the request's
``trafficSplit`` (``"0"`` names the model being deployed), so the models already deployed
serve throughout. A failed deploy leaves the endpoint as it was (the model resource stays).
``:undeployModel`` refuses a deployed model that still has traffic unless its
``trafficSplit`` moves that traffic; a split must name deployed models and sum to 100.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra.local.api import model_deploys
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.model_deploys import NEW_MODEL, by_traffic
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import TYPE_PREFIX, Rendered, parse
from infra.local.state import now

#: Deployed models one endpoint holds at most (Vertex's quota is per project; a bound here).
MAX_DEPLOYED_MODELS = 8


def routes() -> list[Route]:
    """deployModel, mutateDeployedModel, undeployModel and the traffic split update."""
    ep = f"{PARENT}/endpoints/{{id:seg}}"
    return [
        route("POST", f"{ep}:deployModel", deploy_model),
        route("POST", f"{ep}:mutateDeployedModel", mutate_deployed_model),
        route("POST", f"{ep}:undeployModel", undeploy_model),
        route("PATCH", ep, update_endpoint),
    ]


def deploy_model(ctx: Context, call: Call) -> Rendered:
    """``POST {endpoint}:deployModel``: a running operation; serves once the weights load.

    Raises:
        ApiError: 404 without the endpoint or model, 400 on a bad traffic split or a model
            already deployed (or deploying) there.
    """
    req = parse(v1beta1.DeployModelRequest, call.body)
    rid = call.params["id"]
    wanted = req.get("deployedModel") or {}
    model_name = str(wanted.get("model", "")).partition("@")[0]
    model_id = model_name.rsplit("/models/", 1)[-1] if "/models/" in model_name else ""
    if not model_id:
        raise ApiError(400, "deployedModel.model is required (projects/P/locations/L/models/M)")
    with ctx.store.lock:
        endpoint = ctx.get("endpoints", rid)
        model = ctx.get("models", model_id)
        entry = ctx.store.get("endpoints", rid)
        internal = dict(entry["internal"]) if entry else {}
        deployed = endpoint.get("deployedModels", [])
        pending = list(internal.get("pendingModels", []))
        if any(d["id"] == model_id for d in deployed) or model_id in pending:
            raise ApiError(400, f"Model {model_name} is already deployed to {endpoint['name']}")
        if len(deployed) + len(pending) >= MAX_DEPLOYED_MODELS:
            raise ApiError(400, f"{endpoint['name']} has {MAX_DEPLOYED_MODELS} deployed models")
        split = dict(req.get("trafficSplit") or {})
        if split:
            _check_split(split, {d["id"] for d in deployed} | {NEW_MODEL}, endpoint["name"])
        op_id = ctx.store.new_id()
        stamp = now()
        resource = {
            "id": model_id,
            "model": model["name"],
            "displayName": wanted.get("displayName") or model.get("displayName", ""),
            "createTime": stamp,
            "modelVersionId": "1",
        }
        for key in ("dedicatedResources", "automaticResources"):
            if wanted.get(key):
                resource[key] = wanted[key]
        internal["pendingModels"] = [*pending, model_id]
        internal["pendingModel"] = model_id  # what models.delete checks
        ctx.store.put("endpoints", rid, endpoint, internal)
        op = {
            "name": f"{call.parent}/operations/{op_id}",
            "metadata": {
                "@type": TYPE_PREFIX + "DeployModelOperationMetadata",
                "genericMetadata": {"createTime": stamp, "updateTime": stamp},
            },
            "done": False,
        }
        ctx.store.put("operations", op_id, op, {})
    job = (ctx, op_id, rid, resource, split)
    if ctx.faults is not None and ctx.faults.hold_deploy_model(op_id, rid, model_id):
        model_deploys.hold(ctx, op_id, job)
        return "", op
    threading.Thread(
        target=model_deploys.finish, args=job, name=f"deploy-model-{op_id}", daemon=True
    ).start()
    return "", op


def mutate_deployed_model(ctx: Context, call: Call) -> Rendered:
    """``POST {endpoint}:mutateDeployedModel``: replicas and autoscaling in place (done op).

    Raises:
        ApiError: 400 without an update mask, on other fields, or min > max replicas; 404
            when the deployed model is not on the endpoint.
    """
    req = parse(v1beta1.MutateDeployedModelRequest, call.body)
    rid = call.params["id"]
    wanted = req.get("deployedModel") or {}
    paths = [p.strip() for p in str(req.get("updateMask", "")).split(",") if p.strip()]
    allowed = {
        "dedicatedResources.minReplicaCount", "dedicatedResources.maxReplicaCount",
        "dedicatedResources.autoscalingMetricSpecs", "dedicated_resources.min_replica_count",
        "dedicated_resources.max_replica_count", "dedicated_resources.autoscaling_metric_specs",
    }  # fmt: skip
    if not paths or set(paths) - allowed:
        raise ApiError(
            400,
            "update_mask must name dedicated_resources.min_replica_count, max_replica_count "
            "or autoscaling_metric_specs",
        )
    with ctx.store.lock:
        endpoint = ctx.get("endpoints", rid)
        target = next(
            (d for d in endpoint.get("deployedModels", []) if d["id"] == wanted.get("id")), None
        )
        if target is None:
            raise ApiError(
                404, f"Deployed model {wanted.get('id')!r} not found on {endpoint['name']}"
            )
        new = wanted.get("dedicatedResources") or {}
        res = dict(target.get("dedicatedResources") or {})
        for path in paths:
            field = _camel(path.split(".", 1)[1])
            if field in new:
                res[field] = new[field]
            else:
                res.pop(field, None)
        lo, hi = int(res.get("minReplicaCount", 1)), int(res.get("maxReplicaCount", 1) or 1)
        if lo < 1 or hi < lo:
            raise ApiError(400, f"replica counts: need 1 <= min ({lo}) <= max ({hi})")
        target["dedicatedResources"] = res
        endpoint["updateTime"] = now()
        entry = ctx.store.get("endpoints", rid)
        ctx.store.put("endpoints", rid, endpoint, entry["internal"] if entry else {})
    return ctx.done_operation(
        call.parent,
        "MutateDeployedModelOperationMetadata",
        {"@type": TYPE_PREFIX + "MutateDeployedModelResponse", "deployedModel": target},
    )


def undeploy_model(ctx: Context, call: Call) -> Rendered:
    """``POST {endpoint}:undeployModel``: a done operation; the loaded model is dropped.

    Raises:
        ApiError: 400 FAILED_PRECONDITION when that model is not deployed there, or still has
            traffic the request's ``trafficSplit`` does not move elsewhere.
    """
    req = parse(v1beta1.UndeployModelRequest, call.body)
    rid = call.params["id"]
    with ctx.store.lock:
        resource = ctx.get("endpoints", rid)
        entry = ctx.store.get("endpoints", rid)
        wanted = req.get("deployedModelId")
        deployed = resource.get("deployedModels", [])
        kept = [d for d in deployed if d["id"] != wanted]
        if len(kept) == len(deployed):
            raise ApiError(
                400,
                f"Deployed model {wanted!r} not found on {resource['name']}",
                "FAILED_PRECONDITION",
            )
        traffic = {k: int(v) for k, v in (resource.get("trafficSplit") or {}).items()}
        split = {k: int(v) for k, v in (req.get("trafficSplit") or {}).items()}
        if split:
            _check_split(split, {d["id"] for d in deployed}, resource["name"])
            traffic = split
        if kept and traffic.get(str(wanted), 0):
            raise ApiError(
                400,
                f"Deployed model {wanted} has {traffic[str(wanted)]}% of the traffic of "
                f"{resource['name']}: move it with traffic_split first",
                "FAILED_PRECONDITION",
            )
        traffic.pop(str(wanted), None)
        resource["deployedModels"] = by_traffic(kept, traffic)
        resource["trafficSplit"] = {k: v for k, v in traffic.items() if v} if kept else {}
        if not resource["trafficSplit"]:
            resource.pop("trafficSplit")
        resource["updateTime"] = now()
        internal = dict(entry["internal"]) if entry else {}
        if internal.get("deployedModel") == wanted:
            internal.pop("deployedModel")
        ctx.store.put("endpoints", rid, resource, internal)
    model = ctx.store.get("models", wanted or "")
    if model is not None:
        ctx.models.drop(Path(model["internal"]["localDir"]))
    return ctx.done_operation(
        call.parent,
        "UndeployModelOperationMetadata",
        {"@type": TYPE_PREFIX + "UndeployModelResponse"},
    )


def update_endpoint(ctx: Context, call: Call) -> Rendered:
    """``PATCH {endpoint}?updateMask=...``: the traffic split, display name, description, labels.

    Raises:
        ApiError: 400 without an update mask, on other fields or a bad traffic split.
    """
    req = parse(v1beta1.Endpoint, call.body)
    mask = [p.strip() for p in call.query.get("updateMask", "").split(",") if p.strip()]
    allowed = {"trafficSplit": "trafficSplit", "traffic_split": "trafficSplit",
               "displayName": "displayName", "display_name": "displayName",
               "description": "description", "labels": "labels"}  # fmt: skip
    if not mask or set(mask) - set(allowed):
        raise ApiError(
            400, f"updateMask must name some of {', '.join(sorted(set(allowed.values())))}"
        )
    rid = call.params["id"]
    with ctx.store.lock:
        resource = ctx.get("endpoints", rid)
        entry = ctx.store.get("endpoints", rid)
        for path in mask:
            field = allowed[path]
            if field == "trafficSplit":
                split = {k: int(v) for k, v in (req.get("trafficSplit") or {}).items()}
                ids = {d["id"] for d in resource.get("deployedModels", [])}
                if split or ids:
                    _check_split(split, ids, resource["name"])
                resource["deployedModels"] = by_traffic(resource.get("deployedModels", []), split)
                resource["trafficSplit"] = {k: v for k, v in split.items() if v}
            elif field in req:
                resource[field] = req[field]
            else:
                resource.pop(field, None)
        resource["updateTime"] = now()
        ctx.store.put("endpoints", rid, resource, entry["internal"] if entry else {})
    return "Endpoint", resource


# -- helpers --------------------------------------------------------------------------------


def _check_split(split: dict[str, Any], ids: set[str], endpoint: str) -> None:
    unknown = sorted(set(split) - ids)
    if unknown:
        raise ApiError(
            400, f"traffic_split names {unknown[0]!r}, not a deployed model of {endpoint}"
        )
    values = [int(v) for v in split.values()]
    if any(v < 0 or v > 100 for v in values) or sum(values) != 100:
        raise ApiError(400, f"traffic_split percentages must add up to 100, got {sum(values)}")


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)
