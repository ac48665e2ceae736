"""spec + validation report -> :class:`~infra.plan.model.Plan` (pure: no I/O, no Pulumi).

The validation report supplies what only reading the data can tell: each local file's sha256
(content-addressed object names), token counts (estimates) and the buckets images live in
(grants). Everything else comes from the spec and the catalog. The plan trusts its input:
every rule is a check of ``tunestack validate`` (:mod:`infra.checks`), so a spec that
validated always plans. The foundation (project, APIs, service agents) is planned here; the
storage, tuning and serving nodes in the modules of those names.
"""

from __future__ import annotations

from pathlib import Path

from infra import catalog
from infra.checks.report import Report
from infra.plan.model import AgentsPlan, ApiPlan, Plan, ProjectPlan
from infra.plan.names import AGENTS, IDENTITY, PROJECT, TRAINER_IMAGE_APIS
from infra.plan.serving import plan_endpoints
from infra.plan.storage import plan_buckets, plan_datasets, plan_grants
from infra.plan.tuning import plan_image, plan_jobs
from infra.spec.models import Spec


def build_plan(spec: Spec, report: Report, spec_path: str | Path) -> Plan:
    """Compiles a validated spec into a plan.

    Args:
        spec: The validated spec (``report.spec``; ``report.ok`` must be True).
        report: The ``infra.checks.validate`` report of that spec (``files`` with sha256 and
            image buckets, ``jobs`` with token estimates).
        spec_path: The spec file; local dataset paths are relative to its folder.

    Returns:
        The plan. Same inputs give an equal plan (no clocks, no randomness, stable order).
    """
    spec_dir = Path(spec_path).parent
    project = _project(spec)
    apis = _apis(spec, project)
    api = {a.service: a.name for a in apis}
    agents = AgentsPlan(
        identity_name=IDENTITY,
        agents_name=AGENTS,
        domains=catalog.SERVICE_AGENT_DOMAINS,
        depends_on=(api["aiplatform.googleapis.com"],),
    )
    base = ((PROJECT,) if project.create else ()) + (api["storage.googleapis.com"],)

    buckets = plan_buckets(spec, report, project, base)
    managed = {b.bucket: b for b in buckets if b.create}
    grants = plan_grants(spec, report, managed, agents, api)
    grants_by_bucket: dict[str, list[str]] = {}
    for g in grants:
        if g.agent_domain is not None:
            grants_by_bucket.setdefault(g.bucket, []).append(g.name)

    uploads, datasets = plan_datasets(spec, report, spec_dir, managed)
    image = plan_image(spec, project, api)
    jobs = plan_jobs(spec, report, spec_dir, datasets, uploads, grants_by_bucket, image, api)
    endpoints = plan_endpoints(spec, jobs, grants_by_bucket, api)
    return Plan(
        spec_path=str(spec_path),
        project=project,
        apis=apis,
        agents=agents,
        buckets=buckets,
        grants=grants,
        uploads=uploads,
        datasets=tuple(datasets.values()),
        image=image,
        jobs=jobs,
        endpoints=endpoints,
    )


# --- helpers -------------------------------------------------------------------------------


def _project(spec: Spec) -> ProjectPlan:
    p = spec.project
    return ProjectPlan(
        name=PROJECT,
        project_id=p.id,
        region=p.region,
        create=p.create,
        number=p.number,
        billing_account=p.billing_account,
        # Validated as numeric ids, written bare or with their resource prefix.
        folder_id=_numeric(p.folder_id, "folders/"),
        org_id=_numeric(p.org_id, "organizations/"),
        labels=dict(sorted(p.labels.items())),
    )


def _apis(spec: Spec, project: ProjectPlan) -> tuple[ApiPlan, ...]:
    services = set(catalog.REQUIRED_APIS) | set(spec.apis)
    if any(j.engine == "trainer_image" for j in spec.tuning_jobs) or spec.trainer_image:
        services |= set(TRAINER_IMAGE_APIS)
    deps = (PROJECT,) if project.create else ()
    return tuple(
        ApiPlan(name=f"api-{s.split('.')[0]}", service=s, depends_on=deps) for s in sorted(services)
    )


def _numeric(value: str | None, prefix: str) -> str | None:
    return value.removeprefix(prefix) if value else None
