"""The Starlette application of ``tunestack serve`` and the process that runs it.

Every Vertex resource module is mounted at ``/v1``, ``/v1beta1`` and ``/ui`` (the paths
Google's clients use); ``/local`` holds the CLI's helpers. Anything else under a version
answers 501 naming the method; an unknown version 404.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from infra import gcs
from infra.local import home, storage, storage_door
from infra.local.api import (
    chat,
    custom_jobs,
    endpoints,
    local,
    model_upload,
    models,
    operations,
    predict,
    recommend,
    routing,
    traffic,
    tuning_jobs,
)
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.middleware import (
    KEEP_ALIVE_TIMEOUT_S,
    MAX_HEADER_BYTES,
    BoundedH11,
    Guard,
    HostAllowlist,
)
from infra.local.api.settings import Settings

#: The path prefixes of Google's clients: v1 and v1beta1 REST, and the SDK's ``/ui``.
VERSIONS = ("v1", "v1beta1", "ui")

Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def build(ctx: Context, lifespan: Lifespan | None = None) -> Starlette:
    """The application of one server.

    Args:
        ctx: The server's state (its settings give the port, hosts and caps).
        lifespan: Start-up and shut-down of the scheduler and the emulator.
    """
    names = host_names(ctx.settings)
    port = ctx.settings.port
    app = Starlette(
        routes=[
            Route(local.FAULTS_PATH, routing.guarded(local.set_faults), methods=["GET", "POST"]),
            *(Mount(f"/{v}", routes=_vertex_routes()) for v in VERSIONS),
            Mount("/local", routes=local.routes()),
            Route("/{path:path}", routing.guarded(_no_such_version)),
        ],
        middleware=[
            Middleware(HostAllowlist, hosts=names),
            Middleware(
                Guard,
                token=ctx.token,
                origins={f"http://{n}:{port}" for n in names},
                body_limit=ctx.settings.body_limit,
            ),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.ctx = ctx
    return app


def serve(settings: Settings, ready: Callable[[str, str], None] | None = None) -> None:
    """Runs the emulator and the API until SIGINT/SIGTERM; writes ``api.json`` when ready.

    Args:
        settings: Server settings.
        ready: Called with ``(api_url, storage_url)`` once both answer.

    Raises:
        OSError: when the port is taken.
        RuntimeError: when the emulator cannot start.
    """
    # Everything the server and its children (emulator, trainers) write under the home -
    # state, logs, checkpoints, deployed weights - is the user's alone: 0600 files, 0700 dirs.
    os.umask(0o077)
    token = home.ensure_token()
    # In-process storage clients and the trainers we start send the door's token.
    os.environ[gcs.TOKEN_ENV] = token
    sock = _bind(settings.host, settings.port)
    settings.port = sock.getsockname()[1]
    door_sock = _bind(settings.host, settings.storage_port)
    shown_host = "127.0.0.1" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
    api_url = f"http://{shown_host}:{settings.port}"
    storage_url = f"http://{shown_host}:{door_sock.getsockname()[1]}"
    # The emulator runs in its own network namespace behind a private Unix socket (or, where
    # that is impossible, on a private 127.0.0.1 port); every client (the trainer included)
    # reaches it through the door, which checks the token and object names.
    emulator = storage.StorageEmulator(0, public_url=storage_url)
    emulator.start()
    if emulator.exposed:
        print(
            f"warning: the storage emulator listens on {emulator.url}, which any local "
            f"process can reach without the token: {emulator.exposed}",
            file=sys.stderr,
        )
    door = storage_door.DoorServer(
        door_sock, emulator.url, token, host_names(settings), emulator.transport()
    )
    door.start()
    ctx = Context(settings, storage_url, token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.scheduler.start()
        home.write_api_file(api_url, storage_url, os.getpid(), emulator.exposed)
        if ready is not None:
            ready(api_url, storage_url)
        try:
            yield
        finally:
            # Clean up here, not after run(): uvicorn re-raises SIGTERM/SIGINT once it has
            # shut down, so code after it never runs on a signal.
            _remove_api_file_if_ours()
            await anyio.to_thread.run_sync(ctx.scheduler.stop)
            await anyio.to_thread.run_sync(door.stop)
            emulator.stop()

    config = uvicorn.Config(
        build(ctx, lifespan),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
        http=BoundedH11,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        door.stop()
        emulator.stop()
        _remove_api_file_if_ours()


def host_names(settings: Settings) -> set[str]:
    """Host names the API and the storage door answer: localhost names and extra hosts."""
    return {"127.0.0.1", "localhost", "[::1]", *settings.extra_hosts}


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _vertex_routes() -> list[BaseRoute]:
    return [
        *tuning_jobs.routes(),
        *custom_jobs.routes(),
        # Before endpoints': its :undeployModel honours the traffic split of several models.
        *traffic.routes(),
        *model_upload.routes(),
        *endpoints.routes(),
        *predict.routes(),
        *chat.routes(),
        *recommend.routes(),
        *models.routes(),
        *operations.routes(),
        Route("/{rest:path}", routing.guarded(routing.not_implemented)),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (405 on a known path) in Google's error shape."""
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return ApiError(code, f"{detail}: {request.method} {request.url.path[:200]}").response()


async def _no_such_version(request: Request) -> Response:
    version = request.url.path.lstrip("/").partition("/")[0]
    if version in VERSIONS:  # "/v1" itself
        return await routing.not_implemented(request)
    if version == "local":
        return await local.not_implemented(request)
    raise ApiError(404, f"No such API version: /{version}")


def _remove_api_file_if_ours() -> None:
    with contextlib.suppress(OSError, ValueError):
        if home.read_api_info().get("pid") == os.getpid():
            home.api_file().unlink()
