"""Non-Vertex helpers for the tunestack CLI at ``/local/v1`` and the fault-injection route.

Authenticated like everything else: they sit behind the same middleware.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local.api import faults
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import guarded
from infra.local.api.wire import json_body

#: Where tests set faults (``Settings.faults``); 404 on a server without them.
FAULTS_PATH = "/v1/tunestack:faults"


def routes() -> list[Route]:
    """``/local/v1/status`` and ``/local/v1/{tuningJobs|customJobs}/{id}/log``."""
    return [
        Route("/v1/status", guarded(status), methods=["GET"]),
        Route("/v1/{collection:seg}/{id:seg}/log", guarded(log), methods=["GET"]),
        Route("/{rest:path}", guarded(not_implemented)),
    ]


async def status(request: Request) -> Response:
    """What ``tunestack`` needs to know about a running server."""
    ctx: Context = request.app.state.ctx
    return JSONResponse(
        {
            "pid": os.getpid(),
            "smoke": ctx.settings.smoke,
            "storage_url": ctx.storage_url,
            "predict_concurrency": ctx.limiter.cap,
            "max_tokens": ctx.settings.max_tokens,
        }
    )


async def log(request: Request) -> Response:
    """The last ``tail`` lines (default 20) of a job's trainer log."""
    ctx: Context = request.app.state.ctx
    collection = request.path_params["collection"]
    if collection not in ("tuningJobs", "customJobs"):
        return await not_implemented(request)
    path = ctx.scheduler.log_path(collection, request.path_params["id"])
    tail = int(request.query_params.get("tail", "20"))
    lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
    return JSONResponse({"log": str(path), "lines": lines})


async def not_implemented(request: Request) -> Response:
    """501 for anything else under ``/local``."""
    rest = request.url.path.lstrip("/").partition("/")[2]
    raise ApiError(501, f"{request.method} /local/{rest} is not implemented")


async def set_faults(request: Request) -> Response:
    """``GET`` answers the faults; ``POST`` sets some (``setJobState`` changes one job).

    Raises:
        ApiError: 404 unless the server runs with ``Settings.faults``.
    """
    ctx: Context = request.app.state.ctx
    if ctx.faults is None:
        raise ApiError(404, "fault injection is off on this server")
    if request.method == "POST":
        body = json_body(await request.body())
        if isinstance(body, dict) and "setJobState" in body:
            change = body.pop("setJobState")
            faults.set_job_state(
                ctx.store, str(change["name"]), change["state"], str(change.get("error", ""))
            )
        ctx.faults.update(body)
    return JSONResponse(ctx.faults.as_json())
