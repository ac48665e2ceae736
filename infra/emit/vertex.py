"""The plan's Vertex nodes as the providers' dynamic resources (``infra.providers.resources``).

Kept apart from :mod:`infra.emit.components` because these are the only resources whose
inputs are our own contract (the providers' ``Args`` dataclasses) rather than pulumi-gcp's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.catalog import checkpoint_uri
from infra.plan import EndpointPlan, ImagePlan, JobPlan
from infra.providers import resources as r
from infra.vertex.checkpoints import resolve_checkpoint

#: The trainer's build context: ``trainer_image/`` next to ``infra/``.
TRAINER_CONTEXT = Path(__file__).resolve().parents[2] / "trainer_image"


@dataclass
class Completion:
    """A job's handle for dependents.

    Attributes:
        job: The spec job name.
        job_name: The Vertex job resource name (output).
        final_uri: The final checkpoint URI (output of the completion: known once finished).
        completion: The resource that finishes when the job has (what endpoints and the
            quota chain wait for).
        resources: (logical name, resource) pairs registered for the job.
        output_uri: The job version's run URI (``{output_uri}/{run key}``).
        checkpoint_uris: The per-epoch checkpoint URIs (output of the completion).
    """

    job: str
    job_name: pulumi.Output[str]
    final_uri: pulumi.Output[str]
    completion: pulumi.Resource
    resources: list[tuple[str, pulumi.Resource]] = field(default_factory=list)
    output_uri: str = ""
    checkpoint_uris: pulumi.Output[list[str]] | None = None
    checkpoints: pulumi.Output[list[dict[str, Any]]] | None = None

    def checkpoint(self, name: str) -> pulumi.Output[str]:
        """URI of ``final``, ``epoch-N``, ``best`` or ``checkpoint-N``, known only after the
        job completed (resolved from the completion's recorded checkpoints)."""
        if name == "final":
            return self.final_uri
        if self.checkpoints is not None and not name.startswith("checkpoint-"):
            return self.checkpoints.apply(lambda found: self._resolve(name, found))
        # checkpoint-<step>'s path is fixed by the output layout; tie it to the completion's
        # output so that whatever reads it waits for the job.
        return self.final_uri.apply(lambda _: checkpoint_uri(self.output_uri, name))

    def _resolve(self, name: str, found: list[dict[str, Any]] | None) -> str:
        if not found:
            # Nothing recorded (the offline plan's mocks): the name stands in for the URI. A
            # real completion lists its checkpoints; a deploy of a missing one fails loudly.
            return checkpoint_uri(self.output_uri, name)
        return resolve_checkpoint(name, found)


def service_agents(
    name: str,
    project_id: pulumi.Input[str],
    number: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> pulumi.Resource:
    """The providers' ServiceAgents resource (``gcp-sa-vertex-moss-ft`` has no native one)."""
    return r.ServiceAgents(
        name, r.ServiceAgentsArgs(project=project_id, project_number=number), opts
    )


def trainer_image(
    name: str, image: ImagePlan, project_id: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> r.TrainerImage:
    """The trainer image, built into the plan's Artifact Registry repository."""
    args = r.TrainerImageArgs(
        project=project_id,
        location=image.location,
        repository=image.repository,
        context_dir=str(TRAINER_CONTEXT),
    )
    return r.TrainerImage(name, args, opts)


def image_uri(image: r.TrainerImage) -> pulumi.Output[str]:
    """The pushed image's URI (tag = content hash)."""
    return image.image_uri


def tuning_job(
    job: JobPlan,
    project_id: pulumi.Input[str],
    region: str,
    image: pulumi.Input[str] | None,
    child: pulumi.ResourceOptions,
    resolve: Callable[[tuple[str, ...]], list[pulumi.Resource]],
) -> Completion:
    """A job (managed TuningJob or trainer_image CustomTrainingJob) and its completion.

    Args:
        job: The job's plan.
        project_id: Project id (an output when the program creates the project).
        region: Tuning region.
        image: Trainer image URI (engine trainer_image).
        child: Options placing children in the Tuning component.
        resolve: Logical names -> registered resources (grants, uploads, previous jobs).
    """
    common = job.provider_inputs(project_id, region)
    opts = pulumi.ResourceOptions.merge(
        child, pulumi.ResourceOptions(depends_on=resolve(job.depends_on))
    )
    resource: pulumi.CustomResource
    if job.engine == "trainer_image":
        resource = r.CustomTrainingJob(
            job.name,
            r.CustomTrainingJobArgs(
                **common,
                image_uri=image or "",
                replicas=job.replicas,
                machine_type=job.machine_type,
            ),
            opts,
        )
    else:
        resource = r.TuningJob(job.name, r.TuningJobArgs(**common), opts)
    registered: list[tuple[str, pulumi.Resource]] = [(job.name, resource)]
    # No explicit depends_on: job_name is the job's output, which already makes the completion
    # depend on it (an explicit duplicate costs one more walk of the quota chain in the SDK).
    completion = r.TuningJobCompletion(
        job.completion_name,
        r.TuningJobCompletionArgs(
            project=project_id,
            location=region,
            job_name=resource.job_name,
            output_uri=job.run_uri,
        ),
        child,
    )
    registered.append((job.completion_name, completion))
    return Completion(
        job=job.job,
        job_name=resource.job_name,
        final_uri=completion.final_checkpoint_uri,
        completion=completion,
        resources=registered,
        output_uri=job.run_uri,
        checkpoint_uris=completion.checkpoint_uris,
        checkpoints=completion.checkpoints,
    )


def model_deployment(
    endpoint: EndpointPlan,
    gcs_uri: pulumi.Input[str],
    project_id: pulumi.Input[str],
    region: str,
    opts: pulumi.ResourceOptions,
) -> r.ModelDeployment:
    """A Model Garden deployment of the endpoint's weights."""
    args = r.ModelDeploymentArgs(**endpoint.provider_inputs(project_id, region, gcs_uri))
    return r.ModelDeployment(endpoint.name, args, opts)


def endpoint_name(deployment: r.ModelDeployment) -> pulumi.Output[str]:
    """The deployed endpoint's resource name."""
    return deployment.endpoint
