"""Tuning jobs (engine ``managed``) and custom jobs (engine ``trainer_image``): build, find by
key, ensure (adopt or submit), get, cancel and wait.

Create calls return fast; waiting for hours-long training is :func:`wait_for_job`, bounded by
a deadline, so a killed caller resumes waiting on the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1beta1 as aip

from infra import catalog
from infra.plan.keys import LABEL_KEY, job_key, key_labels, label_filter, run_output_uri
from infra.vertex.errors import DeadlineExceeded, JobFailed
from infra.vertex.target import Target, client
from infra.wait import poll

#: Default machine for custom jobs when the spec gives none.
DEFAULT_CUSTOM_MACHINE = "a2-highgpu-1g"
#: GPUs per machine family prefix, for custom job worker pools and torchrun.
_GPUS_BY_MACHINE = {
    "a2-highgpu-1g": ("NVIDIA_TESLA_A100", 1),
    "a2-highgpu-2g": ("NVIDIA_TESLA_A100", 2),
    "a2-highgpu-4g": ("NVIDIA_TESLA_A100", 4),
    "a2-highgpu-8g": ("NVIDIA_TESLA_A100", 8),
    "a2-ultragpu-1g": ("NVIDIA_A100_80GB", 1),
    "a2-ultragpu-8g": ("NVIDIA_A100_80GB", 8),
    "a3-highgpu-8g": ("NVIDIA_H100_80GB", 8),
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "g2-standard-12": ("NVIDIA_L4", 1),
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
}


def build_tuning_job(inputs: Mapping[str, Any], key: str) -> aip.TuningJob:
    """The ``TuningJob`` message for the provider's inputs (pure).

    Args:
        inputs: ``base_model``, ``custom_base_model``, ``tuning_mode`` (FULL|PEFT_ADAPTER),
            ``epochs``, ``learning_rate`` | ``learning_rate_multiplier``, ``adapter_size``,
            ``train_dataset_uri``, ``validation_dataset_uri``, ``output_uri`` (the job writes
            under ``{output_uri}/{run key}``: :func:`infra.plan.keys.run_output_uri`),
            ``display_name``, ``labels``.
        key: The job key (see :func:`job_key`).
    """
    hyper = aip.SupervisedHyperParameters(epoch_count=int(inputs.get("epochs") or 1))
    if inputs.get("learning_rate") is not None:
        hyper.learning_rate = float(inputs["learning_rate"])
    if inputs.get("learning_rate_multiplier") is not None:
        hyper.learning_rate_multiplier = float(inputs["learning_rate_multiplier"])
    if inputs.get("adapter_size") is not None:
        hyper.adapter_size = aip.SupervisedHyperParameters.AdapterSize(
            catalog.ADAPTER_SIZE_ENUM[int(inputs["adapter_size"])]
        )
    spec = aip.SupervisedTuningSpec(
        training_dataset_uri=inputs["train_dataset_uri"],
        tuning_mode=catalog.TUNING_MODE_ENUM[inputs["tuning_mode"]],
        hyper_parameters=hyper,
    )
    if inputs.get("validation_dataset_uri"):
        spec.validation_dataset_uri = inputs["validation_dataset_uri"]
    job = aip.TuningJob(
        base_model=inputs["base_model"],
        supervised_tuning_spec=spec,
        output_uri=run_output_uri(inputs),
        labels=key_labels(key, inputs.get("labels")),
    )
    if inputs.get("display_name"):
        job.tuned_model_display_name = inputs["display_name"]
    if inputs.get("custom_base_model"):
        job.custom_base_model = inputs["custom_base_model"]
    return job


def find_tuning_job(target: Target, key: str) -> aip.TuningJob | None:
    """The adoptable tuning job carrying ``key``, if any (newest first).

    Labels are re-checked client side, so a server that ignores ``filter`` is still safe.
    """
    svc = client(aip.GenAiTuningServiceClient, target)
    jobs = svc.list_tuning_jobs(request={"parent": target.parent, "filter": label_filter(key)})
    return _pick_adoptable(jobs, key)


def ensure_tuning_job(target: Target, inputs: Mapping[str, Any]) -> tuple[str, bool]:
    """Adopts the job with this input's key or submits one. Returns fast (does not wait).

    Args:
        target: Where to submit.
        inputs: See :func:`build_tuning_job`, plus ``dataset_identity`` (part of the key).

    Returns:
        ``(job resource name, adopted)``.
    """
    key = job_key(inputs)
    found = find_tuning_job(target, key)
    if found is not None:
        return found.name, True
    svc = client(aip.GenAiTuningServiceClient, target)
    job = svc.create_tuning_job(parent=target.parent, tuning_job=build_tuning_job(inputs, key))
    return job.name, False


def trainer_args(inputs: Mapping[str, Any]) -> list[str]:
    """Command-line flags of ``python -m trainer`` for a job's inputs (pure)."""
    args = [
        "--base-model", inputs.get("custom_base_model") or inputs["base_model"],
        "--train-data", inputs["train_dataset_uri"],
        "--output-dir", run_output_uri(inputs),
        "--tuning-mode", inputs["tuning_mode"],
        "--epochs", str(int(inputs.get("epochs") or 1)),
    ]  # fmt: skip
    # The catalog id names the architecture (sequence limits, templates) even for custom weights.
    args += ["--base-model-id", inputs["base_model"]]
    if inputs.get("validation_dataset_uri"):
        args += ["--validation-data", inputs["validation_dataset_uri"]]
    if inputs.get("learning_rate") is not None:
        args += ["--learning-rate", repr(float(inputs["learning_rate"]))]
    if inputs.get("learning_rate_multiplier") is not None:
        args += ["--learning-rate-multiplier", repr(float(inputs["learning_rate_multiplier"]))]
    if inputs.get("adapter_size") is not None:
        args += ["--adapter-size", str(int(inputs["adapter_size"]))]
    return args


def build_custom_job(inputs: Mapping[str, Any], key: str) -> aip.CustomJob:
    """The ``CustomJob`` running our trainer image (pure).

    No ``command``: the image's entrypoint (``python -m trainer.launch``) starts ``torchrun``
    with one process per GPU and, on several replicas, reads Vertex's ``CLUSTER_SPEC`` for the
    node count, this node's rank and the primary's address. With ``replicas`` > 1, worker pool
    0 is the primary (one replica) and pool 1 the other ``replicas - 1`` workers.

    Args:
        inputs: The tuning inputs plus ``image_uri``, ``replicas``, ``machine_type``.
        key: The job key.
    """
    replicas = int(inputs.get("replicas") or 1)
    machine_type = inputs.get("machine_type") or DEFAULT_CUSTOM_MACHINE
    accel, gpus = _GPUS_BY_MACHINE.get(machine_type, (None, 0))
    machine = aip.MachineSpec(machine_type=machine_type)
    if accel:
        machine.accelerator_type = getattr(aip.AcceleratorType, accel)
        machine.accelerator_count = gpus
    container = aip.ContainerSpec(image_uri=inputs["image_uri"], args=trainer_args(inputs))
    pools = [aip.WorkerPoolSpec(container_spec=container, machine_spec=machine, replica_count=1)]
    if replicas > 1:
        pools.append(
            aip.WorkerPoolSpec(
                container_spec=container, machine_spec=machine, replica_count=replicas - 1
            )
        )
    return aip.CustomJob(
        display_name=inputs.get("display_name") or f"tunestack-{key[:12]}",
        job_spec=aip.CustomJobSpec(worker_pool_specs=pools),
        labels=key_labels(key, inputs.get("labels")),
    )


def find_custom_job(target: Target, key: str) -> aip.CustomJob | None:
    """The adoptable custom job carrying ``key``, if any."""
    svc = client(aip.JobServiceClient, target)
    jobs = svc.list_custom_jobs(request={"parent": target.parent, "filter": label_filter(key)})
    return _pick_adoptable(jobs, key)


def ensure_custom_job(target: Target, inputs: Mapping[str, Any]) -> tuple[str, bool]:
    """Adopts the custom job with this input's key or submits one. Returns fast.

    Returns:
        ``(job resource name, adopted)``.
    """
    key = job_key(inputs)
    found = find_custom_job(target, key)
    if found is not None:
        return found.name, True
    svc = client(aip.JobServiceClient, target)
    job = svc.create_custom_job(parent=target.parent, custom_job=build_custom_job(inputs, key))
    return job.name, False


def is_custom_job(name: str) -> bool:
    """Whether a job resource name is a custom job (else a tuning job)."""
    return "/customJobs/" in name


def get_job(target: Target, name: str) -> aip.TuningJob | aip.CustomJob:
    """Gets a tuning or custom job by resource name.

    Raises:
        google.api_core.exceptions.NotFound: no such job.
    """
    if is_custom_job(name):
        return client(aip.JobServiceClient, target).get_custom_job(name=name)
    return client(aip.GenAiTuningServiceClient, target).get_tuning_job(name=name)


def state_name(job: aip.TuningJob | aip.CustomJob) -> str:
    """The job's state as a ``JOB_STATE_*`` name."""
    return aip.JobState(job.state).name


def cancel_job(target: Target, name: str) -> None:
    """Requests cancellation of a job unless it already ended (idempotent)."""
    job = get_job(target, name)
    if state_name(job) in catalog.TERMINAL_JOB_STATES:
        return
    try:
        if is_custom_job(name):
            client(aip.JobServiceClient, target).cancel_custom_job(name=name)
        else:
            client(aip.GenAiTuningServiceClient, target).cancel_tuning_job(name=name)
    except gexc.FailedPrecondition:
        pass  # it ended between our get and the cancel


def wait_for_job(
    target: Target,
    name: str,
    deadline_s: float,
    on_progress: Callable[[Any], None] | None = None,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 60.0,
) -> aip.TuningJob | aip.CustomJob:
    """Polls a job until it is terminal, with exponential backoff and a hard deadline.

    Args:
        target: Where the job lives.
        name: Job resource name.
        deadline_s: Seconds to wait at most.
        on_progress: Called with the job after every poll (progress display).
        initial_delay: First poll interval; doubles up to ``max_delay``.
        max_delay: Longest poll interval.

    Returns:
        The terminal job (any terminal state: check it with :func:`raise_for_job`).

    Raises:
        DeadlineExceeded: still not terminal at the deadline (the job keeps running).
    """

    def expired(job: aip.TuningJob | aip.CustomJob) -> Exception:
        return DeadlineExceeded(
            f"job {name} still {state_name(job)} after {deadline_s:.0f} s; it keeps running, "
            "and a re-run resumes waiting on the same job"
        )

    return poll(
        lambda: get_job(target, name),
        lambda job: state_name(job) in catalog.TERMINAL_JOB_STATES,
        deadline_s,
        expired,
        on_progress,
        initial_delay=initial_delay,
        max_delay=max_delay,
    )


def raise_for_job(job: aip.TuningJob | aip.CustomJob) -> None:
    """Raises :class:`JobFailed` unless the job SUCCEEDED."""
    state = state_name(job)
    if state != catalog.JOB_STATE_SUCCEEDED:
        raise JobFailed(job.name, state, job.error.message)


def cancel_and_wait(target: Target, name: str, deadline_s: float, **poll: float) -> str:
    """Cancels a job and waits until it is terminal (jobs cannot be deleted).

    Returns:
        The terminal state name. A job already gone (NotFound) counts as done.
    """
    try:
        cancel_job(target, name)
        return state_name(wait_for_job(target, name, deadline_s, **poll))  # type: ignore[arg-type]
    except gexc.NotFound:
        return "NOT_FOUND"


def _pick_adoptable(jobs: Iterable[Any], key: str) -> Any | None:
    best = None
    for job in jobs:
        if job.labels.get(LABEL_KEY) != key:
            continue
        if aip.JobState(job.state).name not in catalog.ADOPTABLE_JOB_STATES:
            continue
        if best is None or _created(job) > _created(best):
            best = job
    return best


def _created(job: Any) -> float:
    ts = job.create_time
    return ts.timestamp() if ts else 0.0
