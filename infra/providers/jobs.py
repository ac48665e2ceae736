"""Providers for training jobs: managed tuning jobs, custom jobs, and waiting for either.

Create submits (or adopts by key) and returns fast with the job name, because the engine
records an id only when create returns (pulumi/pulumi#5210): a kill after submit leaves no
state, and the re-run adopts the job carrying the same key label instead of billing a second
one. Waiting for hours-long training is a separate resource (:class:`JobCompletionProvider`),
so a kill while waiting resumes waiting on the recorded job.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from pulumi.dynamic import CreateResult, ReadResult

from infra import catalog
from infra.providers import vertex
from infra.providers.base import TunestackProvider, inputs_of, known, poll_settings, target_of

#: Inputs that define what a tuning job computes: any change makes a new job.
TRAINING_INPUTS = (
    "project",
    "location",
    "base_model",
    "custom_base_model",
    "tuning_mode",
    "epochs",
    "learning_rate",
    "learning_rate_multiplier",
    "adapter_size",
    "train_dataset_uri",
    "validation_dataset_uri",
    "output_uri",
    "display_name",
    "dataset_identity",
)
JOB_OUTPUTS = ("job_name", "key", "adopted", "state")


def cancel_deadline() -> float:
    """Seconds ``delete`` waits for a cancelled job to end (``TUNESTACK_CANCEL_DEADLINE_SECONDS``)."""
    return float(os.environ.get("TUNESTACK_CANCEL_DEADLINE_SECONDS", "1800"))


class TuningJobProvider(TunestackProvider):
    """A Vertex managed open-model tuning job (``tuningJobs``)."""

    INPUTS: ClassVar[tuple[str, ...]] = (*TRAINING_INPUTS, "labels", "api_endpoint")
    # The endpoint is where the job lives: a different one is a different job.
    REPLACES: ClassVar[frozenset[str]] = frozenset({*TRAINING_INPUTS, "api_endpoint"})
    REQUIRED: ClassVar[tuple[str, ...]] = (
        "project", "location", "base_model", "tuning_mode", "train_dataset_uri", "output_uri",
    )  # fmt: skip
    OUTPUTS: ClassVar[tuple[str, ...]] = JOB_OUTPUTS

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        return validate_training(news)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        name, adopted = self.ensure(inputs)
        job = vertex.get_job(target_of(inputs), name)
        outs = {
            **inputs,
            "job_name": name,
            "key": vertex.job_key(self.key_inputs(inputs)),
            "adopted": adopted,
            "state": vertex.state_name(job),
        }
        return CreateResult(name, outs)

    def ensure(self, inputs: dict[str, Any]) -> tuple[str, bool]:
        return vertex.ensure_tuning_job(target_of(inputs), self.key_inputs(inputs))

    def key_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs the key is computed from (the endpoint never is)."""
        return {k: v for k, v in inputs.items() if k != "api_endpoint"}

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Refreshes the job's state. A job cancelled outside Pulumi, or gone, leaves state
        (empty id), so the next ``up`` submits it again, as the spec still asks for it."""
        try:
            job = vertex.get_job(target_of(props), id_)
        except gexc.NotFound:
            return ReadResult("", {})
        state = vertex.state_name(job)
        if state in ("JOB_STATE_CANCELLED", "JOB_STATE_CANCELLING"):
            return ReadResult("", {})
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        outs.update(job_name=id_, state=state)
        return ReadResult(id_, outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Jobs cannot be deleted: cancel a running one and wait until it is terminal."""
        state = vertex.cancel_and_wait(target_of(props), id_, cancel_deadline(), **poll_settings())
        if state not in vertex.TERMINAL_STATES and state != "NOT_FOUND":
            raise vertex.VertexError(f"job {id_} did not stop: {state}")


class CustomTrainingJobProvider(TuningJobProvider):
    """A Vertex CustomJob running our trainer image (engine ``trainer_image``)."""

    INPUTS: ClassVar[tuple[str, ...]] = (
        *TRAINING_INPUTS, "image_uri", "replicas", "machine_type", "labels", "api_endpoint",
    )  # fmt: skip
    REPLACES: ClassVar[frozenset[str]] = frozenset(
        {*TRAINING_INPUTS, "image_uri", "replicas", "machine_type", "api_endpoint"}
    )
    REQUIRED: ClassVar[tuple[str, ...]] = (*TuningJobProvider.REQUIRED, "image_uri")

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        failures = validate_training(news)
        replicas = news.get("replicas")
        if known(replicas) and int(replicas) < 1:
            failures.append(("replicas", "replicas must be at least 1"))
        return failures

    def ensure(self, inputs: dict[str, Any]) -> tuple[str, bool]:
        return vertex.ensure_custom_job(target_of(inputs), self.key_inputs(inputs))


class JobCompletionProvider(TunestackProvider):
    """Waits until a tuning or custom job is terminal; succeeds only on SUCCEEDED.

    Create blocks with a bounded deadline and backoff (the host ignores custom timeouts), then
    returns the checkpoint URIs. A kill while waiting leaves the job recorded by its own
    resource, so the re-run's create waits on the same job again.
    """

    INPUTS: ClassVar[tuple[str, ...]] = (
        "project", "location", "job_name", "output_uri", "deadline_seconds", "api_endpoint",
    )  # fmt: skip
    REPLACES: ClassVar[frozenset[str]] = frozenset(
        {"project", "location", "job_name", "output_uri", "api_endpoint"}
    )
    REQUIRED: ClassVar[tuple[str, ...]] = ("project", "location", "job_name", "output_uri")
    OUTPUTS: ClassVar[tuple[str, ...]] = (
        "state", "final_checkpoint_uri", "checkpoint_uris", "tuned_model",
    )  # fmt: skip

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        target = target_of(inputs)
        name = inputs["job_name"]
        deadline = float(inputs.get("deadline_seconds") or 48 * 3600)
        job = vertex.wait_for_job(target, name, deadline, **poll_settings())
        vertex.raise_for_job(job)
        final, per_epoch = vertex.checkpoint_uris(target, inputs["output_uri"])
        tuned_model = ""
        if not vertex.is_custom_job(name):
            tuned_model = job.tuned_model.model  # type: ignore[union-attr]
        outs = {
            **inputs,
            "state": vertex.state_name(job),
            "final_checkpoint_uri": final,
            "checkpoint_uris": per_epoch,
            "tuned_model": tuned_model,
        }
        return CreateResult(f"{name}/completion", outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            job = vertex.get_job(target_of(props), props["job_name"])
        except gexc.NotFound:
            return ReadResult("", {})
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        outs["state"] = vertex.state_name(job)
        return ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the job belongs to its job resource."""


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
