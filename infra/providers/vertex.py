"""The one client layer that talks to Vertex AI, for the Pulumi providers and `up --local`.

Every function takes a :class:`Target` (which project/region, and whether the API is real
Vertex AI or the local Vertex-compatible server) plus plain inputs, builds a Google GAPIC
client inside the call, and returns plain values or proto-plus messages. Nothing here keeps a
client, channel or credential between calls: Pulumi pickles the providers that call this
module, and credentials must be resolved at call time (ADC for Vertex, the local server's
bearer token file for the local API).

Why keys: ``tuningJobs.create`` and ``customJobs.create`` take no request id, so a retry after
a crash would bill a second job. Every job carries a deterministic label ``tunestack-key``
(a hash of its normalised inputs and the dataset's object identity); ``ensure_*`` lists jobs
with that label and adopts a live or succeeded one before submitting. Deployments cannot carry
labels through ``:deploy``, so the key travels in the endpoint and model display names.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import google.auth
import google.auth.credentials
import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1beta1 as aip
from google.cloud import storage  # type: ignore[attr-defined]
from google.longrunning import operations_pb2

from infra import catalog

#: Label carrying the deterministic key of a job (label keys: lowercase, digits, ``_``, ``-``).
LABEL_KEY = "tunestack-key"
#: Label marking what tunestack created.
MANAGED_LABEL = "managed-by"
MANAGED_VALUE = "tunestack"
#: Length of the hex key (label values allow 63 characters; 40 hex = 160 bits).
KEY_LENGTH = 40
#: How much of the key goes into deployment display names (64 bits: no practical collisions).
DISPLAY_KEY_LENGTH = 16

#: Vertex job states (``JobState`` enum names).
STATE_SUCCEEDED = "JOB_STATE_SUCCEEDED"
STATE_CANCELLED = "JOB_STATE_CANCELLED"
#: States after which a job never changes again. The SDK's ``has_ended`` forgets EXPIRED and
#: PARTIALLY_SUCCEEDED; we do not.
TERMINAL_STATES = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
#: States in which an existing job with our key is adopted instead of submitting a new one.
ADOPTABLE_STATES = frozenset(
    {
        "JOB_STATE_QUEUED",
        "JOB_STATE_PENDING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_UPDATING",
        "JOB_STATE_PAUSED",
        "JOB_STATE_SUCCEEDED",
    }
)

#: Input fields that do not change what a job computes, so they stay out of its key.
NON_KEY_FIELDS = frozenset({"labels", "api_endpoint", "deadline_seconds"})

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


class VertexError(RuntimeError):
    """A Vertex call or wait failed in a way the user must act on."""


class JobFailed(VertexError):
    """A job reached a terminal state other than SUCCEEDED.

    Attributes:
        name: Job resource name.
        state: Terminal state name (``JOB_STATE_*``).
        error_message: The job's own error message (``job.error.message``), may be empty.
    """

    def __init__(self, name: str, state: str, error_message: str) -> None:
        self.name = name
        self.state = state
        self.error_message = error_message
        detail = f": {error_message}" if error_message else ""
        super().__init__(f"job {name} ended in {state}{detail}")


class DeadlineExceeded(VertexError):
    """A bounded wait ran out; the remote work continues and a re-run resumes waiting."""


# --------------------------------------------------------------------------------------------
# Target and credentials


def tunestack_home() -> Path:
    """Returns ``$TUNESTACK_HOME`` (default ``~/.tunestack``)."""
    return Path(os.environ.get("TUNESTACK_HOME") or Path.home() / ".tunestack")


class LocalTokenCredentials(google.auth.credentials.Credentials):
    """google-auth credentials carrying the local API's bearer token.

    The token is read from ``$TUNESTACK_HOME/local/token`` when the object is built (inside
    each call) and re-read on refresh, so a server restart with a new token is picked up.
    """

    def __init__(self, token_path: Path | None = None) -> None:
        super().__init__()
        self._token_path = token_path or tunestack_home() / "local" / "token"
        self.token = self._read()

    def _read(self) -> str:
        try:
            return self._token_path.read_text().strip()
        except FileNotFoundError as e:
            raise VertexError(
                f"no local API token at {self._token_path}: start it with `tunestack serve`"
            ) from e

    def refresh(self, request: Any) -> None:  # noqa: ARG002 - google-auth interface
        self.token = self._read()

    @property
    def expired(self) -> bool:
        return False

    @property
    def valid(self) -> bool:
        return bool(self.token)


@dataclass(frozen=True)
class Target:
    """Where Vertex AI calls go.

    Attributes:
        project: GCP project id.
        location: Region (``us-central1``...).
        api_endpoint: None for real Vertex AI (``{location}-aiplatform.googleapis.com``, gRPC,
            ADC credentials at call time), or ``http://127.0.0.1:PORT`` for the local API
            (REST transport, bearer token from ``$TUNESTACK_HOME/local/token``).
        storage_endpoint: None for real Cloud Storage; the emulator URL for the local API
            (``Target.local()`` fills it from ``api.json``).
    """

    project: str
    location: str
    api_endpoint: str | None = None
    storage_endpoint: str | None = None

    @classmethod
    def local(cls, project: str = "local-project", location: str = "us-central1") -> Target:
        """The local API, as found in ``$TUNESTACK_HOME/local/api.json``.

        Raises:
            VertexError: the local API has not been started.
        """
        path = tunestack_home() / "local" / "api.json"
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise VertexError(f"no local API at {path}: start it with `tunestack serve`") from e
        return cls(project, location, info["api_url"], info.get("storage_url"))

    @property
    def is_local(self) -> bool:
        return self.api_endpoint is not None

    @property
    def parent(self) -> str:
        """``projects/{project}/locations/{location}``."""
        return f"projects/{self.project}/locations/{self.location}"

    def resolved_storage_endpoint(self) -> str | None:
        """The storage emulator URL for a local target (from api.json when not set)."""
        if not self.is_local or self.storage_endpoint:
            return self.storage_endpoint
        path = tunestack_home() / "local" / "api.json"
        try:
            return json.loads(path.read_text()).get("storage_url")
        except FileNotFoundError:
            return None


C = TypeVar("C")


def client(cls: type[C], target: Target) -> C:
    """Builds a GAPIC client of ``cls`` for ``target`` (call inside each function; never keep)."""
    if target.api_endpoint:
        return cls(  # type: ignore[call-arg]
            transport="rest",
            client_options=ClientOptions(api_endpoint=target.api_endpoint),
            credentials=LocalTokenCredentials(),
        )
    credentials, _ = google.auth.default()
    return cls(  # type: ignore[call-arg]
        client_options=ClientOptions(api_endpoint=f"{target.location}-aiplatform.googleapis.com"),
        credentials=credentials,
    )


# --------------------------------------------------------------------------------------------
# Keys


def job_key(inputs: Mapping[str, Any]) -> str:
    """Deterministic key of a job or deployment from its inputs.

    Normalisation: ``None`` values and ``NON_KEY_FIELDS`` (labels, endpoint, deadlines) are
    dropped, keys sorted, integral floats become ints (Pulumi's wire format sends every number
    as a float, so ``2`` and ``2.0`` must hash alike). Include the dataset's object identity
    (generation/hash) in ``inputs`` so new data under the same URI makes a new job.

    Args:
        inputs: Job inputs (snake_case names, as the providers receive them).

    Returns:
        40 lowercase hex characters, usable as a label value.
    """
    normal = _normalise({k: v for k, v in inputs.items() if k not in NON_KEY_FIELDS})
    blob = json.dumps(normal, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]


def _normalise(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            str(k): _normalise(v)
            for k, v in value.items()
            if v is not None and not str(k).startswith("__")
        }
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def key_labels(key: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """User labels plus the key and managed-by labels (ours win on conflict)."""
    merged = dict(labels or {})
    merged[LABEL_KEY] = key
    merged[MANAGED_LABEL] = MANAGED_VALUE
    return merged


def label_filter(key: str) -> str:
    """The list ``filter`` selecting jobs with our key label."""
    return f'labels.{LABEL_KEY}="{key}"'


# --------------------------------------------------------------------------------------------
# Tuning jobs (managed engine)


def build_tuning_job(inputs: Mapping[str, Any], key: str) -> aip.TuningJob:
    """The ``TuningJob`` message for the provider's inputs (pure).

    Args:
        inputs: ``base_model``, ``custom_base_model``, ``tuning_mode`` (FULL|PEFT_ADAPTER),
            ``epochs``, ``learning_rate`` | ``learning_rate_multiplier``, ``adapter_size``,
            ``train_dataset_uri``, ``validation_dataset_uri``, ``output_uri``,
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
        output_uri=inputs["output_uri"],
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


# --------------------------------------------------------------------------------------------
# Custom jobs (engine trainer_image)


def trainer_args(inputs: Mapping[str, Any]) -> list[str]:
    """Command-line flags of ``python -m trainer`` for a job's inputs (pure)."""
    args = [
        "--base-model", inputs.get("custom_base_model") or inputs["base_model"],
        "--train-data", inputs["train_dataset_uri"],
        "--output-dir", inputs["output_uri"],
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


# --------------------------------------------------------------------------------------------
# Both kinds of job, by resource name


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
    if state_name(job) in TERMINAL_STATES:
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
    end = time.monotonic() + deadline_s
    delay = initial_delay
    while True:
        job = get_job(target, name)
        if on_progress is not None:
            on_progress(job)
        state = state_name(job)
        if state in TERMINAL_STATES:
            return job
        left = end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"job {name} still {state} after {deadline_s:.0f} s; it keeps running, and a "
                "re-run resumes waiting on the same job"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def raise_for_job(job: aip.TuningJob | aip.CustomJob) -> None:
    """Raises :class:`JobFailed` unless the job SUCCEEDED."""
    state = state_name(job)
    if state != STATE_SUCCEEDED:
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


# --------------------------------------------------------------------------------------------
# Checkpoints


def checkpoints_prefix(output_uri: str) -> str:
    """``{output_uri}/postprocess/node-0/checkpoints`` (the Vertex artifact layout)."""
    return output_uri.rstrip("/") + "/postprocess/node-0/checkpoints"


def checkpoint_uris(target: Target, output_uri: str) -> tuple[str, list[str]]:
    """The final checkpoint URI and the per-epoch checkpoint URIs of a succeeded job.

    Per-epoch checkpoints are listed from Cloud Storage (the emulator for a local target) and
    ordered by step number (numbers are ordered but not consecutive).

    Returns:
        ``(final_uri, [checkpoint-N uris...])``; the list is empty when storage can't be listed.
    """
    prefix = checkpoints_prefix(output_uri)
    final = prefix + "/final"
    bucket, _, path = prefix.removeprefix("gs://").partition("/")
    try:
        names = _list_prefixes(target, bucket, path + "/")
    except (gexc.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError):
        # Listing is a convenience; the final checkpoint's URI is known without it.
        return final, []
    steps = []
    for name in names:
        leaf = name.rstrip("/").rsplit("/", 1)[-1]
        if leaf.startswith("checkpoint-") and leaf.removeprefix("checkpoint-").isdigit():
            steps.append(int(leaf.removeprefix("checkpoint-")))
    return final, [f"{prefix}/checkpoint-{n}" for n in sorted(steps)]


def storage_client(project: str | None, storage_endpoint: str | None) -> storage.Client:
    """Cloud Storage client with ADC, or for an endpoint override (the local emulator, tests)
    an anonymous one: the emulator takes no credentials."""
    if storage_endpoint:
        return storage.Client(
            project=project or "local",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": storage_endpoint},
        )
    return storage.Client(project=project)


def _list_prefixes(target: Target, bucket: str, prefix: str) -> list[str]:
    gcs = storage_client(target.project, target.resolved_storage_endpoint())
    it = gcs.list_blobs(bucket, prefix=prefix, delimiter="/")
    list(it)  # prefixes fill in only once pages are consumed
    return sorted(it.prefixes)


# --------------------------------------------------------------------------------------------
# Deployments (Model Garden :deploy of custom weights)


def deploy_display_names(
    key: str, endpoint_display_name: str, model_display_name: str
) -> tuple[str, str]:
    """Display names carrying the deployment key, so a crash mid-deploy adopts (pure)."""
    tag = f" [ts-{key[:DISPLAY_KEY_LENGTH]}]"
    return endpoint_display_name[: 128 - len(tag)] + tag, model_display_name[: 128 - len(tag)] + tag


def deployment_key(inputs: Mapping[str, Any]) -> str:
    """Key of a deployment: its weights, machine and names (not deadlines or endpoints)."""
    return job_key(inputs)


def build_deploy_request(
    target: Target,
    gcs_uri: str,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    min_replicas: int,
    max_replicas: int,
    endpoint_display_name: str,
    model_display_name: str,
    key: str,
) -> aip.DeployRequest:
    """The ``:deploy`` request for custom HF weights (pure)."""
    endpoint_name, model_name = deploy_display_names(key, endpoint_display_name, model_display_name)
    return aip.DeployRequest(
        destination=target.parent,
        custom_model=aip.DeployRequest.CustomModel(gcs_uri=gcs_uri),
        model_config=aip.DeployRequest.ModelConfig(model_display_name=model_name),
        endpoint_config=aip.DeployRequest.EndpointConfig(endpoint_display_name=endpoint_name),
        deploy_config=aip.DeployRequest.DeployConfig(
            dedicated_resources=aip.DedicatedResources(
                machine_spec=aip.MachineSpec(
                    machine_type=machine_type,
                    accelerator_type=accelerator_type,
                    accelerator_count=int(accelerator_count),
                ),
                min_replica_count=int(min_replicas),
                max_replica_count=int(max_replicas),
            )
        ),
    )


def deploy(
    target: Target,
    gcs_uri: str,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    min_replicas: int,
    max_replicas: int,
    endpoint_display_name: str,
    model_display_name: str,
    key: str,
) -> str:
    """Starts ``:deploy`` of custom weights; returns the long-running operation name.

    Call :func:`find_deployment` first; :func:`ensure_deployment` does both.
    """
    request = build_deploy_request(
        target, gcs_uri, machine_type, accelerator_type, accelerator_count,
        min_replicas, max_replicas, endpoint_display_name, model_display_name, key,
    )  # fmt: skip
    svc = client(aip.ModelGardenServiceClient, target)
    # The future's raw operation gives the name without blocking; we poll it ourselves with a
    # deadline, and a re-run finds the deployment by key instead of by operation.
    return svc.deploy(request=request).operation.name


def wait_deploy(
    target: Target,
    operation_name: str,
    deadline_s: float,
    on_progress: Callable[[operations_pb2.Operation], None] | None = None,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 60.0,
) -> tuple[str, str]:
    """Waits for a ``:deploy`` operation; returns ``(endpoint, model)`` resource names.

    Raises:
        VertexError: the operation failed (its error message).
        DeadlineExceeded: not done by the deadline (it keeps running; a re-run adopts it).
    """
    op = wait_operation(
        target, operation_name, deadline_s, on_progress,
        initial_delay=initial_delay, max_delay=max_delay, what="deployment",
    )  # fmt: skip
    response = aip.DeployResponse.deserialize(op.response.value)
    return response.endpoint, _strip_version(response.model)


def find_deployment(target: Target, key: str) -> tuple[str, str | None] | None:
    """An endpoint (and its model, once deployed) whose display name carries ``key``.

    Returns:
        ``(endpoint, model or None while the model is still deploying)``, or None.
    """
    found = find_endpoints(target, key)
    return found[0] if found else None


def find_endpoints(target: Target, key: str) -> list[tuple[str, str | None]]:
    """Every endpoint whose display name carries ``key``, with its first deployed model."""
    tag = f"[ts-{key[:DISPLAY_KEY_LENGTH]}]"
    svc = client(aip.EndpointServiceClient, target)
    out: list[tuple[str, str | None]] = []
    for ep in svc.list_endpoints(request={"parent": target.parent}):
        if ep.display_name.endswith(tag):
            models = [_strip_version(d.model) for d in ep.deployed_models if d.model]
            out.append((ep.name, models[0] if models else None))
    return out


def find_models(target: Target, key: str) -> list[str]:
    """Models whose display name carries ``key`` (orphans of an interrupted deploy).

    Returns an empty list when the server cannot list models.
    """
    tag = f"[ts-{key[:DISPLAY_KEY_LENGTH]}]"
    svc = client(aip.ModelServiceClient, target)
    try:
        return [
            m.name
            for m in svc.list_models(request={"parent": target.parent})
            if m.display_name.endswith(tag)
        ]
    except (gexc.MethodNotImplemented, gexc.NotFound):
        return []


def wait_for_deployed_model(
    target: Target,
    endpoint: str,
    deadline_s: float,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 60.0,
) -> str:
    """Waits until an adopted endpoint has a deployed model; returns the model name.

    Raises:
        DeadlineExceeded: no model appeared in time.
        google.api_core.exceptions.NotFound: the endpoint went away.
    """
    svc = client(aip.EndpointServiceClient, target)
    end = time.monotonic() + deadline_s
    delay = initial_delay
    while True:
        ep = svc.get_endpoint(name=endpoint)
        models = [_strip_version(d.model) for d in ep.deployed_models if d.model]
        if models:
            return models[0]
        left = end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"endpoint {endpoint} has no deployed model after {deadline_s:.0f} s"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def ensure_deployment(
    target: Target,
    inputs: Mapping[str, Any],
    deadline_s: float,
    on_progress: Callable[[Any], None] | None = None,
    **poll: float,
) -> tuple[str, str, bool]:
    """Adopts the deployment with this input's key, or deploys; waits until serving.

    Args:
        target: Where to deploy.
        inputs: ``gcs_uri``, ``machine_type``, ``accelerator_type``, ``accelerator_count``,
            ``min_replicas``, ``max_replicas``, ``endpoint_display_name``,
            ``model_display_name``.
        deadline_s: Longest wait for the deployment.
        on_progress: Called with each polled operation.
        **poll: ``initial_delay`` / ``max_delay`` for polling.

    Returns:
        ``(endpoint, model, adopted)``.
    """
    key = deployment_key(inputs)
    found = find_deployment(target, key)
    if found is not None:
        endpoint, model = found
        if model is None:
            model = wait_for_deployed_model(target, endpoint, deadline_s, **poll)
        return endpoint, model, True
    op = deploy(
        target, inputs["gcs_uri"], inputs["machine_type"], inputs["accelerator_type"],
        int(inputs["accelerator_count"]), int(inputs["min_replicas"]), int(inputs["max_replicas"]),
        inputs["endpoint_display_name"], inputs["model_display_name"], key,
    )  # fmt: skip
    try:
        endpoint, model = wait_deploy(target, op, deadline_s, on_progress, **poll)
    except DeadlineExceeded:
        raise  # still deploying: a re-run adopts it by key
    except VertexError:
        # A failed deploy may leave an endpoint without a model (or a model without an
        # endpoint); remove what carries our key so the failure leaves nothing billed behind.
        delete_deployment_by_key(target, key, **poll)
        raise
    return endpoint, model, False


def delete_deployment_by_key(
    target: Target, key: str, deadline_s: float = 1800.0, **poll: float
) -> None:
    """Undeploys and deletes every endpoint and model whose display name carries ``key``."""
    for endpoint, model in find_endpoints(target, key):
        undeploy_and_delete(target, endpoint, model, deadline_s, **poll)
    for model in find_models(target, key):
        undeploy_and_delete(target, None, model, deadline_s, **poll)


def get_endpoint(target: Target, endpoint: str) -> aip.Endpoint | None:
    """The endpoint, or None when it does not exist."""
    try:
        return client(aip.EndpointServiceClient, target).get_endpoint(name=endpoint)
    except gexc.NotFound:
        return None


def model_exists(target: Target, model: str) -> bool:
    """Whether the model resource exists."""
    try:
        client(aip.ModelServiceClient, target).get_model(name=model)
        return True
    except gexc.NotFound:
        return False


def undeploy_and_delete(
    target: Target,
    endpoint: str | None,
    model: str | None,
    deadline_s: float = 1800.0,
    **poll: float,
) -> None:
    """Undeploys every model from the endpoint, deletes the endpoint, then the model.

    Idempotent: anything already gone is skipped. The model is deleted even when the
    endpoint is already gone (the SDK's endpoint delete leaves models behind).
    """
    if endpoint:
        eps = client(aip.EndpointServiceClient, target)
        try:
            ep = eps.get_endpoint(name=endpoint)
            for deployed in ep.deployed_models:
                op = eps.undeploy_model(
                    request=aip.UndeployModelRequest(
                        endpoint=endpoint, deployed_model_id=deployed.id
                    )
                ).operation
                _wait_if_operation(target, op, deadline_s, **poll)
            op = eps.delete_endpoint(name=endpoint).operation
            _wait_if_operation(target, op, deadline_s, **poll)
        except gexc.NotFound:
            pass
    if model:
        models = client(aip.ModelServiceClient, target)
        try:
            op = models.delete_model(name=model).operation
            _wait_if_operation(target, op, deadline_s, **poll)
        except gexc.NotFound:
            pass


# --------------------------------------------------------------------------------------------
# Operations


def wait_operation(
    target: Target,
    name: str,
    deadline_s: float,
    on_progress: Callable[[operations_pb2.Operation], None] | None = None,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 60.0,
    what: str = "operation",
) -> operations_pb2.Operation:
    """Polls a long-running operation until done (bounded deadline, exponential backoff).

    Raises:
        VertexError: the operation finished with an error (its message).
        DeadlineExceeded: not done by the deadline.
    """
    svc = client(aip.ModelGardenServiceClient, target)
    end = time.monotonic() + deadline_s
    delay = initial_delay
    while True:
        op = svc.get_operation(request=operations_pb2.GetOperationRequest(name=name))
        if on_progress is not None:
            on_progress(op)
        if op.done:
            if op.HasField("error") and op.error.code:
                raise VertexError(
                    f"{what} {name} failed: {op.error.message} (code {op.error.code})"
                )
            return op
        left = end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(
                f"{what} {name} not done after {deadline_s:.0f} s; it keeps running, and a "
                "re-run adopts it"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def _wait_if_operation(target: Target, op: Any, deadline_s: float, **poll: float) -> None:
    name = getattr(op, "name", "")
    if getattr(op, "done", True) and not name:
        return
    if op.done:
        if op.HasField("error") and op.error.code:
            raise VertexError(f"operation {name} failed: {op.error.message}")
        return
    wait_operation(target, name, deadline_s, **poll)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Helpers


def _pick_adoptable(jobs: Iterable[Any], key: str) -> Any | None:
    best = None
    for job in jobs:
        if job.labels.get(LABEL_KEY) != key:
            continue
        if aip.JobState(job.state).name not in ADOPTABLE_STATES:
            continue
        if best is None or _created(job) > _created(best):
            best = job
    return best


def _created(job: Any) -> float:
    ts = job.create_time
    return ts.timestamp() if ts else 0.0


def _strip_version(model: str) -> str:
    return model.split("@", 1)[0]
