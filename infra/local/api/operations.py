"""``operations``: the long-running operations of deploys, undeploys and deletes."""

from __future__ import annotations

from starlette.routing import Route

from infra.local.api.context import Context
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered


def routes() -> list[Route]:
    """Get, also under nested resources (``.../endpoints/E/operations/O``)."""
    return [route("GET", f"{PARENT}{{nested:nested}}/operations/{{id:seg}}", get_operation)]


def get_operation(ctx: Context, call: Call) -> Rendered:
    """``GET {operation}``."""
    return "", ctx.get("operations", call.params["id"], call.parent)
