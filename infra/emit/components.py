"""plan -> Pulumi resources, grouped in four ComponentResources.

``tunestack:project:Foundation`` (project, APIs, service agents), ``tunestack:storage:Storage``
(buckets, additive grants, dataset uploads), ``tunestack:tuning:Tuning`` (trainer image, jobs)
and ``tunestack:serving:Serving`` (endpoints). Children use ``parent=self``; each component
ends with ``register_outputs``. Logical names come from the plan, so they are stable: renaming
one replaces the resource (add an alias first).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra import catalog
from infra.emit import vertex
from infra.plan import COMPONENTS, Plan

#: Cloud Storage's default soft-delete retention (7 days), set explicitly so that no one turns
#: soft delete off by accident and so that tests can see it.
SOFT_DELETE_SECONDS = 604800

#: Content type of uploaded datasets.
JSONL = "application/jsonl"


class Foundation(pulumi.ComponentResource):
    """The project (created or adopted), its APIs and both Vertex service agents.

    Attributes:
        project_id: The project id (an output of the Project when created, so that everything
            that uses it waits for the project).
        project_number: The project number (spec, Project output, or looked up).
        members: Agent domain -> ``serviceAccount:service-<number>@<domain>...`` member.
        resources: Logical name -> resource, for explicit ``depends_on``.
    """

    def __init__(self, name: str, plan: Plan, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENTS["foundation"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = plan.project
        self.resources: dict[str, pulumi.Resource] = {}
        project_id: pulumi.Input[str]
        if p.create:
            project = gcp.organizations.Project(
                p.name,
                project_id=p.project_id,
                name=p.project_id,
                billing_account=p.billing_account,
                folder_id=p.folder_id,
                org_id=p.org_id,
                # No default VPC: tuning needs none, and an open default network is a finding.
                auto_create_network=False,
                deletion_policy="PREVENT",
                labels=p.labels or None,
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(protect=True, retain_on_delete=True)
                ),
            )
            self.resources[p.name] = project
            project_id = project.project_id
            number: pulumi.Output[str] = (
                pulumi.Output.from_input(p.number) if p.number else project.number
            )
        else:
            project_id = p.project_id
            if p.number:
                number = pulumi.Output.from_input(p.number)
            else:
                number = gcp.organizations.get_project_output(project_id=p.project_id).number
        self.project_id = pulumi.Output.from_input(project_id)
        self.project_number = number

        for api in plan.apis:
            self.resources[api.name] = gcp.projects.Service(
                api.name,
                project=self.project_id,
                service=api.service,
                # Other things in the project may use the API: never switch it off on destroy.
                disable_on_destroy=False,
                opts=self._opts(child, api.depends_on),
            )
        a = plan.agents
        self.resources[a.identity_name] = gcp.projects.ServiceIdentity(
            a.identity_name,
            project=self.project_id,
            service="aiplatform.googleapis.com",
            opts=self._opts(child, a.depends_on),
        )
        self.resources[a.agents_name] = vertex.service_agents(
            a.agents_name, self.project_id, number, self._opts(child, a.depends_on)
        )
        self.members = {d: _member(number, d) for d in a.domains}
        self.register_outputs({"project_id": self.project_id, "project_number": number})

    def _opts(
        self, child: pulumi.ResourceOptions, names: tuple[str, ...]
    ) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[self.resources[n] for n in names])
        )


class Storage(pulumi.ComponentResource):
    """Buckets (secure defaults), additive agent grants and content-addressed dataset uploads.

    Attributes:
        urls: Bucket name -> ``gs://`` URL (managed buckets: the Bucket's output).
        resources: Logical name -> resource.
    """

    def __init__(
        self,
        name: str,
        plan: Plan,
        foundation: Foundation,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENTS["storage"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        known = dict(foundation.resources)
        self.resources: dict[str, pulumi.Resource] = {}
        self.urls: dict[str, pulumi.Input[str]] = {}
        bucket_names: dict[str, pulumi.Input[str]] = {}
        for b in plan.buckets:
            if not b.create:
                # An existing bucket: referenced by name, never managed (no create, no delete).
                self.urls[b.bucket] = b.url
                bucket_names[b.bucket] = b.bucket
                continue
            bucket = gcp.storage.Bucket(
                b.name,
                name=b.bucket,
                project=foundation.project_id,
                location=b.location,
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                    retention_duration_seconds=SOFT_DELETE_SECONDS
                ),
                versioning=gcp.storage.BucketVersioningArgs(enabled=True) if b.versioning else None,
                labels=b.labels,
                force_destroy=False,
                opts=_merge(
                    child,
                    _deps(known, b.depends_on),
                    pulumi.ResourceOptions(protect=b.protect, retain_on_delete=b.protect),
                ),
            )
            self.resources[b.name] = known[b.name] = bucket
            self.urls[b.bucket] = bucket.url
            bucket_names[b.bucket] = bucket.name
        for g in plan.grants:
            member: pulumi.Input[str] = (
                foundation.members[g.agent_domain] if g.agent_domain else str(g.member)
            )
            self.resources[g.name] = gcp.storage.BucketIAMMember(
                g.name,
                bucket=bucket_names.get(g.bucket, g.bucket),
                role=g.role,
                member=member,
                opts=_merge(child, _deps(known, g.depends_on)),
            )
        for u in plan.uploads:
            self.resources[u.name] = gcp.storage.BucketObject(
                u.name,
                bucket=bucket_names.get(u.bucket, u.bucket),
                name=u.object_name,
                source=pulumi.FileAsset(u.local_path),
                content_type=JSONL,
                metadata={"sha256": u.sha256, "dataset": u.dataset},
                opts=_merge(
                    child,
                    _deps(known, u.depends_on),
                    pulumi.ResourceOptions(retain_on_delete=u.retain),
                ),
            )
        self.register_outputs({"buckets": self.urls})


class Tuning(pulumi.ComponentResource):
    """The trainer image (engine trainer_image) and the tuning jobs, chained by the quota.

    Attributes:
        jobs: Spec job name -> (job resource name output, final checkpoint URI output).
        checkpoint_uris: Spec job name -> callable giving an output URI for a checkpoint.
        resources: Logical name -> resource.
    """

    def __init__(
        self,
        name: str,
        plan: Plan,
        foundation: Foundation,
        storage: Storage,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENTS["tuning"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        known = {**foundation.resources, **storage.resources}
        self.resources: dict[str, pulumi.Resource] = {}
        self.completions: dict[str, vertex.Completion] = {}
        image_uri: pulumi.Input[str] | None = None
        if plan.image is not None:
            img = plan.image
            repo = gcp.artifactregistry.Repository(
                img.repository_name,
                project=foundation.project_id,
                location=img.location,
                repository_id=img.repository,
                format="DOCKER",
                description="tunestack trainer image",
                labels=img.labels,
                opts=_merge(child, _deps(known, img.depends_on)),
            )
            self.resources[img.repository_name] = known[img.repository_name] = repo
            image = vertex.trainer_image(
                img.image_name,
                img,
                foundation.project_id,
                _merge(child, pulumi.ResourceOptions(depends_on=[repo])),
            )
            self.resources[img.image_name] = known[img.image_name] = image
            image_uri = vertex.image_uri(image)
        for job in plan.jobs:
            completion = vertex.tuning_job(
                job,
                foundation.project_id,
                plan.project.region,
                image_uri,
                child,
                lambda names: [known[n] for n in names],
            )
            for res in completion.resources:
                self.resources[res[0]] = known[res[0]] = res[1]
            self.completions[job.job] = completion
        self.register_outputs({"jobs": {n: c.final_uri for n, c in self.completions.items()}})


class Serving(pulumi.ComponentResource):
    """Model Garden deployments of tuned (or custom) weights.

    Attributes:
        endpoints: Endpoint name -> endpoint resource name output.
        resources: Logical name -> resource.
    """

    def __init__(
        self,
        name: str,
        plan: Plan,
        foundation: Foundation,
        storage: Storage,
        tuning: Tuning,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENTS["serving"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        known = {**foundation.resources, **storage.resources, **tuning.resources}
        self.resources: dict[str, pulumi.Resource] = {}
        self.endpoints: dict[str, pulumi.Output[Any]] = {}
        for e in plan.endpoints:
            uri: pulumi.Input[str] = e.model_uri
            opts = _merge(child, _deps(known, e.depends_on))
            if e.job is not None:
                # The checkpoint URI is the completion's output: that is the dependency.
                uri = tuning.completions[e.job].checkpoint(e.checkpoint)
                opts = child
            deployment = vertex.model_deployment(
                e, uri, foundation.project_id, plan.project.region, opts
            )
            self.resources[e.name] = deployment
            self.endpoints[e.endpoint] = vertex.endpoint_name(deployment)
        self.register_outputs({"endpoints": self.endpoints})


def emit(plan: Plan) -> dict[str, Any]:
    """Registers every resource of the plan and returns the stack outputs.

    Args:
        plan: The plan to emit.

    Returns:
        Stack outputs: ``project`` (id, number), ``buckets`` (name -> gs:// URL), ``datasets``
        (name -> train/validation URIs), ``jobs`` (name -> job resource name, run URI,
        final and per-epoch checkpoint URIs) and ``endpoints`` (name -> endpoint resource name).
    """
    foundation = Foundation("foundation", plan)
    storage = Storage("storage", plan, foundation)
    tuning = Tuning("tuning", plan, foundation, storage)
    serving = Serving("serving", plan, foundation, storage, tuning)
    return {
        "project": {"id": foundation.project_id, "number": foundation.project_number},
        "buckets": dict(sorted(storage.urls.items())),
        "datasets": {
            d.name: {"train": d.train_uri, "validation": d.validation_uri} for d in plan.datasets
        },
        "jobs": {
            name: {
                "name": c.job_name,
                "run_uri": c.output_uri,
                "final_checkpoint_uri": c.final_uri,
                "checkpoint_uris": c.checkpoint_uris,
            }
            for name, c in tuning.completions.items()
        },
        "endpoints": serving.endpoints,
    }


def _member(number: pulumi.Output[str], domain: str) -> pulumi.Output[str]:
    return number.apply(lambda n: catalog.service_agent(n, domain))


def _deps(known: dict[str, pulumi.Resource], names: tuple[str, ...]) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(depends_on=[known[n] for n in names if n in known])


def _merge(*opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    out = opts[0]
    for o in opts[1:]:
        out = pulumi.ResourceOptions.merge(out, o)
    return out
