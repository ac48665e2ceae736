"""The Pulumi dynamic resources tunestack's program creates for what pulumi-gcp lacks.

Each resource takes an ``Args`` dataclass from :mod:`infra.plan.inputs` (inputs may be
Pulumi Outputs) and exposes its outputs as attributes. Provider classes live in sibling modules and pickle by reference: their
module paths (``infra.providers.jobs`` etc.) are part of every stack's state, never move them.
Input names are a contract with the program (``infra/emit``): keep them stable.

Resources, and what create/delete do:
- :class:`ServiceAgents`: force the Vertex service agents into existence, wait until visible.
- :class:`TuningJob`: adopt-by-key or submit a managed tuning job; delete cancels.
- :class:`CustomTrainingJob`: the same with our trainer image as a Vertex CustomJob.
- :class:`TuningJobCompletion`: wait (bounded) for either job; outputs checkpoint URIs.
- :class:`TrainerImage`: Cloud Build of ``trainer_image/``, tag = content hash.
- :class:`ModelDeployment`: ``:deploy`` custom weights; records and deletes endpoint AND model.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import Output, ResourceOptions

from infra.plan.inputs import (
    CustomTrainingJobArgs,
    ModelDeploymentArgs,
    ServiceAgentsArgs,
    TrainerImageArgs,
    TuningJobArgs,
    TuningJobCompletionArgs,
    as_inputs,
)
from infra.providers.agents import ServiceAgentsProvider
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.image import TrainerImageProvider
from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider, TuningJobProvider


def _props(args: Any, outputs: tuple[str, ...]) -> dict[str, Any]:
    # Outputs must be present (as None) at registration to be readable as attributes.
    props = as_inputs(args)
    # An output that is also an input (ServiceAgents.project_number) keeps the input's value.
    props.update({name: None for name in outputs if name not in props})
    return props


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


class TuningJob(pulumi.dynamic.Resource, module="tunestack", name="TuningJob"):
    """A managed open-model tuning job; create adopts or submits and returns at once."""

    job_name: Output[str]
    key: Output[str]
    adopted: Output[bool]
    state: Output[str]

    def __init__(self, name: str, args: TuningJobArgs, opts: ResourceOptions | None = None):
        super().__init__(TuningJobProvider(), name, _props(args, TuningJobProvider.OUTPUTS), opts)


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


class TuningJobCompletion(pulumi.dynamic.Resource, module="tunestack", name="TuningJobCompletion"):
    """Waits for a job; fails unless it SUCCEEDED; outputs final and per-epoch checkpoints."""

    state: Output[str]
    final_checkpoint_uri: Output[str]
    checkpoint_uris: Output[list[str]]
    tuned_model: Output[str]
    checkpoints: Output[list[dict[str, Any]]]

    def __init__(
        self, name: str, args: TuningJobCompletionArgs, opts: ResourceOptions | None = None
    ):
        super().__init__(
            JobCompletionProvider(), name, _props(args, JobCompletionProvider.OUTPUTS), opts
        )


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


class ModelDeployment(pulumi.dynamic.Resource, module="tunestack", name="ModelDeployment"):
    """A stable endpoint serving custom weights; model changes swap blue/green behind it;
    delete removes the endpoint and its models."""

    endpoint: Output[str]
    model: Output[str]
    key: Output[str]
    adopted: Output[bool]
    model_key: Output[str]
    deployed_model_id: Output[str]
    previous_model: Output[str]
    traffic_split: Output[dict[str, int]]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: ResourceOptions | None = None):
        super().__init__(
            ModelDeploymentProvider(), name, _props(args, ModelDeploymentProvider.OUTPUTS), opts
        )
