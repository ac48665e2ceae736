"""``tuningJobs``: supervised tuning of the catalog's open models, run by the native trainer."""

from __future__ import annotations

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra import catalog, gcs
from infra.local import home, trainer
from infra.local.api import jobs
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered, parse

_MODES = {
    "TUNING_MODE_FULL": catalog.FULL,
    "TUNING_MODE_PEFT_ADAPTER": catalog.PEFT_ADAPTER,
}


def routes() -> list[Route]:
    """Create, list, get and cancel."""
    return [
        route("POST", f"{PARENT}/tuningJobs", create),
        *jobs.routes("tuningJobs"),
    ]


def create(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}/tuningJobs``: checks what Vertex checks for open models, then queues.

    Raises:
        ApiError: 400 on a job Vertex would refuse.
    """
    job = parse(v1beta1.TuningJob, call.body)
    spec = job.get("supervisedTuningSpec")
    if not spec or not spec.get("trainingDatasetUri"):
        raise ApiError(
            400,
            "supervisedTuningSpec.trainingDatasetUri is required (the local API runs supervised tuning only)",
        )
    base = job.get("baseModel", "")
    entry = catalog.model(base)
    if entry is None:
        raise ApiError(
            400,
            f"baseModel {base!r} is not an open model that supports tuning; known: {', '.join(catalog.MODELS)}",
        )
    mode = _MODES.get(spec.get("tuningMode", ""), catalog.FULL)
    if mode not in entry.tuning_modes:
        raise ApiError(
            400,
            f"tuningMode {mode} is not supported for {base} (supported: {', '.join(entry.tuning_modes)})",
        )
    hyper = spec.get("hyperParameters", {})
    if hyper.get("learningRate") and hyper.get("learningRateMultiplier"):
        raise ApiError(400, "learningRate and learningRateMultiplier are mutually exclusive")
    if hyper.get("adapterSize") and mode == catalog.FULL:
        raise ApiError(400, "adapterSize applies to PEFT_ADAPTER tuning only")
    for key in ("trainingDatasetUri", "validationDatasetUri"):
        if spec.get(key) and (problem := gcs.escape_problem(spec[key])):
            raise ApiError(400, f"supervisedTuningSpec.{key} must be a gs:// URI: {problem}")
    if problem := gcs.escape_problem(str(job.get("outputUri", ""))):
        raise ApiError(400, f"outputUri must be a gs:// URI for open-model tuning: {problem}")
    if job.get("customBaseModel") and (problem := gcs.escape_problem(job["customBaseModel"])):
        raise ApiError(400, f"customBaseModel must be a gs:// URI: {problem}")
    rid = ctx.store.new_id()
    job["name"] = f"{call.parent}/tuningJobs/{rid}"
    job.setdefault("tunedModelDisplayName", f"{base.split('@')[-1]}-tuned-{rid}")
    if ctx.settings.smoke and not job.get("customBaseModel") and not _mapped(base):
        # Labelled in metadata, never silently: these weights are random.
        job["labels"] = {**job.get("labels", {}), trainer.SMOKE_LABEL: "true"}
        note = f"SMOKE: {base} replaced by a tiny random-initialised {entry.family} model (tunestack serve --smoke)."
        job["description"] = f"{job.get('description', '')} {note}".strip()
    return jobs.queue(ctx, "tuningJobs", rid, job)


def _mapped(base: str) -> bool:
    """True when models.json maps ``base``; an unreadable file fails the job, not the call."""
    try:
        return base in home.model_map()
    except (OSError, ValueError):
        return False
