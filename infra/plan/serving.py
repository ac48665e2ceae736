"""The serving nodes of a plan: endpoints, each deploying a job's checkpoint or gs:// weights.

An endpoint of a job waits for that job's completion; one of weights already in Cloud Storage
waits for the Vertex API and the grants on the weights' bucket.
"""

from __future__ import annotations

from infra import catalog, checkpoint_selection
from infra.plan import derive
from infra.plan.model import EndpointPlan, JobPlan
from infra.spec.models import Spec


def plan_endpoints(
    spec: Spec,
    jobs: tuple[JobPlan, ...],
    grants_by_bucket: dict[str, list[str]],
    api: dict[str, str],
) -> tuple[EndpointPlan, ...]:
    """The endpoints in spec order, with the model they serve and whether its weights fit.

    Args:
        spec: The validated spec.
        jobs: The planned tuning jobs.
        grants_by_bucket: Bucket -> the names of its service-agent grants.
        api: Service name -> the API node's logical name.
    """
    by_job = {j.job: j for j in jobs}
    plans = []
    for e in spec.endpoints:
        job = by_job.get(e.model)
        if job is not None:
            uri = catalog.checkpoint_uri(job.run_uri, e.checkpoint)
            deps: tuple[str, ...] = (job.completion_name,)
            model_id: str | None = e.base_model or job.base_model
        else:
            uri = e.model.rstrip("/")
            deps = (
                api["aiplatform.googleapis.com"],
                *sorted(grants_by_bucket.get(derive.bucket_of(uri) or "", ())),
            )
            model_id = e.base_model
        entry = catalog.model(model_id) if model_id else None
        accelerator = catalog.ACCELERATORS.get(e.accelerator_type)
        weights = round(entry.bf16_weights_gb, 2) if entry else None
        fits = None
        if weights is not None and accelerator is not None:
            fits = weights <= accelerator.memory_gb * e.accelerator_count
        serves, serves_uri = _serves(job.job if job else None, e.checkpoint, uri)
        plans.append(
            EndpointPlan(
                name=f"endpoint-{e.name}",
                endpoint=e.name,
                job=job.job if job else None,
                checkpoint=e.checkpoint,
                model_uri=uri,
                machine_type=e.machine_type,
                accelerator_type=e.accelerator_type,
                accelerator_count=e.accelerator_count,
                min_replicas=e.min_replicas,
                max_replicas=e.max_replicas,
                base_model=model_id,
                weights_gb=weights,
                fits=fits,
                depends_on=deps,
                canary_percent=e.canary_percent,
                serves=serves,
                serves_uri=serves_uri,
            )
        )
    return tuple(plans)


def _serves(job: str | None, checkpoint: str, uri: str) -> tuple[str, str | None]:
    """What an endpoint serves, in words, and its URI (None until training decides)."""
    if job is None:
        return f"weights {uri}", uri
    sel = checkpoint_selection.parse_checkpoint(checkpoint)
    if sel is not None and sel.kind == "epoch":
        how = f"the checkpoint of epoch {sel.number}, its step resolved from the job's checkpoints after training"
        return f"job {job}, {checkpoint}: {how}", None
    if sel is not None and sel.kind == "best":
        how = "the checkpoint with the lowest validation loss, resolved after training"
        return f"job {job}, {checkpoint}: {how}", None
    if sel is not None and sel.kind == "step":
        return f"job {job}, {checkpoint}: {uri} (that step must exist after training)", uri
    return f"job {job}, {checkpoint}: {uri}", uri
