"""The Pulumi dynamic resources tunestack's program creates for what pulumi-gcp lacks.

Each resource takes an ``Args`` dataclass (inputs may be Pulumi Outputs) and exposes its
outputs as attributes. Provider classes live in sibling modules and pickle by reference: their
module paths (``infra.providers.jobs`` etc.) are part of every stack's state, never move them.
Input names are a contract with the program (``infra/emit``): keep them stable.

Resources, and what create/delete do:
- :class:`ServiceAgents`: force the Vertex service agents into existence, wait until visible.
- :class:`BucketGrant`: one additive bucket role grant that retries until its member exists.
- :class:`TuningJob`: adopt-by-key or submit a managed tuning job; delete cancels.
- :class:`CustomTrainingJob`: the same with our trainer image as a Vertex CustomJob.
- :class:`TuningJobCompletion`: wait (bounded) for either job; outputs checkpoint URIs.
- :class:`TrainerImage`: Cloud Build of ``trainer_image/``, tag = content hash.
- :class:`ModelDeployment`: ``:deploy`` custom weights; records and deletes endpoint AND model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pulumi
from pulumi import Input, Output, ResourceOptions

from infra.providers.agents import BucketGrantProvider, ServiceAgentsProvider
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.image import TrainerImageProvider
from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider, TuningJobProvider


def _props(args: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
    # Outputs must be present (as None) at registration to be readable as attributes.
    # Not dataclasses.asdict: it deep-copies values, and Outputs must pass through as they are.
    props = {f.name: getattr(args, f.name) for f in fields(args)}
    # An output that is also an input (ServiceAgents.project_number) keeps the input's value.
    props.update({name: None for name in outputs if name not in props})
    return props


@dataclass
class ServiceAgentsArgs:
    """Inputs of :class:`ServiceAgents`.

    Attributes:
        project: Project id.
        project_number: Project number; looked up (Resource Manager) when None.
        required: Agent domains whose absence at the deadline fails the update. Default: only
            ``gcp-sa-aiplatform``; ``gcp-sa-vertex-moss-ft`` is created by Google on the first
            open-model tuning job, so it is waited for but not required.
        deadline_seconds: How long to wait for the agents to become visible. Default 600.
        api_endpoint: Base URL replacing every Google API host (tests). Default: the real ones.
    """

    project: Input[str]
    project_number: Input[str] | None = None
    required: list[str] = field(default_factory=lambda: ["gcp-sa-aiplatform"])
    deadline_seconds: Input[float] = 600
    api_endpoint: str | None = None


class ServiceAgents(pulumi.dynamic.Resource, module="tunestack", name="ServiceAgents"):
    """Ensures ``gcp-sa-aiplatform`` and ``gcp-sa-vertex-moss-ft`` exist before grants."""

    project_number: Output[str]
    members: Output[list[str]]
    aiplatform_member: Output[str]
    moss_ft_member: Output[str]
    visible: Output[list[str]]
    missing: Output[list[str]]

    def __init__(self, name: str, args: ServiceAgentsArgs, opts: ResourceOptions | None = None):
        super().__init__(
            ServiceAgentsProvider(), name, _props(args, ServiceAgentsProvider.OUTPUTS), opts
        )


@dataclass
class BucketGrantArgs:
    """Inputs of :class:`BucketGrant`.

    Attributes:
        bucket: Bucket name.
        member: IAM member (``serviceAccount:service-N@gcp-sa-...``); allUsers and
            allAuthenticatedUsers are refused.
        role: Role. Default ``roles/storage.objectUser``.
        project: Project id for the storage client. Default: ADC's.
        deadline_seconds: How long "does not exist" / propagation errors are retried.
            Default 600.
        storage_endpoint: Cloud Storage endpoint override (tests/emulator). Default: the real one.
    """

    bucket: Input[str]
    member: Input[str]
    role: Input[str] = "roles/storage.objectUser"
    project: Input[str] | None = None
    deadline_seconds: Input[float] = 600
    storage_endpoint: str | None = None


class BucketGrant(pulumi.dynamic.Resource, module="tunestack", name="BucketGrant"):
    """Additive bucket IAM member that retries while a service agent is being created."""

    attempts: Output[int]

    def __init__(self, name: str, args: BucketGrantArgs, opts: ResourceOptions | None = None):
        super().__init__(
            BucketGrantProvider(), name, _props(args, BucketGrantProvider.OUTPUTS), opts
        )


@dataclass
class TuningJobArgs:
    """Inputs of :class:`TuningJob` (every one but ``labels`` replaces the job when changed).

    Attributes:
        project: Project id.
        location: Tuning region.
        base_model: Catalog model id.
        tuning_mode: ``FULL`` or ``PEFT_ADAPTER``.
        train_dataset_uri: gs:// JSONL.
        output_uri: gs:// prefix for checkpoints.
        epochs: Epochs. Default 1.
        custom_base_model: gs:// custom weights. Default none.
        learning_rate: Absolute learning rate. Default none.
        learning_rate_multiplier: Multiplier of the recommended rate. Default none.
        adapter_size: LoRA rank (PEFT_ADAPTER). Default none.
        validation_dataset_uri: gs:// JSONL. Default none.
        display_name: Tuned model display name. Default: Vertex's.
        labels: Extra labels (updated in place: recorded, not a new job). Default none.
        dataset_identity: The dataset objects' identity (generation/md5 of train and
            validation); part of the job key so new data under the same URI is a new job.
        api_endpoint: ``http://127.0.0.1:PORT`` for the local API; None for Vertex AI.
    """

    project: Input[str]
    location: Input[str]
    base_model: Input[str]
    tuning_mode: Input[str]
    train_dataset_uri: Input[str]
    output_uri: Input[str]
    epochs: Input[int] = 1
    custom_base_model: Input[str] | None = None
    learning_rate: Input[float] | None = None
    learning_rate_multiplier: Input[float] | None = None
    adapter_size: Input[int] | None = None
    validation_dataset_uri: Input[str] | None = None
    display_name: Input[str] | None = None
    labels: Input[dict[str, str]] = field(default_factory=dict)
    dataset_identity: Input[str] | None = None
    api_endpoint: str | None = None


class TuningJob(pulumi.dynamic.Resource, module="tunestack", name="TuningJob"):
    """A managed open-model tuning job; create adopts or submits and returns at once."""

    job_name: Output[str]
    key: Output[str]
    adopted: Output[bool]
    state: Output[str]

    def __init__(self, name: str, args: TuningJobArgs, opts: ResourceOptions | None = None):
        super().__init__(TuningJobProvider(), name, _props(args, TuningJobProvider.OUTPUTS), opts)


@dataclass
class CustomTrainingJobArgs(TuningJobArgs):
    """Inputs of :class:`CustomTrainingJob`: the tuning inputs plus the container.

    Attributes:
        image_uri: Trainer image (from :class:`TrainerImage`).
        replicas: Worker replicas; > 1 runs torchrun across a chief and a worker pool.
        machine_type: Machine per replica. Default a2-highgpu-1g.
    """

    image_uri: Input[str] = ""
    replicas: Input[int] = 1
    machine_type: Input[str] | None = None


class CustomTrainingJob(pulumi.dynamic.Resource, module="tunestack", name="CustomTrainingJob"):
    """A Vertex CustomJob running our trainer image, same adopt/cancel pattern."""

    job_name: Output[str]
    key: Output[str]
    adopted: Output[bool]
    state: Output[str]

    def __init__(self, name: str, args: CustomTrainingJobArgs, opts: ResourceOptions | None = None):
        super().__init__(
            CustomTrainingJobProvider(), name, _props(args, CustomTrainingJobProvider.OUTPUTS), opts
        )


@dataclass
class TuningJobCompletionArgs:
    """Inputs of :class:`TuningJobCompletion`.

    Attributes:
        project: Project id.
        location: Region.
        job_name: The job resource name (``TuningJob.job_name`` or ``CustomTrainingJob.job_name``).
        output_uri: The job's output URI (checkpoints are listed under it).
        deadline_seconds: Longest wait. Default 172800 (48 h); a re-run keeps waiting.
        api_endpoint: As for the job.
    """

    project: Input[str]
    location: Input[str]
    job_name: Input[str]
    output_uri: Input[str]
    deadline_seconds: Input[float] = 48 * 3600
    api_endpoint: str | None = None


class TuningJobCompletion(pulumi.dynamic.Resource, module="tunestack", name="TuningJobCompletion"):
    """Waits for a job; fails unless it SUCCEEDED; outputs final and per-epoch checkpoints."""

    state: Output[str]
    final_checkpoint_uri: Output[str]
    checkpoint_uris: Output[list[str]]
    tuned_model: Output[str]

    def __init__(
        self, name: str, args: TuningJobCompletionArgs, opts: ResourceOptions | None = None
    ):
        super().__init__(
            JobCompletionProvider(), name, _props(args, JobCompletionProvider.OUTPUTS), opts
        )


@dataclass
class TrainerImageArgs:
    """Inputs of :class:`TrainerImage`.

    Attributes:
        project: Project id.
        location: Artifact Registry / Cloud Build region.
        repository: Artifact Registry repository id (the program creates it).
        context_dir: Build context (``trainer_image/``), hashed into the tag.
        image_name: Image name in the repository. Default ``trainer``.
        source_bucket: Bucket the context tarball goes to. Default ``{project}_cloudbuild``.
        deadline_seconds: Longest wait for the build. Default 3600.
        api_endpoint: Cloud Build endpoint override (tests). Default: the real one.
        storage_endpoint: Cloud Storage endpoint override (tests). Default: the real one.
    """

    project: Input[str]
    location: Input[str]
    repository: Input[str]
    context_dir: Input[str]
    image_name: Input[str] = "trainer"
    source_bucket: Input[str] | None = None
    deadline_seconds: Input[float] = 3600
    api_endpoint: str | None = None
    storage_endpoint: str | None = None


class TrainerImage(pulumi.dynamic.Resource, module="tunestack", name="TrainerImage"):
    """Our trainer image, built by Cloud Build only when the context's hash is new."""

    image_uri: Output[str]
    tag: Output[str]
    build_id: Output[str]
    built: Output[bool]

    def __init__(self, name: str, args: TrainerImageArgs, opts: ResourceOptions | None = None):
        super().__init__(
            TrainerImageProvider(), name, _props(args, TrainerImageProvider.OUTPUTS), opts
        )


@dataclass
class ModelDeploymentArgs:
    """Inputs of :class:`ModelDeployment` (all but the deadline replace the deployment).

    Attributes:
        project: Project id.
        location: Region.
        gcs_uri: gs:// Hugging Face weights (a job's ``.../checkpoints/final``).
        machine_type: G2 machine type.
        endpoint_display_name: Endpoint display name (a key tag is appended).
        model_display_name: Model display name (a key tag is appended).
        accelerator_type: Default: the machine's (NVIDIA_L4).
        accelerator_count: Default: the machine's.
        min_replicas: Default 1.
        max_replicas: Default 1.
        deadline_seconds: Longest wait for the deployment. Default 7200 (the SDK's 2 h).
        api_endpoint: ``http://127.0.0.1:PORT`` for the local API; None for Vertex AI.
    """

    project: Input[str]
    location: Input[str]
    gcs_uri: Input[str]
    machine_type: Input[str]
    endpoint_display_name: Input[str]
    model_display_name: Input[str]
    accelerator_type: Input[str] | None = None
    accelerator_count: Input[int] | None = None
    min_replicas: Input[int] = 1
    max_replicas: Input[int] = 1
    deadline_seconds: Input[float] = 7200
    api_endpoint: str | None = None


class ModelDeployment(pulumi.dynamic.Resource, module="tunestack", name="ModelDeployment"):
    """An endpoint serving custom weights, with its model; delete removes both."""

    endpoint: Output[str]
    model: Output[str]
    key: Output[str]
    adopted: Output[bool]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: ResourceOptions | None = None):
        super().__init__(
            ModelDeploymentProvider(), name, _props(args, ModelDeploymentProvider.OUTPUTS), opts
        )
