"""``customJobs``: the trainer image's worker pools, run by the native trainer in its place."""

from __future__ import annotations

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra.local import trainer
from infra.local.api import jobs, validate
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered, parse


def routes() -> list[Route]:
    """Create, list, get and cancel."""
    return [
        route("POST", f"{PARENT}/customJobs", create),
        *jobs.routes("customJobs"),
    ]


def create(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}/customJobs``: needs a container worker pool and a display name.

    Raises:
        ApiError: 400 without them.
    """
    job = parse(v1beta1.CustomJob, call.body)
    pools = job.get("jobSpec", {}).get("workerPoolSpecs", [])
    if not pools or "containerSpec" not in pools[0]:
        raise ApiError(
            400,
            "jobSpec.workerPoolSpecs[0].containerSpec is required (the local API runs the trainer in place of the container)",
        )
    validate.display_name(job.get("displayName"), "displayName", required=True)
    validate.labels(job.get("labels"))
    rid = ctx.store.new_id()
    job["name"] = f"{call.parent}/customJobs/{rid}"
    if ctx.settings.smoke:
        job["labels"] = {**job.get("labels", {}), trainer.SMOKE_LABEL: "true"}
    return jobs.queue(ctx, "customJobs", rid, job)
