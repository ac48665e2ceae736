"""``POST {endpoint}:predict``: generation on the deployed checkpoint, 429 beyond the cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local.api import deployments
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, guarded
from infra.local.api.wire import json_body
from infra.local.predict import InstanceError, parse_instance


def routes() -> list[Route]:
    """Predict (answered as Model Garden's vLLM containers answer, not through a proto)."""
    return [Route(f"{PARENT}/endpoints/{{id:seg}}:predict", guarded(predict), methods=["POST"])]


async def predict(request: Request) -> Response:
    """``POST {endpoint}:predict``: 429 at once when ``predict_concurrency`` calls run.

    Raises:
        ApiError: 400 on a bad body or an endpoint without a model, 404 without the endpoint.
    """
    ctx: Context = request.app.state.ctx
    p = request.path_params
    name = f"projects/{p['project']}/locations/{p['location']}/endpoints/{p['id']}"
    body = json_body(await request.body())
    instances = _instances(body, ctx.settings.max_tokens)
    entry = ctx.store.get("endpoints", p["id"])
    if entry is None:
        raise ApiError(404, f"Endpoint {name} not found")
    deployed = entry["resource"].get("deployedModels", [])
    if not deployed:
        raise ApiError(400, f"Endpoint {name} has no deployed model", "FAILED_PRECONDITION")
    model = ctx.store.get("models", deployed[0]["id"])
    if model is None:
        raise ApiError(400, f"Model of {name} was deleted", "FAILED_PRECONDITION")
    if not ctx.limiter.try_acquire():
        raise ApiError(429, f"Too many concurrent predictions (cap {ctx.limiter.cap}); retry later")
    try:
        local_dir = Path(model["internal"]["localDir"])
        gcs_uri = model["internal"]["gcsUri"]

        def run() -> list[str]:
            # After a restart the cache may be gone.
            deployments.materialise(ctx, gcs_uri, local_dir)
            loaded = ctx.models.get(local_dir)
            return [loaded.generate(i) for i in instances]

        predictions = await anyio.to_thread.run_sync(run)
    finally:
        ctx.limiter.release()
    d = deployed[0]
    return JSONResponse(
        {
            "predictions": predictions,
            "deployedModelId": d["id"],
            "model": d["model"],
            "modelDisplayName": d.get("displayName", ""),
            "modelVersionId": d.get("modelVersionId", "1"),
        }
    )


def _instances(body: Any, max_tokens: int) -> list[Any]:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("instances"), list)
        or not body["instances"]
    ):
        raise ApiError(400, "predict needs a non-empty instances list")
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        raise ApiError(400, f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}")
    try:
        return [parse_instance(i, max_tokens) for i in body["instances"]]
    except InstanceError as e:
        raise ApiError(400, str(e)) from None
