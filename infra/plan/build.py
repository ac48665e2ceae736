"""spec + validation report -> :class:`~infra.plan.model.Plan` (pure: no I/O, no Pulumi).

The validation report supplies what only reading the data can tell: each local file's sha256
(content-addressed object names), token counts (estimates) and the buckets images live in
(grants). Everything else comes from the spec and the catalog.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from infra import catalog, derive
from infra.plan.model import (
    AgentsPlan,
    ApiPlan,
    BucketPlan,
    DatasetPlan,
    EndpointPlan,
    GrantPlan,
    ImagePlan,
    JobPlan,
    Plan,
    ProjectPlan,
    UploadPlan,
)
from infra.spec.models import Spec

#: APIs the trainer_image engine needs on top of the required ones (image build + registry).
TRAINER_IMAGE_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com")

#: Label put on everything tunestack creates, so a console filter finds it.
MANAGED_BY = {"managed-by": "tunestack"}

PROJECT = "project"
IDENTITY = "agent-aiplatform"
AGENTS = "agent-vertex-moss-ft"
REPOSITORY = "trainer-repository"
IMAGE = "trainer-image"


def build_plan(spec: Spec, report: Any, spec_path: str | Path) -> Plan:
    """Compiles a validated spec into a plan.

    Args:
        spec: The validated spec.
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

    uses = {
        b: tuple(sorted(str(r) for r in reasons))
        for b, reasons in derive.bucket_uses(spec, report).items()
    }
    output_buckets = {_bucket_of(j.output_uri) for j in spec.tuning_jobs}
    buckets = _buckets(spec, project, uses, output_buckets, base)
    managed = {b.bucket: b for b in buckets if b.create}

    grants = _grants(spec, report, managed, agents, api)
    grants_by_bucket: dict[str, list[str]] = {}
    for g in grants:
        if g.agent_domain is not None:
            grants_by_bucket.setdefault(g.bucket, []).append(g.name)

    uploads, datasets = _datasets(spec, report, spec_dir, managed)
    image = _image(spec, project, api)
    jobs = _jobs(spec, report, spec_dir, datasets, uploads, grants_by_bucket, image, api)
    endpoints = _endpoints(spec, jobs, grants_by_bucket, api)
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


def bucket_of(uri: str) -> str | None:
    """The bucket of a ``gs://bucket/...`` URI, or None for anything else."""
    return _bucket_of(uri)


def _project(spec: Spec) -> ProjectPlan:
    p = spec.project
    return ProjectPlan(
        name=PROJECT,
        project_id=p.id,
        region=p.region,
        create=p.create,
        number=p.number,
        billing_account=p.billing_account,
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


def _buckets(
    spec: Spec,
    project: ProjectPlan,
    uses: dict[str, tuple[str, ...]],
    output_buckets: set[str | None],
    base: tuple[str, ...],
) -> tuple[BucketPlan, ...]:
    labels = {**MANAGED_BY, **project.labels}
    plans = [
        BucketPlan(
            name=f"bucket-{b.name}",
            bucket=b.name,
            location=(b.location or project.region).upper(),
            create=b.create,
            protect=b.protect,
            versioning=b.name in output_buckets,
            labels=dict(sorted(labels.items())),
            uses=uses.get(b.name, ()),
            depends_on=base if b.create else (),
        )
        for b in spec.buckets
    ]
    # Derived buckets the spec does not list (e.g. images in another bucket): grants only.
    listed = {b.name for b in spec.buckets}
    for name in sorted(set(uses) - listed):
        plans.append(
            BucketPlan(
                name=f"bucket-{name}",
                bucket=name,
                location=project.region.upper(),
                create=False,
                protect=False,
                versioning=False,
                labels={},
                uses=uses[name],
                depends_on=(),
            )
        )
    return tuple(plans)


def _grants(
    spec: Spec,
    report: Any,
    managed: dict[str, BucketPlan],
    agents: AgentsPlan,
    api: dict[str, str],
) -> tuple[GrantPlan, ...]:
    common = (
        agents.identity_name,
        agents.agents_name,
        api["aiplatform.googleapis.com"],
        api["storage.googleapis.com"],
    )
    grants: dict[str, GrantPlan] = {}
    for bucket, domain in derive.derived_grants(spec, report):
        name = f"grant-{bucket}-{domain.removeprefix('gcp-sa-')}"
        grants[name] = GrantPlan(
            name=name,
            bucket=bucket,
            role=catalog.BUCKET_ROLE,
            agent_domain=domain,
            member=None,
            depends_on=_bucket_dep(bucket, managed) + common,
        )
    for extra in spec.iam:
        name = f"grant-{extra.bucket}-{_slug(extra.member)}-{extra.role.rsplit('/', 1)[-1]}"
        grants[name] = GrantPlan(
            name=name,
            bucket=extra.bucket,
            role=extra.role,
            agent_domain=None,
            member=extra.member,
            depends_on=_bucket_dep(extra.bucket, managed) + (api["storage.googleapis.com"],),
        )
    return tuple(grants[n] for n in sorted(grants))


def _datasets(
    spec: Spec, report: Any, spec_dir: Path, managed: dict[str, BucketPlan]
) -> tuple[tuple[UploadPlan, ...], dict[str, DatasetPlan]]:
    uploads: list[UploadPlan] = []
    datasets: dict[str, DatasetPlan] = {}
    for ds in spec.datasets:
        uris: dict[str, str | None] = {"train": None, "validation": None}
        names: list[str] = []
        for split, ref in (("train", ds.train), ("validation", ds.validation)):
            if ref is None:
                continue
            if ref.startswith("gs://"):
                uris[split] = ref
                continue
            assert ds.bucket is not None, "validation requires a bucket for local files"
            summary = _summary(report, ref, spec_dir / Path(ref).expanduser())
            local = Path(getattr(summary, "local_path", None) or spec_dir / Path(ref).expanduser())
            sha = _sha256(report, ref, local)
            bucket = managed.get(ds.bucket)
            upload = UploadPlan(
                name=f"dataset-{ds.name}-{split}",
                dataset=ds.name,
                split=split,
                bucket=ds.bucket,
                object_name=f"tunestack/datasets/{ds.name}/{sha[:16]}/{split}.jsonl",
                local_path=str(local),
                sha256=sha,
                retain=bool(bucket and bucket.protect),
                depends_on=(bucket.name,) if bucket else (),
            )
            uploads.append(upload)
            names.append(upload.name)
            uris[split] = upload.uri
        train = uris["train"]
        assert train is not None
        datasets[ds.name] = DatasetPlan(ds.name, train, uris["validation"], tuple(names))
    return tuple(uploads), datasets


def _image(spec: Spec, project: ProjectPlan, api: dict[str, str]) -> ImagePlan | None:
    if not any(j.engine == "trainer_image" for j in spec.tuning_jobs):
        return None
    settings = spec.trainer_image
    repository = settings.repository if settings else "tunestack"
    location = (settings.location if settings and settings.location else None) or project.region
    return ImagePlan(
        repository_name=REPOSITORY,
        image_name=IMAGE,
        repository=repository,
        location=location,
        image_uri=f"{location}-docker.pkg.dev/{project.project_id}/{repository}/trainer",
        labels=dict(sorted({**MANAGED_BY, **project.labels}.items())),
        depends_on=tuple(api[s] for s in TRAINER_IMAGE_APIS),
    )


def _jobs(
    spec: Spec,
    report: Any,
    spec_dir: Path,
    datasets: dict[str, DatasetPlan],
    uploads: tuple[UploadPlan, ...],
    grants_by_bucket: dict[str, list[str]],
    image: ImagePlan | None,
    api: dict[str, str],
) -> tuple[JobPlan, ...]:
    summaries = {s.name: s for s in getattr(report, "jobs", None) or ()}
    lanes = spec.project.max_concurrent_tuning_jobs
    names = {j.name: _job_names(j.name) for j in spec.tuning_jobs}
    position = {j.name: i for i, j in enumerate(spec.tuning_jobs)}
    outputs = {j.name: j.output_uri.rstrip("/") + "/" for j in spec.tuning_jobs}
    ds_specs = {d.name: d for d in spec.datasets}
    jobs: list[JobPlan] = []
    for i, job in enumerate(spec.tuning_jobs):
        ds = datasets[job.dataset]
        after: list[str] = []
        # The quota: N lanes; a job waits for the job N places before it in spec order.
        if i >= lanes:
            after.append(spec.tuning_jobs[i - lanes].name)
        # Continued training from an earlier job's output needs that output to exist.
        if job.custom_base_model:
            after += [
                n
                for n, prefix in outputs.items()
                if n != job.name and job.custom_base_model.startswith(prefix)
            ]
        after = sorted(set(after), key=position.__getitem__)

        buckets = {
            _bucket_of(u)
            for u in (ds.train_uri, ds.validation_uri, job.output_uri, job.custom_base_model)
            if u
        }
        buckets |= _image_buckets(report, ds_specs[job.dataset], spec_dir)
        deps = [api["aiplatform.googleapis.com"]]
        deps += sorted(
            g for b in sorted(b for b in buckets if b) for g in grants_by_bucket.get(b, ())
        )
        deps += [u.name for u in uploads if u.dataset == job.dataset]
        if job.engine == "trainer_image" and image is not None:
            deps.append(image.image_name)
        deps += [names[a][1] for a in after]

        identity = []
        for split, ref in (
            ("train", ds_specs[job.dataset].train),
            ("validation", ds_specs[job.dataset].validation),
        ):
            sha = getattr(_summary(report, ref, spec_dir / ref), "sha256", None) if ref else None
            if sha:
                identity.append(f"{split}:{sha}")
        summary = summaries.get(job.name)
        train = ds_specs[job.dataset].train
        if not getattr(_summary(report, train, spec_dir / train), "checked", False):
            # The training file was not read (gs:// without access): counts are unknown, not 0.
            summary = None
        tokens = getattr(summary, "tokens", None)
        name, completion = names[job.name]
        jobs.append(
            JobPlan(
                name=name,
                completion_name=completion,
                job=job.name,
                engine=job.engine,
                base_model=job.base_model,
                custom_base_model=job.custom_base_model,
                tuning_mode=job.tuning_mode,
                epochs=job.epochs,
                learning_rate=job.learning_rate,
                learning_rate_multiplier=job.learning_rate_multiplier,
                adapter_size=job.adapter_size,
                train_uri=ds.train_uri,
                validation_uri=ds.validation_uri,
                output_uri=job.output_uri.rstrip("/"),
                labels=dict(sorted({**MANAGED_BY, **spec.project.labels, **job.labels}.items())),
                replicas=job.replicas,
                machine_type=job.machine_type,
                dataset_identity=";".join(identity) or None,
                after=tuple(after),
                depends_on=tuple(dict.fromkeys(deps)),
                examples=getattr(summary, "examples", None),
                tokens=tokens,
                tokens_exact=bool(getattr(summary, "tokens_exact", False)),
                training_tokens=getattr(summary, "training_tokens", None),
                checkpoints=catalog.checkpoints_kept(job.epochs),
            )
        )
    return tuple(jobs)


def _endpoints(
    spec: Spec,
    jobs: tuple[JobPlan, ...],
    grants_by_bucket: dict[str, list[str]],
    api: dict[str, str],
) -> tuple[EndpointPlan, ...]:
    by_job = {j.job: j for j in jobs}
    plans = []
    for e in spec.endpoints:
        job = by_job.get(e.model)
        if job is not None:
            uri = catalog.checkpoint_uri(job.output_uri, e.checkpoint)
            deps: tuple[str, ...] = (job.completion_name,)
            model_id: str | None = e.base_model or job.base_model
        else:
            uri = e.model.rstrip("/")
            deps = (
                api["aiplatform.googleapis.com"],
                *sorted(grants_by_bucket.get(_bucket_of(uri) or "", ())),
            )
            model_id = e.base_model
        entry = catalog.model(model_id) if model_id else None
        accelerator = catalog.ACCELERATORS.get(e.accelerator_type)
        weights = round(entry.bf16_weights_gb, 2) if entry else None
        fits = None
        if weights is not None and accelerator is not None:
            fits = weights <= accelerator.memory_gb * e.accelerator_count
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
            )
        )
    return tuple(plans)


def _job_names(job: str) -> tuple[str, str]:
    return f"job-{job}", f"job-{job}-done"


def _bucket_dep(bucket: str, managed: dict[str, BucketPlan]) -> tuple[str, ...]:
    plan = managed.get(bucket)
    return (plan.name,) if plan else ()


def _bucket_of(uri: str | None) -> str | None:
    if not uri or not uri.startswith("gs://"):
        return None
    return uri[5:].split("/", 1)[0] or None


def _summary(report: Any, ref: str, local: Path) -> Any:
    files = getattr(report, "files", None) or {}
    if ref in files:
        return files[ref]
    target = _resolved(local)
    for key, summary in files.items():
        path = getattr(summary, "local_path", None) or key
        if path and _resolved(Path(path)) == target:
            return summary
    return None


def _sha256(report: Any, ref: str, local: Path) -> str:
    summary = _summary(report, ref, local)
    sha = getattr(summary, "sha256", None)
    if not sha:
        raise ValueError(f"validation report has no sha256 for dataset file {ref!r}")
    return str(sha)


def _image_buckets(report: Any, ds: Any, spec_dir: Path) -> set[str | None]:
    found: set[str | None] = set()
    for ref in (ds.train, ds.validation):
        if ref is None:
            continue
        summary = _summary(report, ref, spec_dir / ref)
        found |= set(getattr(summary, "image_buckets", None) or ())
    return found


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def _numeric(value: str | None, prefix: str) -> str | None:
    return value.removeprefix(prefix) if value else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", text).strip("-")
