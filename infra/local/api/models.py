"""``models``: the deployed checkpoints (one per deploy), listed, read and deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

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
        route("GET", f"{PARENT}/models/{{id:modelid}}", get_model),
        route("DELETE", f"{PARENT}/models/{{id:bareid}}", delete_model),
    ]


def list_models(ctx: Context, call: Call) -> Rendered:
    """``GET {parent}/models``."""
    items, token = page(ctx.store, "models", call.parent, call.query)
    return "ListModelsResponse", {"models": items, "nextPageToken": token}


def get_model(ctx: Context, call: Call) -> Rendered:
    """``GET {model}`` (every local model has one version)."""
    return "Model", ctx.get("models", call.params["id"].partition("@")[0], call.parent)


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
