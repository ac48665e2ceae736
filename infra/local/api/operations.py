"""``operations``: the long-running operations of deploys, undeploys and deletes."""

from __future__ import annotations

import time

from starlette.routing import Route

from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.filters import page
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import LIST_OPERATIONS, Rendered, json_body

#: Longest ``:wait`` the server holds a request, seconds (a client asking more polls again).
MAX_WAIT_S = 60.0
_POLL_S = 0.1


def routes() -> list[Route]:
    """Get and wait, also under nested resources (``.../endpoints/E/operations/O``); list."""
    return [
        route("GET", f"{PARENT}/operations", list_operations),
        route("GET", f"{PARENT}{{nested:nested}}/operations/{{id:seg}}", get_operation),
        route("POST", f"{PARENT}{{nested:nested}}/operations/{{id:seg}}:wait", wait_operation),
    ]


def get_operation(ctx: Context, call: Call) -> Rendered:
    """``GET {operation}``."""
    return "", ctx.get("operations", call.params["id"], call.parent)


def list_operations(ctx: Context, call: Call) -> Rendered:
    """``GET {parent}/operations`` (filter, page size and token as for resources)."""
    items, token = page(ctx.store, "operations", call.parent, call.query)
    return LIST_OPERATIONS, {"operations": items, "nextPageToken": token}


def wait_operation(ctx: Context, call: Call) -> Rendered:
    """``POST {operation}:wait``: the operation once done, or after ``timeout`` (at most
    :data:`MAX_WAIT_S`), done or not, as Vertex answers it."""
    body = json_body(call.body)
    timeout = MAX_WAIT_S
    raw = body.get("timeout") if isinstance(body, dict) else None
    if raw is not None:
        try:
            seconds = float(str(raw).removesuffix("s"))
        except ValueError:
            seconds = float("nan")
        if not 0 <= seconds < float("inf"):
            raise ApiError(
                400, f"timeout must be a duration like '10s' (got {raw!r})", field="timeout"
            )
        timeout = min(seconds, MAX_WAIT_S)
    deadline = time.monotonic() + timeout
    while True:
        op = ctx.get("operations", call.params["id"], call.parent)
        if op.get("done") or time.monotonic() >= deadline:
            return "", op
        time.sleep(_POLL_S)
