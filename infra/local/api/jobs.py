"""What tuning jobs and custom jobs share: queueing, list, get and cancel.

Jobs are queued on create and run by :class:`infra.local.scheduler.Scheduler`, one at a time.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from infra import catalog
from infra.local.api import faults
from infra.local.api.context import TYPES, Context
from infra.local.api.filters import page
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered
from infra.local.state import now


def routes(collection: str) -> list[Route]:
    """List, get and cancel of ``tuningJobs`` or ``customJobs`` (create is the caller's)."""

    def list_jobs(ctx: Context, call: Call) -> Rendered:
        items, token = list_page(ctx, collection, call)
        return f"List{collection[0].upper()}{collection[1:]}Response", {
            collection: items,
            "nextPageToken": token,
        }

    def get_job(ctx: Context, call: Call) -> Rendered:
        ctx.get(collection, call.params["id"], call.parent)
        if ctx.faults is not None:
            faults.advance(ctx.store, collection, call.params["id"], ctx.storage_url)
        return TYPES[collection], ctx.get(collection, call.params["id"], call.parent)

    def cancel_job(ctx: Context, call: Call) -> Rendered:
        ctx.get(collection, call.params["id"], call.parent)
        ctx.scheduler.cancel(collection, call.params["id"])
        return "google.protobuf.Empty", {}

    return [
        route("GET", f"{PARENT}/{collection}", list_jobs),
        route("GET", f"{PARENT}/{collection}/{{id:seg}}", get_job),
        route("POST", f"{PARENT}/{collection}/{{id:seg}}:cancel", cancel_job),
    ]


def queue(ctx: Context, collection: str, rid: str, job: dict[str, Any]) -> Rendered:
    """Stores a new job as ``JOB_STATE_QUEUED`` and wakes the scheduler."""
    job["state"] = catalog.JOB_STATE_QUEUED
    job["createTime"] = job["updateTime"] = now()
    ctx.store.put(collection, rid, job, ctx.faults.new_job() if ctx.faults is not None else {})
    ctx.scheduler.wake()
    return TYPES[collection], job


def list_page(ctx: Context, collection: str, call: Call) -> tuple[list[dict[str, Any]], str]:
    """One page of ``collection`` under the request's parent (filter, page size and token)."""
    honour = ctx.faults is None or not ctx.faults.ignore_filter
    return page(ctx.store, collection, call.parent, call.query, honour_filter=honour)
