"""The seed catalog: every fact from Google's "Tuning open models" page, as data.

One place to extend when Vertex adds a model, a region or a machine. Code asks this module
questions (``model("...")``, ``machine("...")``); it never hard-codes a model id elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FULL = "FULL"
PEFT_ADAPTER = "PEFT_ADAPTER"
TUNING_MODES = (PEFT_ADAPTER, FULL)

#: Adapter sizes (LoRA rank) Vertex accepts, and their enum numbers on the wire.
ADAPTER_SIZES = (1, 4, 8, 16, 32)
ADAPTER_SIZE_ENUM = {1: 1, 4: 2, 8: 3, 16: 4, 32: 5, 2: 6}
TUNING_MODE_ENUM = {FULL: 1, PEFT_ADAPTER: 2}

#: Regions that run open-model tuning jobs.
TUNING_REGIONS = ("us-central1", "europe-west4", "us-west1", "us-east5", "asia-southeast1")

#: Image MIME types accepted in multimodal datasets.
IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/webp")

#: APIs every spec needs, whether or not it lists them.
REQUIRED_APIS = ("aiplatform.googleapis.com", "storage.googleapis.com")

#: The two service agents that read datasets and write checkpoints.
SERVICE_AGENT_DOMAINS = ("gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft")
BUCKET_ROLE = "roles/storage.objectUser"

#: Vertex keeps at most this many checkpoints per tuning job.
MAX_CHECKPOINTS = 10


@dataclass(frozen=True)
class Model:
    """One tunable open model.

    Attributes:
        id: Vertex model id (``publisher/family@name``).
        display_name: Human name from the seed page.
        family: Architecture family our trainer maps it to (llama, llama4, gemma3, qwen3).
        tuning_modes: Modes Vertex supports for this model.
        max_seq_length: Longest training example, in tokens.
        modalities: ``text`` and optionally ``image``.
        parameters: Parameter count (all experts for MoE models), for weight-size estimates.
        hf_architecture: The transformers class the weights load as.
    """

    id: str
    display_name: str
    family: str
    tuning_modes: tuple[str, ...]
    max_seq_length: int
    modalities: tuple[str, ...]
    parameters: float
    hf_architecture: str

    @property
    def supports_images(self) -> bool:
        return "image" in self.modalities

    @property
    def bf16_weights_gb(self) -> float:
        """Size of the weights in bf16 (2 bytes per parameter), in GB (1e9 bytes)."""
        return self.parameters * 2 / 1e9


_TEXT = ("text",)
_BOTH = (PEFT_ADAPTER, FULL)

MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        Model(
            "google/gemma3@gemma-3-1b-it",
            "Gemma 3 1B IT",
            "gemma3",
            (FULL,),
            8192,
            _TEXT,
            1.0e9,
            "Gemma3ForCausalLM",
        ),
        Model(
            "google/gemma3@gemma-3-4b-it",
            "Gemma 3 4B IT",
            "gemma3",
            (FULL,),
            8192,
            _TEXT,
            4.3e9,
            "Gemma3ForConditionalGeneration",
        ),
        Model(
            "google/gemma3@gemma-3-12b-it",
            "Gemma 3 12B IT",
            "gemma3",
            (FULL,),
            8192,
            _TEXT,
            12.2e9,
            "Gemma3ForConditionalGeneration",
        ),
        Model(
            "google/gemma3@gemma-3-27b-it",
            "Gemma 3 27B IT",
            "gemma3",
            _BOTH,
            8192,
            _TEXT,
            27.4e9,
            "Gemma3ForConditionalGeneration",
        ),
        Model(
            "meta/llama3_1@llama-3.1-8b",
            "Llama 3.1 8B",
            "llama",
            _BOTH,
            8192,
            _TEXT,
            8.03e9,
            "LlamaForCausalLM",
        ),
        Model(
            "meta/llama3_1@llama-3.1-8b-instruct",
            "Llama 3.1 8B Instruct",
            "llama",
            _BOTH,
            8192,
            _TEXT,
            8.03e9,
            "LlamaForCausalLM",
        ),
        Model(
            "meta/llama3-2@llama-3.2-1b-instruct",
            "Llama 3.2 1B Instruct",
            "llama",
            (FULL,),
            8192,
            _TEXT,
            1.24e9,
            "LlamaForCausalLM",
        ),
        Model(
            "meta/llama3-2@llama-3.2-3b-instruct",
            "Llama 3.2 3B Instruct",
            "llama",
            (FULL,),
            8192,
            _TEXT,
            3.21e9,
            "LlamaForCausalLM",
        ),
        Model(
            "meta/llama3-3@llama-3.3-70b-instruct",
            "Llama 3.3 70B Instruct",
            "llama",
            _BOTH,
            8192,
            _TEXT,
            70.6e9,
            "LlamaForCausalLM",
        ),
        Model(
            "meta/llama4@llama-4-scout-17b-16e-instruct",
            "Llama 4 Scout 17B 16E Instruct",
            "llama4",
            (PEFT_ADAPTER,),
            2048,
            ("text", "image"),
            109e9,
            "Llama4ForConditionalGeneration",
        ),
        Model(
            "qwen/qwen3@qwen3-4b",
            "Qwen 3 4B",
            "qwen3",
            (FULL,),
            8192,
            _TEXT,
            4.02e9,
            "Qwen3ForCausalLM",
        ),
        Model(
            "qwen/qwen3@qwen3-8b",
            "Qwen 3 8B",
            "qwen3",
            (FULL,),
            8192,
            _TEXT,
            8.19e9,
            "Qwen3ForCausalLM",
        ),
        Model(
            "qwen/qwen3@qwen3-14b",
            "Qwen 3 14B",
            "qwen3",
            (FULL,),
            8192,
            _TEXT,
            14.8e9,
            "Qwen3ForCausalLM",
        ),
        Model(
            "qwen/qwen3@qwen3-32b",
            "Qwen 3 32B",
            "qwen3",
            _BOTH,
            8192,
            _TEXT,
            32.8e9,
            "Qwen3ForCausalLM",
        ),
    )
}

#: Models that drop every text-only example once one image example is present.
DROPS_TEXT_WHEN_IMAGES = ("meta/llama4@llama-4-scout-17b-16e-instruct",)


@dataclass(frozen=True)
class Accelerator:
    """A GPU type that serving endpoints can use."""

    name: str
    memory_gb: float
    enum: int


ACCELERATORS: dict[str, Accelerator] = {"NVIDIA_L4": Accelerator("NVIDIA_L4", 24.0, 11)}


@dataclass(frozen=True)
class Machine:
    """A serving machine type and the accelerators attached to it."""

    name: str
    accelerator_type: str
    accelerator_count: int


MACHINES: dict[str, Machine] = {
    m.name: m
    for m in (
        Machine("g2-standard-4", "NVIDIA_L4", 1),
        Machine("g2-standard-8", "NVIDIA_L4", 1),
        Machine("g2-standard-12", "NVIDIA_L4", 1),
        Machine("g2-standard-16", "NVIDIA_L4", 1),
        Machine("g2-standard-24", "NVIDIA_L4", 2),
        Machine("g2-standard-32", "NVIDIA_L4", 1),
        Machine("g2-standard-48", "NVIDIA_L4", 4),
        Machine("g2-standard-96", "NVIDIA_L4", 8),
    )
}

#: Share of accelerator memory that should stay free for the KV cache.
KV_CACHE_HEADROOM = 0.20


def model(model_id: str) -> Model | None:
    """Returns the catalog entry for a Vertex model id, or None when it is not tunable."""
    return MODELS.get(model_id)


def machine(name: str) -> Machine | None:
    """Returns the G2 machine type of that name, or None."""
    return MACHINES.get(name)


def machine_memory_gb(m: Machine) -> float:
    """Accelerator memory of one replica of machine ``m``, in GB."""
    return ACCELERATORS[m.accelerator_type].memory_gb * m.accelerator_count


def fits_with_headroom(m: Machine, weights_gb: float) -> bool:
    """True when ``weights_gb`` of weights leave the KV-cache headroom free on ``m``."""
    return machine_memory_gb(m) * (1 - KV_CACHE_HEADROOM) >= weights_gb


def smallest_machine(mdl: Model) -> Machine | None:
    """The smallest G2 machine (least accelerator memory, then fewest vCPUs) that serves
    ``mdl``'s bf16 weights with the KV-cache headroom free; None when none is large enough."""
    fitting = [m for m in MACHINES.values() if fits_with_headroom(m, mdl.bf16_weights_gb)]
    return min(fitting, key=lambda m: (machine_memory_gb(m), _vcpus(m)), default=None)


def _vcpus(m: Machine) -> int:
    return int(m.name.rsplit("-", 1)[-1])


def checkpoints_kept(epochs: int) -> int:
    """How many checkpoints a job with ``epochs`` epochs keeps: one per epoch, at most 10."""
    return len(checkpoint_epochs(epochs))


def service_agent(project_number: str, domain: str) -> str:
    """The IAM member of a Vertex service agent for a project number."""
    return f"serviceAccount:service-{project_number}@{domain}.iam.gserviceaccount.com"


# --------------------------------------------------------------------------------------------
# Contracts shared by the Vertex client, the local API and the plan: one source each.

#: Vertex job states (``JobState`` enum names).
JOB_STATE_SUCCEEDED = "JOB_STATE_SUCCEEDED"
JOB_STATE_FAILED = "JOB_STATE_FAILED"
JOB_STATE_CANCELLED = "JOB_STATE_CANCELLED"
JOB_STATE_CANCELLING = "JOB_STATE_CANCELLING"
JOB_STATE_PENDING = "JOB_STATE_PENDING"
JOB_STATE_QUEUED = "JOB_STATE_QUEUED"
JOB_STATE_RUNNING = "JOB_STATE_RUNNING"
#: States after which a job never changes again. The SDK's ``has_ended`` forgets EXPIRED and
#: PARTIALLY_SUCCEEDED; we do not.
TERMINAL_JOB_STATES = frozenset(
    {
        JOB_STATE_SUCCEEDED,
        JOB_STATE_FAILED,
        JOB_STATE_CANCELLED,
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
#: States in which a job holds a tuning slot (quota) or is still going to run.
ACTIVE_JOB_STATES = frozenset(
    {
        JOB_STATE_QUEUED,
        JOB_STATE_PENDING,
        JOB_STATE_RUNNING,
        JOB_STATE_CANCELLING,
        "JOB_STATE_PAUSED",
        "JOB_STATE_UPDATING",
    }
)
#: States in which an existing job with our key is adopted instead of submitting a new one.
ADOPTABLE_JOB_STATES = (ACTIVE_JOB_STATES - {JOB_STATE_CANCELLING}) | {JOB_STATE_SUCCEEDED}

#: Where a job's checkpoints live under its ``output_uri`` (the Vertex artifact layout).
CHECKPOINTS_LAYOUT = "postprocess/node-0/checkpoints"
#: The checkpoint written when training ends.
FINAL_CHECKPOINT = "final"
#: Per-epoch checkpoints are ``checkpoint-<step>``.
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoints_prefix(output_uri: str) -> str:
    """``{output_uri}/postprocess/node-0/checkpoints``."""
    return f"{output_uri.rstrip('/')}/{CHECKPOINTS_LAYOUT}"


def checkpoint_uri(output_uri: str, checkpoint: str) -> str:
    """The URI of one checkpoint (``final`` or ``checkpoint-N``) of a job's output."""
    return f"{checkpoints_prefix(output_uri)}/{checkpoint}"


def checkpoint_step(name: str) -> int | None:
    """The step of a ``checkpoint-N`` directory name, else None."""
    step = name.removeprefix(CHECKPOINT_PREFIX)
    return int(step) if name.startswith(CHECKPOINT_PREFIX) and step.isdigit() else None


def checkpoint_epochs(epochs: int) -> tuple[int, ...]:
    """The epochs whose checkpoint a job keeps (what ``epoch-N`` may name).

    One checkpoint per epoch up to 10 epochs; beyond that Vertex keeps at most 10
    (:data:`MAX_CHECKPOINTS`), spread evenly and ending on the last epoch: epoch
    ``ceil(k * epochs / 10)`` for k = 1..10 (25 epochs: 3, 5, 8, 10, 13, 15, 18, 20, 23, 25).
    Our trainer writes exactly these (``trainer.checkpoint.checkpoint_epochs``; a test keeps
    the two equal).
    """
    if epochs <= MAX_CHECKPOINTS:
        return tuple(range(1, epochs + 1))
    return tuple(
        sorted({math.ceil(k * epochs / MAX_CHECKPOINTS) for k in range(1, MAX_CHECKPOINTS + 1)})
    )
