"""Inputs of every tunestack dynamic resource, declared once: the ``Args`` dataclasses.

Each field says whether changing it replaces the cloud object (:func:`replaces`, terraform's
ForceNew) or is recorded in place (:func:`updates`). The providers' input lists, replacing
inputs and required inputs (:func:`input_names`, :func:`replacing`, :func:`required`), the
plan's ``provider_inputs`` and the docs all read these declarations. Input names are a
contract with the program (``infra/emit``) and with every stack's state: keep them stable.

Pure data (Pulumi's ``Input`` only as a type), so the plan can build these without Pulumi.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pulumi import Input

_REPLACE = "replace"
_REQUIRED = "required"
_REDEPLOY = "redeploy"


def replaces(default: Any = MISSING, *, factory: Any = MISSING, required: bool = False) -> Any:
    """A field whose change needs a new cloud object (required when it has no default)."""
    return field(
        default=default, default_factory=factory, metadata={_REPLACE: True, _REQUIRED: required}
    )


def updates(default: Any = MISSING, *, factory: Any = MISSING, required: bool = False) -> Any:
    """A field whose change is applied in place (required when it has no default)."""
    if required and default is MISSING and factory is MISSING:
        default = ""  # a default only to keep dataclass field order; required() still lists it
    return field(
        default=default, default_factory=factory, metadata={_REPLACE: False, _REQUIRED: required}
    )


def redeploys(default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A field whose change updates the resource in place by redeploying its model blue/green
    (a new deployed model on the same endpoint takes the traffic, then the old one goes): an
    update to Pulumi, never a replacement of the endpoint."""
    return field(
        default=default, default_factory=factory, metadata={_REPLACE: False, _REDEPLOY: True}
    )


def redeploying(args: type) -> frozenset[str]:
    """The inputs of an ``Args`` type whose change redeploys the model (see :func:`redeploys`)."""
    return frozenset(f.name for f in fields(args) if f.metadata.get(_REDEPLOY, False))


def change_of(args: type, changed: list[str] | tuple[str, ...]) -> str:
    """What changing ``changed`` inputs does to a resource of ``args``: ``replace`` when any of
    them replaces, else ``update`` (``none`` when nothing changed). The plan's diff and the
    providers' ``diff`` both come down to this declaration."""
    if not changed:
        return "none"
    return "replace" if set(changed) & replacing(args) else "update"


def input_names(args: type) -> tuple[str, ...]:
    """Every input of an ``Args`` type, in declaration order."""
    return tuple(f.name for f in fields(args))


def replacing(args: type) -> frozenset[str]:
    """The inputs of an ``Args`` type whose change replaces the resource."""
    return frozenset(f.name for f in fields(args) if f.metadata.get(_REPLACE, True))


def required(args: type) -> tuple[str, ...]:
    """Inputs that must be set: those without a default, or declared required."""
    return tuple(f.name for f in fields(args) if _has_no_default(f) or f.metadata.get(_REQUIRED))


def as_inputs(args: Any) -> dict[str, Any]:
    """The inputs of an ``Args`` instance as a dict (values as they are: Outputs pass through,
    unlike ``dataclasses.asdict``, which deep-copies)."""
    return {f.name: getattr(args, f.name) for f in fields(args)}


def _has_no_default(f: Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def changed_inputs(
    names: tuple[str, ...] | list[str],
    old: dict[str, Any],
    new: dict[str, Any],
    skip: tuple[str, ...] | frozenset[str] = (),
) -> list[str]:
    """The inputs among ``names`` whose values differ between ``old`` and ``new``: what the
    providers' ``diff`` and the plan's diff both compare (numbers as the wire sends them:
    ``2`` and ``2.0`` are the same input)."""
    return [k for k in names if k not in skip and _wire(old.get(k)) != _wire(new.get(k))]


def _wire(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(v) for v in value]
    return value


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

    project: Input[str] = replaces()
    project_number: Input[str] | None = replaces(None)
    required: list[str] = updates(factory=lambda: ["gcp-sa-aiplatform"])
    deadline_seconds: Input[float] = updates(600)
    api_endpoint: str | None = replaces(None)


@dataclass
class TuningJobArgs:
    """Inputs of :class:`TuningJob` .

    Attributes:
        project: Project id.
        location: Tuning region.
        base_model: Catalog model id.
        tuning_mode: ``FULL`` or ``PEFT_ADAPTER``.
        train_dataset_uri: gs:// JSONL.
        output_uri: gs:// prefix; each job version writes under ``{output_uri}/{run key}``.
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

    project: Input[str] = replaces()
    location: Input[str] = replaces()
    base_model: Input[str] = replaces()
    tuning_mode: Input[str] = replaces()
    train_dataset_uri: Input[str] = replaces()
    output_uri: Input[str] = replaces()
    epochs: Input[int] = replaces(1)
    custom_base_model: Input[str] | None = replaces(None)
    learning_rate: Input[float] | None = replaces(None)
    learning_rate_multiplier: Input[float] | None = replaces(None)
    adapter_size: Input[int] | None = replaces(None)
    validation_dataset_uri: Input[str] | None = replaces(None)
    display_name: Input[str] | None = replaces(None)
    labels: Input[dict[str, str]] = updates(factory=dict)
    dataset_identity: Input[str] | None = replaces(None)
    api_endpoint: str | None = replaces(None)


@dataclass
class CustomTrainingJobArgs(TuningJobArgs):
    """Inputs of :class:`CustomTrainingJob`: the tuning inputs plus the container.

    Attributes:
        image_uri: Trainer image (from :class:`TrainerImage`).
        replicas: Worker replicas; > 1 runs torchrun across a chief and a worker pool.
        machine_type: Machine per replica. Default a2-highgpu-1g.
    """

    image_uri: Input[str] = replaces("", required=True)
    replicas: Input[int] = replaces(1)
    machine_type: Input[str] | None = replaces(None)


@dataclass
class TuningJobCompletionArgs:
    """Inputs of :class:`TuningJobCompletion`.

    Attributes:
        project: Project id.
        location: Region.
        job_name: The job resource name (``TuningJob.job_name`` or ``CustomTrainingJob.job_name``).
        output_uri: The job version's run URI (``{output_uri}/{run key}``: checkpoints are
            listed under it).
        deadline_seconds: Longest wait. Default 172800 (48 h); a re-run keeps waiting.
        api_endpoint: As for the job.
    """

    project: Input[str] = replaces()
    location: Input[str] = replaces()
    job_name: Input[str] = replaces()
    output_uri: Input[str] = replaces()
    deadline_seconds: Input[float] = updates(48 * 3600)
    api_endpoint: str | None = replaces(None)


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

    project: Input[str] = replaces()
    location: Input[str] = replaces()
    repository: Input[str] = replaces()
    context_dir: Input[str] = updates()
    image_name: Input[str] = replaces("trainer")
    source_bucket: Input[str] | None = updates(None)
    deadline_seconds: Input[float] = updates(3600)
    api_endpoint: str | None = updates(None)
    storage_endpoint: str | None = updates(None)


@dataclass
class ModelDeploymentArgs:
    """Inputs of :class:`ModelDeployment` .

    The endpoint is stable: only what names it (project, location, endpoint name, API) replaces
    it. A change of the weights, machine, accelerators or model name :func:`redeploys`: an
    update that swaps the model behind the same endpoint (blue/green); replicas change the
    deployed model in place; ``canary_percent`` sets the traffic split between the new and the
    previous model.

    Attributes:
        project: Project id.
        location: Region.
        gcs_uri: gs:// Hugging Face weights (a job's ``.../checkpoints/final``).
        machine_type: G2 machine type.
        endpoint_display_name: Endpoint display name (a key tag is appended).
        model_display_name: Model display name (a key tag is appended).
        accelerator_type: Default: the machine's (NVIDIA_L4).
        accelerator_count: Default: the machine's.
        min_replicas: Default 1 (autoscaling: changed in place, no redeploy).
        max_replicas: Default 1 (changed in place, no redeploy).
        canary_percent: While set, a new model gets this share of the traffic and the previous
            one stays deployed with the rest. Default none.
        deadline_seconds: Longest wait for the deployment. Default 7200 (the SDK's 2 h).
        api_endpoint: ``http://127.0.0.1:PORT`` for the local API; None for Vertex AI.
    """

    project: Input[str] = replaces()
    location: Input[str] = replaces()
    gcs_uri: Input[str] = redeploys()
    machine_type: Input[str] = redeploys()
    endpoint_display_name: Input[str] = replaces()
    model_display_name: Input[str] = redeploys()
    accelerator_type: Input[str] | None = redeploys(None)
    accelerator_count: Input[int] | None = redeploys(None)
    min_replicas: Input[int] = updates(1)
    max_replicas: Input[int] = updates(1)
    canary_percent: Input[int] | None = updates(None)
    deadline_seconds: Input[float] = updates(7200)
    api_endpoint: str | None = replaces(None)
