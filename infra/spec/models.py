"""The spec language: pydantic models of a tunestack YAML spec (data only, no I/O).

Every model forbids unknown keys so that a typo in user YAML is an error, not a silently
ignored setting; every field's description is its user documentation and states its default.
``specs/schema.json`` is generated from :class:`Spec` (``tunestack schema``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infra import catalog

#: ``base_model`` completions in ``specs/schema.json`` (the checks, not the schema, reject
#: other ids, so that a typo gets "did you mean").
_MODEL_IDS = {"enum": list(catalog.MODELS)}

#: Most epochs of one tuning job (Vertex bills tokens x epochs; it keeps at most 10 checkpoints).
MAX_EPOCHS = 100
#: Largest absolute learning rate.
MAX_LEARNING_RATE = 1.0
#: Largest learning rate multiplier (of the model's recommended rate).
MAX_LEARNING_RATE_MULTIPLIER = 100.0
#: Most trainer replicas, endpoint replicas and accelerators per replica.
MAX_REPLICAS = 1000
#: Largest LoRA rank accepted by the shape check (the semantic check narrows it to Vertex's sizes).
MAX_ADAPTER_SIZE = 32
#: Most concurrent tuning jobs of one project.
MAX_CONCURRENT_TUNING_JOBS = 100


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors (typos must not pass), values frozen.

    Strict: an integer is an integer (``true`` or ``2.0`` are not), a string a string, so a
    YAML value never silently becomes another type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Project(SpecModel):
    """The GCP project everything is created in."""

    id: Annotated[
        str,
        Field(
            description="GCP project id (6-30 chars, lowercase letter first, letters/digits/hyphens, no trailing hyphen)."
        ),
    ]
    number: Annotated[
        str | None,
        Field(description="Project number. Optional: looked up at deploy time when absent."),
    ] = None
    region: Annotated[
        str,
        Field(
            description="Region of tuning jobs and endpoints; must be a Vertex open-model tuning region (us-central1, europe-west4, us-west1, us-east5, asia-southeast1)."
        ),
    ]
    labels: Annotated[
        dict[str, str], Field(description="Labels applied to everything created. Default: none.")
    ] = {}
    create: Annotated[
        bool,
        Field(
            description="Create the project (needs billing_account and one of folder_id/org_id). Default: false, adopt an existing project."
        ),
    ] = False
    billing_account: Annotated[
        str | None,
        Field(
            description="Billing account id (XXXXXX-XXXXXX-XXXXXX) linked when create is true. Default: none."
        ),
    ] = None
    folder_id: Annotated[
        str | None,
        Field(
            description="Folder the project is created in (create: true). Exactly one of folder_id/org_id. Default: none."
        ),
    ] = None
    org_id: Annotated[
        str | None,
        Field(
            description="Organization the project is created in (create: true). Exactly one of folder_id/org_id. Default: none."
        ),
    ] = None
    max_concurrent_tuning_jobs: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_CONCURRENT_TUNING_JOBS,
            description="How many tuning jobs may run at once (the project's concurrent tuning quota). Default: 1, jobs run one after another in spec order.",
        ),
    ] = 1


class Bucket(SpecModel):
    """A Cloud Storage bucket that holds datasets, images or checkpoints."""

    name: Annotated[
        str,
        Field(
            description="Globally unique bucket name (3-63 chars, [a-z0-9-_.], starts and ends alphanumeric)."
        ),
    ]
    location: Annotated[
        str | None, Field(description="Bucket location. Default: the project region, upper-cased.")
    ] = None
    create: Annotated[
        bool,
        Field(
            description="Create and manage the bucket. false: an existing bucket tunestack only grants IAM on. Default: true."
        ),
    ] = True
    protect: Annotated[
        bool,
        Field(
            description="Pulumi protect + retain_on_delete, so destroy keeps the data. Default: false."
        ),
    ] = False


class Dataset(SpecModel):
    """A JSONL dataset in one of the five Vertex formats."""

    name: Annotated[str, Field(description="Dataset name, referenced by tuning jobs.")]
    train: Annotated[
        str,
        Field(
            description="Training JSONL: a local path (relative to the spec file) or a gs:// URI."
        ),
    ]
    validation: Annotated[
        str | None, Field(description="Validation JSONL, local path or gs:// URI. Default: none.")
    ] = None
    bucket: Annotated[
        str | None,
        Field(
            description="Bucket (from buckets:) that local files are uploaded to. Required when train or validation is a local path."
        ),
    ] = None
    tokenizer: Annotated[
        str | None,
        Field(
            description="Tokenizer (local directory or cached Hugging Face id) for exact token counts. Default: none, tokens are estimated."
        ),
    ] = None


class TuningJob(SpecModel):
    """A supervised tuning job of an open model."""

    name: Annotated[str, Field(description="Job name (also the tuned model display name).")]
    base_model: Annotated[
        str,
        Field(
            description="Vertex model id from the catalog, e.g. meta/llama3_1@llama-3.1-8b-instruct (`tunestack models` lists them).",
            json_schema_extra=_MODEL_IDS,
        ),
    ]
    custom_base_model: Annotated[
        str | None,
        Field(
            description="gs:// URI of custom weights of the same architecture (or an earlier job's output) to start from. Default: none."
        ),
    ] = None
    tuning_mode: Annotated[
        Literal["PEFT_ADAPTER", "FULL"],
        Field(description="PEFT_ADAPTER (LoRA) or FULL; must be supported by the model."),
    ]
    epochs: Annotated[
        int, Field(ge=1, le=MAX_EPOCHS, description="Number of epochs (1-100). Default: 1.")
    ] = 1
    learning_rate_multiplier: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_LEARNING_RATE_MULTIPLIER,
            description="Multiplier of the model's recommended learning rate. Mutually exclusive with learning_rate. Default: Vertex's (1.0).",
        ),
    ] = None
    learning_rate: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_LEARNING_RATE,
            description="Absolute learning rate. Mutually exclusive with learning_rate_multiplier. Default: none.",
        ),
    ] = None
    adapter_size: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_ADAPTER_SIZE,
            description="LoRA rank for PEFT_ADAPTER: 1, 4, 8, 16 or 32. Not allowed with FULL. Default: Vertex's.",
        ),
    ] = None
    dataset: Annotated[str, Field(description="Name of a dataset from datasets:.")]
    output_uri: Annotated[
        str,
        Field(
            description="gs:// URI the checkpoints are written under (postprocess/node-0/checkpoints/)."
        ),
    ]
    engine: Annotated[
        Literal["managed", "trainer_image"],
        Field(
            description="managed: Vertex tuning service; trainer_image: our trainer container as a Vertex custom job. Default: managed."
        ),
    ] = "managed"
    labels: Annotated[
        dict[str, str],
        Field(description="Extra labels on the job (update in place). Default: none."),
    ] = {}
    replicas: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_REPLICAS,
            description="trainer_image engine only: worker replicas (torchrun nodes). Default: 1.",
        ),
    ] = 1
    machine_type: Annotated[
        str | None,
        Field(
            description="trainer_image engine only: custom job machine type, e.g. a3-highgpu-8g. Default: a2-highgpu-1g."
        ),
    ] = None


class Endpoint(SpecModel):
    """A serving endpoint for tuned (or custom) weights, deployed through Model Garden."""

    name: Annotated[str, Field(description="Endpoint display name.")]
    model: Annotated[
        str,
        Field(
            description="A tuning job name from tuning_jobs:, or gs:// URI of Hugging Face weights."
        ),
    ]
    checkpoint: Annotated[
        str,
        Field(
            description="Which checkpoint of the job to serve: final (the end of training), epoch-N (the checkpoint of epoch N: every epoch up to 10 epochs, else the 10 that Vertex keeps), best (lowest validation loss; needs a validation dataset) or checkpoint-STEP (a training step, resolved after training). Checked at validate time; only final applies to gs:// weights. Default: final."
        ),
    ] = "final"
    canary_percent: Annotated[
        int | None,
        Field(
            ge=1,
            le=99,
            description="Canary rollout: when the endpoint's model changes, keep the previous model deployed and send it 100-N% of the traffic, the new one N%, until this key is removed (then the new model takes 100% and the old one is undeployed). 1..99. Default: none, the new model takes 100% once it serves.",
        ),
    ] = None
    machine_type: Annotated[str, Field(description="G2 machine type, e.g. g2-standard-12.")]
    accelerator_type: Annotated[
        str, Field(description="Accelerator type; G2 machines carry NVIDIA_L4. Default: NVIDIA_L4.")
    ] = "NVIDIA_L4"
    accelerator_count: Annotated[
        int,
        Field(
            ge=1,
            description="Accelerators per replica; must match the machine type. Default: the machine type's (g2-standard-24: 2, g2-standard-48: 4, g2-standard-96: 8, other G2 machines: 1).",
        ),
    ] = 1
    min_replicas: Annotated[
        int, Field(ge=1, le=MAX_REPLICAS, description="Minimum replicas. Default: 1.")
    ] = 1
    max_replicas: Annotated[
        int,
        Field(ge=1, le=MAX_REPLICAS, description="Maximum replicas (>= min_replicas). Default: 1."),
    ] = 1
    base_model: Annotated[
        str | None,
        Field(
            description="Catalog id of the architecture, for gs:// weights (sizes the fit check). Default: the job's base model."
        ),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _machine_accelerators(cls, data: object) -> object:
        """``accelerator_count`` defaults from ``machine_type`` (the catalog's G2 table), so
        changing only the machine type (what ``endpoint-too-small`` suggests) stays valid."""
        if isinstance(data, dict) and "accelerator_count" not in data:
            machine = catalog.machine(str(data.get("machine_type")))
            if machine is not None:
                return {**data, "accelerator_count": machine.accelerator_count}
        return data


class IamGrant(SpecModel):
    """An extra bucket-level grant, added to the derived ones (it can never remove one)."""

    bucket: Annotated[str, Field(description="Bucket name from buckets:.")]
    member: Annotated[
        str,
        Field(
            description="IAM member, e.g. group:ml@example.com. allUsers/allAuthenticatedUsers are refused."
        ),
    ]
    role: Annotated[str, Field(description="Bucket role. Default: roles/storage.objectUser.")] = (
        "roles/storage.objectUser"
    )


class TrainerImage(SpecModel):
    """Where the trainer image is built to (Artifact Registry, docker format)."""

    repository: Annotated[
        str, Field(description="Artifact Registry repository id. Default: tunestack.")
    ] = "tunestack"
    location: Annotated[
        str | None, Field(description="Repository location. Default: the project region.")
    ] = None


class Prices(SpecModel):
    """Prices for the cost estimates of validate and plan (USD), overriding infra/cost.py's table."""

    tuning_per_million_tokens: Annotated[
        dict[str, float],
        Field(
            description="USD per million training tokens, by catalog model id (e.g. your contract's or the Vertex AI pricing page's figure). Default: the table's (none published in it yet)."
        ),
    ] = {}
    machine_per_hour: Annotated[
        dict[str, float],
        Field(
            description="USD per hour of one serving replica, by G2 machine type (machine and its L4s together). Default: the table's (none published in it yet)."
        ),
    ] = {}
    source: Annotated[
        str | None,
        Field(description="Where these figures come from (shown next to them). Default: none."),
    ] = None

    @field_validator("tuning_per_million_tokens", "machine_per_hour")
    @classmethod
    def _not_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if v < 0]
        if bad:
            raise ValueError(f"prices must be >= 0 (negative for {', '.join(bad)})")
        return value


class Spec(SpecModel):
    """A tunestack spec: one GCP project set up for open-model tuning and serving."""

    project: Annotated[Project, Field(description="The GCP project and region.")]
    apis: Annotated[
        list[str],
        Field(
            description="APIs to enable. aiplatform.googleapis.com and storage.googleapis.com are always implied."
        ),
    ] = []
    buckets: Annotated[
        list[Bucket], Field(description="Cloud Storage buckets. Default: none.")
    ] = []
    datasets: Annotated[list[Dataset], Field(description="JSONL datasets. Default: none.")] = []
    tuning_jobs: Annotated[list[TuningJob], Field(description="Tuning jobs. Default: none.")] = []
    endpoints: Annotated[
        list[Endpoint], Field(description="Serving endpoints. Default: none.")
    ] = []
    iam: Annotated[
        list[IamGrant],
        Field(description="Extra bucket grants, added to the derived ones. Default: none."),
    ] = []
    trainer_image: Annotated[
        TrainerImage | None,
        Field(
            description="Build the trainer image (needed by engine: trainer_image). Default: none."
        ),
    ] = None
    prices: Annotated[
        Prices | None,
        Field(
            description="Prices for the cost estimates (validate, plan, PR diff). Default: the built-in table of infra/cost.py."
        ),
    ] = None
