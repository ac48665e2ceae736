"""``tuningJobs``: supervised tuning of the catalog's open models, run by the native trainer."""

from __future__ import annotations

import re
from typing import Any

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra import catalog, gcs
from infra.local import home, trainer
from infra.local.api import jobs, validate
from infra.local.api.context import Context
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered, json_body, parse

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
        ApiError: 400 INVALID_ARGUMENT on a job Vertex would refuse, 400 FAILED_PRECONDITION
            when its output bucket or dataset objects do not exist.
    """
    job = parse(v1beta1.TuningJob, call.body)
    validate.tuning_location(call.params["location"])
    spec = job.get("supervisedTuningSpec")
    if not spec or not spec.get("trainingDatasetUri"):
        raise validate.invalid(
            "supervisedTuningSpec.trainingDatasetUri",
            "is required (the local API runs supervised tuning only)",
        )
    base = job.get("baseModel", "")
    entry = catalog.model(base)
    if entry is None:
        raise validate.invalid(
            "baseModel",
            f"{base!r} is not an open model that supports tuning; known: {', '.join(catalog.MODELS)}",
        )
    mode = _MODES.get(spec.get("tuningMode", ""), catalog.FULL)
    if mode not in entry.tuning_modes:
        raise validate.invalid(
            "supervisedTuningSpec.tuningMode",
            f"tuningMode {mode} is not supported for {base} (supported: {', '.join(entry.tuning_modes)})",
        )
    validate.hyper_parameters(
        {**_zeros(json_body(call.body)), **spec.get("hyperParameters", {})}, mode
    )
    validate.display_name(job.get("tunedModelDisplayName"), "tunedModelDisplayName")
    validate.labels(job.get("labels"))
    for key in ("trainingDatasetUri", "validationDatasetUri"):
        if spec.get(key) and (problem := gcs.escape_problem(spec[key])):
            raise validate.invalid(f"supervisedTuningSpec.{key}", f"must be a gs:// URI: {problem}")
    if problem := gcs.escape_problem(str(job.get("outputUri", ""))):
        raise validate.invalid("outputUri", f"must be a gs:// URI for open-model tuning: {problem}")
    if job.get("customBaseModel") and (problem := gcs.escape_problem(job["customBaseModel"])):
        raise validate.invalid("customBaseModel", f"must be a gs:// URI: {problem}")
    if ctx.faults is None:  # fault injection scripts job outcomes: no data behind them
        validate.bucket(ctx.gcs, job["outputUri"], "outputUri")
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            if spec.get(key):
                validate.gcs_object(ctx.gcs, spec[key], f"supervisedTuningSpec.{key}")
        if job.get("customBaseModel"):
            validate.gcs_prefix(ctx.gcs, job["customBaseModel"], "customBaseModel")
    else:
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            if spec.get(key) and gcs.parse(spec[key]) is None:
                raise validate.invalid(f"supervisedTuningSpec.{key}", "must be a gs:// URI")
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


def _zeros(raw: Any) -> dict[str, Any]:
    """Hyperparameters sent as 0 (proto JSON drops zeros, but Vertex refuses 0 epochs)."""
    spec = raw.get("supervisedTuningSpec") or raw.get("supervised_tuning_spec") or {}
    hyper = spec.get("hyperParameters") or spec.get("hyper_parameters") or {}
    out = {}
    for key, value in hyper.items():
        camel = re.sub(r"_([a-z])", lambda m: m[1].upper(), key)
        if value in (0, "0") and camel in (
            "epochCount",
            "learningRateMultiplier",
            "learningRate",
            "batchSize",
        ):
            out[camel] = 0
    return out
