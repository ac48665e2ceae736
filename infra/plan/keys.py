"""Deterministic keys of jobs and deployments, and the labels and names that carry them (pure).

``tuningJobs.create`` and ``customJobs.create`` take no request id, so a retry after a crash
would bill a second job. Every job carries a deterministic label ``tunestack-key`` (a hash of
its normalised inputs and the dataset's object identity); ``ensure_*`` lists jobs with that
label and adopts a live or succeeded one before submitting. Deployments cannot carry labels
through ``:deploy``, so the key travels in the endpoint and model display names.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from infra.plan.inputs import ModelDeploymentArgs, redeploying, replacing

#: Label carrying the deterministic key of a job (label keys: lowercase, digits, ``_``, ``-``).
LABEL_KEY = "tunestack-key"
#: Label marking what tunestack created.
MANAGED_LABEL = "managed-by"
MANAGED_VALUE = "tunestack"
#: Length of the hex key (label values allow 63 characters; 40 hex = 160 bits).
KEY_LENGTH = 40
#: How much of the key goes into deployment display names (64 bits: no practical collisions).
DISPLAY_KEY_LENGTH = 16

#: The inputs naming an endpoint (its key).
ENDPOINT_FIELDS = tuple(sorted(replacing(ModelDeploymentArgs) - {"api_endpoint"}))
#: The inputs naming the model an endpoint serves (its model key): those that redeploy it.
MODEL_FIELDS = tuple(sorted(redeploying(ModelDeploymentArgs)))
#: Input fields that do not change what a job computes, so they stay out of its key.
NON_KEY_FIELDS = frozenset({"labels", "api_endpoint", "deadline_seconds"})
#: A custom job's container inputs: how it runs, not what it trains (out of its run key).
CONTAINER_FIELDS = frozenset({"image_uri", "replicas", "machine_type"})
#: How much of the run key names a job's output prefix (64 bits: no practical collisions).
RUN_KEY_LENGTH = 16


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


def deployment_key(inputs: Mapping[str, Any]) -> str:
    """Key of a deployment's endpoint: project, location and endpoint display name.

    An endpoint keeps its resource name for life; the models behind it change (see
    :func:`model_key`), so only what names the endpoint is in its key.
    """
    return job_key({k: inputs.get(k) for k in ENDPOINT_FIELDS})


def model_key(inputs: Mapping[str, Any]) -> str:
    """Key of the model an endpoint serves: weights, machine and accelerators, display name.

    A change of any of these uploads and deploys a new model on the same endpoint (blue/green);
    replica counts change the deployed model in place and are not part of it.
    """
    return job_key({k: inputs.get(k) for k in MODEL_FIELDS})


def model_tag(endpoint_key: str, key: str) -> str:
    """``[ts-<endpoint key>-<model key>]``: what a model's (and its deployed model's) display
    name ends with, so a re-run finds the models of an endpoint and which one is current."""
    return f"[ts-{endpoint_key[:DISPLAY_KEY_LENGTH]}-{key[:DISPLAY_KEY_LENGTH]}]"


def endpoint_models_marker(endpoint_key: str) -> str:
    """What every model display name of one endpoint contains."""
    return f"[ts-{endpoint_key[:DISPLAY_KEY_LENGTH]}-"


def tagged(name: str, tag: str) -> str:
    """A display name with ``tag`` appended, cut to Vertex's 128 characters."""
    return name[: 128 - len(tag) - 1] + " " + tag


def run_key(inputs: Mapping[str, Any]) -> str:
    """The key of what a job trains (its training inputs, not its container): 16 hex.

    For a managed tuning job this is a prefix of its :func:`job_key`; a custom job whose image
    or machine changed is a new job on the same run key, so its trainer finds its own run.
    """
    training = {k: v for k, v in inputs.items() if k not in CONTAINER_FIELDS}
    return job_key(training)[:RUN_KEY_LENGTH]


def run_output_uri(inputs: Mapping[str, Any]) -> str:
    """``{output_uri}/{run key}``: where this job version writes (Vertex's layout below it).

    Each job version owns its prefix, so a changed job never reads, resumes from, overwrites
    or serves another version's artifacts, and the previous version's stay for a rollback.
    """
    return f"{str(inputs['output_uri']).rstrip('/')}/{run_key(inputs)}"


def key_labels(key: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """User labels plus the key and managed-by labels (ours win on conflict)."""
    merged = dict(labels or {})
    merged[LABEL_KEY] = key
    merged[MANAGED_LABEL] = MANAGED_VALUE
    return merged


def label_filter(key: str) -> str:
    """The list ``filter`` selecting jobs with our key label."""
    return f'labels.{LABEL_KEY}="{key}"'


def display_tag(key: str) -> str:
    """``[ts-<key prefix>]``: what a deployment's display names end with."""
    return f"[ts-{key[:DISPLAY_KEY_LENGTH]}]"


def is_spec_endpoint(display_name: str, name: str) -> bool:
    """True when an endpoint's display name is the spec endpoint ``name``'s: the name itself,
    or the name followed by its deployment's tag (``NAME [ts-...]``)."""
    return display_name == name or display_name.startswith(f"{name} [ts-")


def deploy_display_names(
    key: str, endpoint_display_name: str, model_display_name: str, model: str = ""
) -> tuple[str, str]:
    """Display names carrying the endpoint key (and the model's, when given) (pure)."""
    model_name = tagged(model_display_name, model_tag(key, model) if model else display_tag(key))
    return tagged(endpoint_display_name, display_tag(key)), model_name


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
