"""``endpoints`` and Model Garden's ``:deploy``: custom weights served from the emulator."""

from __future__ import annotations

import re
from pathlib import Path

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra import gcs
from infra.local import home
from infra.local.api import deployments, validate
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.filters import page
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import EMPTY_TYPE, TYPE_PREFIX, Rendered, parse
from infra.local.state import now


def routes() -> list[Route]:
    """Deploy, create, list, get, patch, delete and undeployModel."""
    return [
        route("POST", f"{PARENT}:deploy", deploy),
        route("POST", f"{PARENT}/endpoints", create_endpoint),
        route("GET", f"{PARENT}/endpoints", list_endpoints),
        route("GET", f"{PARENT}/endpoints/{{id:seg}}", get_endpoint),
        route("PATCH", f"{PARENT}/endpoints/{{id:seg}}", patch_endpoint),
        route("DELETE", f"{PARENT}/endpoints/{{id:seg}}", delete_endpoint),
        route("POST", f"{PARENT}/endpoints/{{id:seg}}:undeployModel", undeploy_model),
    ]


def deploy(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}:deploy`` of ``customModel.gcsUri`` weights: a running operation.

    The model and endpoint exist at once (as on Vertex); the operation finishes in the
    background (:mod:`.deployments`).

    Raises:
        ApiError: 501 for other model sources, 400 for a non-gs:// URI.
    """
    req = parse(v1beta1.DeployRequest, call.body)
    gcs_uri = req.get("customModel", {}).get("gcsUri")
    if not gcs_uri:
        which = next(
            (k for k in ("publisherModelName", "huggingFaceModelId") if req.get(k)),
            "this model source",
        )
        raise ApiError(
            501,
            f"ModelGardenService.Deploy with {which} is not implemented locally: deploy customModel.gcsUri weights",
        )
    if problem := gcs.escape_problem(gcs_uri):
        raise ApiError(400, f"customModel.gcsUri must be a gs:// URI: {problem}")
    parent = call.parent
    model_id, endpoint_id, op_id = ctx.store.new_id(), ctx.store.new_id(), ctx.store.new_id()
    stamp = now()
    display = (
        req.get("modelConfig", {}).get("modelDisplayName")
        or f"custom-{gcs_uri.rstrip('/').split('/')[-1]}-{model_id}"
    )
    model = {
        "name": f"{parent}/models/{model_id}",
        "displayName": display,
        "artifactUri": gcs_uri,
        "versionId": "1",
        "createTime": stamp,
        "updateTime": stamp,
        "versionCreateTime": stamp,
        "versionUpdateTime": stamp,
    }
    endpoint = {
        "name": f"{parent}/endpoints/{endpoint_id}",
        "displayName": req.get("endpointConfig", {}).get("endpointDisplayName")
        or f"{display}-endpoint",
        "createTime": stamp,
        "updateTime": stamp,
    }
    local_dir = home.local_dir() / "cache" / "models" / model_id
    ctx.store.put("models", model_id, model, {"gcsUri": gcs_uri, "localDir": str(local_dir)})
    ctx.store.put(
        "endpoints",
        endpoint_id,
        endpoint,
        {"pendingModel": model_id, "deployConfig": req.get("deployConfig", {})},
    )
    op = {
        "name": f"{parent}/operations/{op_id}",
        "metadata": {
            "@type": TYPE_PREFIX + "DeployOperationMetadata",
            "genericMetadata": {"createTime": stamp, "updateTime": stamp},
            "destination": parent,
            "modelId": model_id,
        },
        "done": False,
    }
    ctx.store.put("operations", op_id, op, {})
    deployments.start(ctx, op_id, endpoint_id, model_id)
    return "", op


def list_endpoints(ctx: Context, call: Call) -> Rendered:
    """``GET {parent}/endpoints``."""
    items, token = page(ctx.store, "endpoints", call.parent, call.query)
    return "ListEndpointsResponse", {"endpoints": items, "nextPageToken": token}


def get_endpoint(ctx: Context, call: Call) -> Rendered:
    """``GET {endpoint}``."""
    return "Endpoint", ctx.get("endpoints", call.params["id"], call.parent)


def create_endpoint(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}/endpoints``: an empty endpoint, as a done operation.

    Raises:
        ApiError: 400 without a display name or with bad labels, 409 on a taken
            ``endpointId``.
    """
    req = parse(v1beta1.Endpoint, call.body)
    validate.display_name(req.get("displayName"), "displayName", required=True)
    validate.labels(req.get("labels"))
    for key in ("deployedModels", "trafficSplit"):
        if req.get(key):
            raise validate.invalid(key, "is output only at create: deploy models with :deployModel")
    wanted = call.query.get("endpointId", "")
    if wanted and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", wanted):
        raise validate.invalid("endpointId", f"{wanted!r} is not a valid endpoint id")
    with ctx.store.lock:
        if wanted and ctx.store.get("endpoints", wanted) is not None:
            raise ApiError(409, f"Endpoint {call.parent}/endpoints/{wanted} already exists")
        rid = wanted or ctx.store.new_id()
        stamp = now()
        endpoint = {
            **req,
            "name": f"{call.parent}/endpoints/{rid}",
            "createTime": stamp,
            "updateTime": stamp,
        }
        ctx.store.put("endpoints", rid, endpoint, {})
    return ctx.done_operation(
        call.parent,
        "CreateEndpointOperationMetadata",
        {"@type": TYPE_PREFIX + "Endpoint", **endpoint},
    )


#: Fields ``PATCH {endpoint}`` may update (Vertex's mutable Endpoint fields we keep).
PATCHABLE = ("displayName", "description", "labels", "trafficSplit")


def patch_endpoint(ctx: Context, call: Call) -> Rendered:
    """``PATCH {endpoint}?updateMask=...``: display name, description, labels, traffic split.

    Raises:
        ApiError: 400 on a field outside :data:`PATCHABLE` or a traffic split that does not
            name deployed models or does not sum to 100.
    """
    req = parse(v1beta1.Endpoint, call.body)
    mask = [m.strip() for m in call.query.get("updateMask", "").split(",") if m.strip()]
    mask = [re.sub(r"_([a-z])", lambda m: m[1].upper(), m) for m in mask] or [
        k for k in PATCHABLE if k in req
    ]
    bad = [m for m in mask if m not in PATCHABLE]
    if bad:
        raise validate.invalid(
            "updateMask", f"{bad[0]} cannot be updated (updatable: {', '.join(PATCHABLE)})"
        )
    with ctx.store.lock:
        resource = ctx.get("endpoints", call.params["id"], call.parent)
        if "displayName" in mask:
            validate.display_name(req.get("displayName"), "displayName", required=True)
        if "labels" in mask:
            validate.labels(req.get("labels"))
        if "trafficSplit" in mask:
            split = {k: int(v) for k, v in req.get("trafficSplit", {}).items()}
            ids = {d["id"] for d in resource.get("deployedModels", [])}
            unknown = sorted(set(split) - ids)
            if unknown:
                raise validate.invalid(
                    "trafficSplit", f"{unknown[0]} is not deployed on this endpoint"
                )
            if split and sum(split.values()) != 100:
                raise validate.invalid(
                    "trafficSplit", f"percentages must sum to 100 (got {sum(split.values())})"
                )
        for key in mask:
            if key in req:
                resource[key] = req[key]
            else:
                resource.pop(key, None)
        resource["updateTime"] = now()
        entry = ctx.store.get("endpoints", call.params["id"])
        ctx.store.put("endpoints", call.params["id"], resource, entry["internal"] if entry else {})
    return "Endpoint", resource


def undeploy_model(ctx: Context, call: Call) -> Rendered:
    """``POST {endpoint}:undeployModel``: a done operation; the loaded model is dropped.

    Raises:
        ApiError: 400 FAILED_PRECONDITION when that model is not deployed there.
    """
    req = parse(v1beta1.UndeployModelRequest, call.body)
    rid = call.params["id"]
    with ctx.store.lock:
        resource = ctx.get("endpoints", rid, call.parent)
        wanted = req.get("deployedModelId")
        kept = [d for d in resource.get("deployedModels", []) if d["id"] != wanted]
        if len(kept) == len(resource.get("deployedModels", [])):
            raise ApiError(
                400,
                f"Deployed model {wanted!r} not found on {resource['name']}",
                "FAILED_PRECONDITION",
            )
        resource["deployedModels"] = kept
        resource.pop("trafficSplit", None)
        resource["updateTime"] = now()
        ctx.store.put("endpoints", rid, resource, {})
    model = ctx.store.get("models", wanted or "")
    if model is not None:
        ctx.models.drop(Path(model["internal"]["localDir"]))
    parent = resource["name"].rsplit("/endpoints/", 1)[0]
    return ctx.done_operation(
        parent,
        "UndeployModelOperationMetadata",
        {"@type": TYPE_PREFIX + "UndeployModelResponse"},
    )


def delete_endpoint(ctx: Context, call: Call) -> Rendered:
    """``DELETE {endpoint}``: a done operation.

    Raises:
        ApiError: 400 FAILED_PRECONDITION while a model is deployed.
    """
    rid = call.params["id"]
    with ctx.store.lock:
        resource = ctx.get("endpoints", rid, call.parent)
        if resource.get("deployedModels"):
            raise ApiError(
                400,
                f"Endpoint {resource['name']} has deployed models: undeploy them first",
                "FAILED_PRECONDITION",
            )
        ctx.store.delete("endpoints", rid)
    parent = resource["name"].rsplit("/endpoints/", 1)[0]
    return ctx.done_operation(parent, "DeleteOperationMetadata", {"@type": EMPTY_TYPE})
