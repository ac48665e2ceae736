"""Providers for training jobs: managed tuning jobs, custom jobs, and waiting for either.

Create submits (or adopts by key) and returns fast with the job name, because the engine
records an id only when create returns (pulumi/pulumi#5210): a kill after submit leaves no
state, and the re-run adopts the job carrying the same key label instead of billing a second
one. Waiting for hours-long training is a separate resource (:class:`JobCompletionProvider`),
so a kill while waiting resumes waiting on the recorded job.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

import pulumi
from google.api_core import exceptions as gexc
from pulumi.dynamic import CreateResult, ReadResult

from infra import catalog
from infra.plan.inputs import (
    CustomTrainingJobArgs,
    TuningJobArgs,
    TuningJobCompletionArgs,
    input_names,
    replacing,
    required,
)
from infra.plan.keys import job_key, run_output_uri
from infra.providers.base import TunestackProvider, inputs_of, known, poll_settings, target_of
from infra.vertex import checkpoints
from infra.vertex import jobs as vertex_jobs
from infra.vertex.errors import VertexError
from infra.vertex.progress import describe, read_progress

JOB_OUTPUTS = ("job_name", "key", "adopted", "state", "run_uri")


def cancel_deadline() -> float:
    """Seconds ``delete`` waits for a cancelled job to end (``TUNESTACK_CANCEL_DEADLINE_SECONDS``)."""
    return float(os.environ.get("TUNESTACK_CANCEL_DEADLINE_SECONDS", "1800"))


class TuningJobProvider(TunestackProvider):
    """A Vertex managed open-model tuning job (``tuningJobs``)."""

    INPUTS: ClassVar[tuple[str, ...]] = input_names(TuningJobArgs)
    # Every training input and the endpoint (where the job lives) replace; labels update.
    REPLACES: ClassVar[frozenset[str]] = replacing(TuningJobArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(TuningJobArgs)
    OUTPUTS: ClassVar[tuple[str, ...]] = JOB_OUTPUTS

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        return validate_training(news)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        name, adopted = self.ensure(inputs)
        job = vertex_jobs.get_job(target_of(inputs), name)
        outs = {
            **inputs,
            "job_name": name,
            "key": job_key(self.key_inputs(inputs)),
            "adopted": adopted,
            "state": vertex_jobs.state_name(job),
            # Where this job version writes: its own prefix under output_uri.
            "run_uri": run_output_uri(inputs),
        }
        return CreateResult(name, outs)

    def ensure(self, inputs: dict[str, Any]) -> tuple[str, bool]:
        return vertex_jobs.ensure_tuning_job(target_of(inputs), self.key_inputs(inputs))

    def key_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs the key is computed from (the endpoint never is)."""
        return {k: v for k, v in inputs.items() if k != "api_endpoint"}

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Refreshes the job's state. A job cancelled outside Pulumi, or gone, leaves state
        (empty id), so the next ``up`` submits it again, as the spec still asks for it."""
        try:
            job = vertex_jobs.get_job(target_of(props), id_)
        except gexc.NotFound:
            return ReadResult("", {})
        state = vertex_jobs.state_name(job)
        if state in (catalog.JOB_STATE_CANCELLED, catalog.JOB_STATE_CANCELLING):
            return ReadResult("", {})
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        outs.update(job_name=id_, state=state)
        return ReadResult(id_, outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Jobs cannot be deleted: cancel a running one and wait until it is terminal."""
        state = vertex_jobs.cancel_and_wait(
            target_of(props), id_, cancel_deadline(), **poll_settings()
        )
        if state not in catalog.TERMINAL_JOB_STATES and state != "NOT_FOUND":
            raise VertexError(f"job {id_} did not stop: {state}")


class CustomTrainingJobProvider(TuningJobProvider):
    """A Vertex CustomJob running our trainer image (engine ``trainer_image``)."""

    INPUTS: ClassVar[tuple[str, ...]] = input_names(CustomTrainingJobArgs)
    REPLACES: ClassVar[frozenset[str]] = replacing(CustomTrainingJobArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(CustomTrainingJobArgs)

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        failures = validate_training(news)
        replicas = news.get("replicas")
        if known(replicas) and int(replicas) < 1:
            failures.append(("replicas", "replicas must be at least 1"))
        return failures

    def ensure(self, inputs: dict[str, Any]) -> tuple[str, bool]:
        return vertex_jobs.ensure_custom_job(target_of(inputs), self.key_inputs(inputs))


class JobCompletionProvider(TunestackProvider):
    """Waits until a tuning or custom job is terminal; succeeds only on SUCCEEDED.

    Create blocks with a bounded deadline and backoff (the host ignores custom timeouts), then
    returns the checkpoint URIs. A kill while waiting leaves the job recorded by its own
    resource, so the re-run's create waits on the same job again.
    """

    INPUTS: ClassVar[tuple[str, ...]] = input_names(TuningJobCompletionArgs)
    REPLACES: ClassVar[frozenset[str]] = replacing(TuningJobCompletionArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(TuningJobCompletionArgs)
    OUTPUTS: ClassVar[tuple[str, ...]] = (
        "state", "final_checkpoint_uri", "checkpoint_uris", "tuned_model", "checkpoints",
    )  # fmt: skip

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        target = target_of(inputs)
        name = inputs["job_name"]
        deadline = float(inputs.get("deadline_seconds") or 48 * 3600)
        report = progress_reporter(target, name, inputs["output_uri"])
        job = vertex_jobs.wait_for_job(target, name, deadline, report, **poll_settings())
        vertex_jobs.raise_for_job(job)
        final, per_epoch = checkpoints.checkpoint_uris(target, inputs["output_uri"])
        tuned_model = ""
        tuned: list[dict[str, Any]] = []
        if not vertex_jobs.is_custom_job(name):
            tuned_model = job.tuned_model.model  # type: ignore[union-attr]
            tuned = [
                {"epoch": str(c.epoch), "step": str(c.step), "checkpointId": c.checkpoint_id}
                for c in job.tuned_model.checkpoints  # type: ignore[union-attr]
            ]
        outs = {
            **inputs,
            "state": vertex_jobs.state_name(job),
            "final_checkpoint_uri": final,
            "checkpoint_uris": per_epoch,
            "tuned_model": tuned_model,
            # epoch, step, uri and validation loss of each: what epoch-N and best resolve from.
            "checkpoints": checkpoints.job_checkpoints(target, inputs["output_uri"], tuned),
        }
        return CreateResult(f"{name}/completion", outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            job = vertex_jobs.get_job(target_of(props), props["job_name"])
        except gexc.NotFound:
            return ReadResult("", {})
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        outs["state"] = vertex_jobs.state_name(job)
        return ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the job belongs to its job resource."""


def progress_reporter(target: Any, name: str, output_uri: str) -> Any:
    """The completion wait's ``on_progress``: one line per change of the job's progress (state,
    step, losses from its metrics.jsonl) to the Pulumi engine's log, and to stderr where the
    engine does not take dynamic providers' logs (pulumi/pulumi#6065)."""
    last: list[str] = []

    def report(job: Any) -> None:
        line = f"{name}: {describe(read_progress(target, output_uri, vertex_jobs.state_name(job)))}"
        if last and last[0] == line:
            return
        last[:] = [line]
        try:
            pulumi.log.info(line, ephemeral=True)
        except Exception:  # noqa: BLE001 - no engine to log to: say it on stderr instead
            print(line, file=sys.stderr, flush=True)

    return report


def validate_training(news: dict[str, Any]) -> list[tuple[str, str]]:
    """Input checks shared by both engines (unknown preview values are skipped)."""
    failures = []
    mode = news.get("tuning_mode")
    if known(mode) and mode not in catalog.TUNING_MODES:
        failures.append(("tuning_mode", f"tuning_mode must be one of {catalog.TUNING_MODES}"))
    if news.get("learning_rate") is not None and news.get("learning_rate_multiplier") is not None:
        failures.append(
            ("learning_rate", "learning_rate and learning_rate_multiplier are mutually exclusive")
        )
    size = news.get("adapter_size")
    if known(size) and int(size) not in catalog.ADAPTER_SIZES:
        failures.append(("adapter_size", f"adapter_size must be one of {catalog.ADAPTER_SIZES}"))
    epochs = news.get("epochs")
    if known(epochs) and int(epochs) < 1:
        failures.append(("epochs", "epochs must be at least 1"))
    return failures
