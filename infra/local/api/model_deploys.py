"""The background half of ``:deployModel``: weights loaded, then the model joins the endpoint.

Kept apart from the routes (:mod:`.traffic`) because the request loop
(:mod:`.routing`) finishes held deploys after every request (fault injection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.local.api import deployments
from infra.local.api.context import Context
from infra.local.api.wire import TYPE_PREFIX
from infra.local.state import now

#: google.rpc.Code of a failed deploy.
FAILED_PRECONDITION = 9
#: The traffic split key of the model being deployed.
NEW_MODEL = "0"

#: Held deployModel calls (fault injection): (server, op id) -> the arguments of :func:`finish`.
_held: dict[tuple[int, str], tuple[Any, ...]] = {}


def hold(ctx: Context, op_id: str, job: tuple[Any, ...]) -> None:
    """Keeps a deployModel (fault injection) until :func:`tick` says it is due."""
    _held[(id(ctx), op_id)] = job


def finish(
    ctx: Context,
    op_id: str,
    endpoint_id: str,
    deployed: dict[str, Any],
    split: dict[str, int],
    load: bool = True,
    error: str = "",
) -> None:
    """Loads the weights, then adds the deployed model with its traffic split (or fails).

    Args:
        ctx: The server.
        op_id: The deployModel operation.
        endpoint_id: Its endpoint.
        deployed: The DeployedModel to add.
        split: The request's traffic split ("0": this model), empty to keep the endpoint's.
        load: Copy and load the weights (False only under fault injection).
        error: Fail with this message instead (fault injection).
    """
    model_id = deployed["id"]
    model = ctx.store.get("models", model_id)
    try:
        if error:
            raise RuntimeError(error)
        if model is None:
            raise RuntimeError(f"model {deployed['model']} was deleted")
        if load:
            local_dir = Path(model["internal"]["localDir"])
            deployments.materialise(ctx, model["internal"]["gcsUri"], local_dir)
            ctx.models.get(local_dir)
    except Exception as e:
        _unpend(ctx, endpoint_id, model_id)
        message = str(e) if error else f"cannot deploy {deployed['model']}: {e}"
        ctx.complete_operation(op_id, error={"code": FAILED_PRECONDITION, "message": message})
        return
    with ctx.store.lock:
        entry = ctx.store.get("endpoints", endpoint_id)
        if entry is None:
            ctx.complete_operation(
                op_id, error={"code": FAILED_PRECONDITION, "message": "endpoint was deleted"}
            )
            return
        resource, internal = entry["resource"], dict(entry["internal"])
        models = [*resource.get("deployedModels", []), deployed]
        traffic = {k: int(v) for k, v in (resource.get("trafficSplit") or {}).items()}
        if split:
            traffic = {(model_id if k == NEW_MODEL else k): int(v) for k, v in split.items()}
        elif len(models) == 1:
            traffic = {model_id: 100}
        resource["deployedModels"] = by_traffic(models, traffic)
        resource["trafficSplit"] = {k: v for k, v in traffic.items() if v}
        resource["updateTime"] = now()
        internal["pendingModels"] = [m for m in internal.get("pendingModels", []) if m != model_id]
        internal.pop("pendingModel", None)
        if internal["pendingModels"]:
            internal["pendingModel"] = internal["pendingModels"][-1]
        ctx.store.put("endpoints", endpoint_id, resource, internal)
    response = {"@type": TYPE_PREFIX + "DeployModelResponse", "deployedModel": deployed}
    ctx.complete_operation(op_id, response=response)


def tick(ctx: Context) -> None:
    """One API request passed: finishes the deployModel calls fault injection held."""
    if ctx.faults is None:
        return
    for op_id, _endpoint, _model, error in ctx.faults.tick_models():
        job = _held.pop((id(ctx), op_id), None)
        if job is not None:
            ctx_, op, endpoint_id, deployed, split = job
            finish(ctx_, op, endpoint_id, deployed, split, load=False, error=error)


def by_traffic(models: list[dict[str, Any]], traffic: dict[str, int]) -> list[dict[str, Any]]:
    """The deployed models, the one with the most traffic first."""
    # The model with the most traffic first: what a client reading deployedModels[0] serves.
    return sorted(models, key=lambda d: -int(traffic.get(d["id"], 0)))


def _unpend(ctx: Context, endpoint_id: str, model_id: str) -> None:
    with ctx.store.lock:
        entry = ctx.store.get("endpoints", endpoint_id)
        if entry is None:
            return
        internal = dict(entry["internal"])
        internal["pendingModels"] = [m for m in internal.get("pendingModels", []) if m != model_id]
        internal.pop("pendingModel", None)
        if internal["pendingModels"]:
            internal["pendingModel"] = internal["pendingModels"][-1]
        ctx.store.put("endpoints", endpoint_id, entry["resource"], internal)
