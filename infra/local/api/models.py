"""``models``: the deployed checkpoints (one per deploy), listed, read and deleted."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from starlette.routing import Route

from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.filters import page
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import EMPTY_TYPE, Rendered


def routes() -> list[Route]:
    """List, get (``id`` or ``id@version``) and delete."""
    return [
        route("GET", f"{PARENT}/models", list_models),
        route("GET", f"{PARENT}/models/{{id:bareid}}:listVersions", list_versions),
        route("GET", f"{PARENT}/models/{{id:modelid}}", get_model),
        route("DELETE", f"{PARENT}/models/{{id:bareid}}", delete_model),
    ]


def list_models(ctx: Context, call: Call) -> Rendered:
    """``GET {parent}/models``."""
    items, token = page(ctx.store, "models", call.parent, call.query)
    return "ListModelsResponse", {
        "models": [with_deployments(ctx, m) for m in items],
        "nextPageToken": token,
    }


def get_model(ctx: Context, call: Call) -> Rendered:
    """``GET {model}`` or ``{model}@1`` (every local model has one version).

    Raises:
        ApiError: 404 for another version.
    """
    rid, _, version = call.params["id"].partition("@")
    model = ctx.get("models", rid, call.parent)
    if version and version not in (
        model.get("versionId", "1"),
        "default",
        *model.get("versionAliases", []),
    ):
        raise ApiError(404, f"Model {model['name']}@{version} not found")
    return "Model", with_deployments(ctx, model)


def list_versions(ctx: Context, call: Call) -> Rendered:
    """``GET {model}:listVersions``: its one version."""
    model = ctx.get("models", call.params["id"], call.parent)
    return "ListModelVersionsResponse", {"models": [with_deployments(ctx, model)]}


def with_deployments(ctx: Context, model: dict[str, Any]) -> dict[str, Any]:
    """The model with ``deployedModels``: the endpoints serving it now (as Vertex reports)."""
    refs = [
        {"endpoint": e["resource"]["name"], "deployedModelId": d["id"]}
        for _, e in ctx.store.items("endpoints")
        for d in e["resource"].get("deployedModels", [])
        if d.get("model") == model["name"]
    ]
    return {**model, "deployedModels": refs} if refs else model


def delete_model(ctx: Context, call: Call) -> Rendered:
    """``DELETE {model}``: a done operation; its cached weights are removed.

    Raises:
        ApiError: 400 FAILED_PRECONDITION while an endpoint serves (or is deploying) it.
    """
    rid = call.params["id"]
    with ctx.store.lock:
        resource = ctx.get("models", rid, call.parent)
        for _, entry in ctx.store.items("endpoints"):
            if (
                any(d["id"] == rid for d in entry["resource"].get("deployedModels", []))
                or entry["internal"].get("pendingModel") == rid
            ):
                raise ApiError(
                    400,
                    f"Model {resource['name']} is deployed to {entry['resource']['name']}: undeploy it first",
                    "FAILED_PRECONDITION",
                )
        model = ctx.store.get("models", rid)
        ctx.store.delete("models", rid)
    if model is not None:
        ctx.models.drop(Path(model["internal"]["localDir"]))
        shutil.rmtree(model["internal"]["localDir"], ignore_errors=True)
    parent = resource["name"].rsplit("/models/", 1)[0]
    return ctx.done_operation(parent, "DeleteOperationMetadata", {"@type": EMPTY_TYPE})
