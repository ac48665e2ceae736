"""The storage nodes of a plan: buckets, the derived and extra bucket grants, dataset uploads.

Local dataset files are uploaded under content-addressed names (their sha256 from the
validation report), so changed data is a new object and an unchanged one is never re-sent.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra import catalog, gcs
from infra.checks.report import Report
from infra.plan import derive
from infra.plan.model import AgentsPlan, BucketPlan, DatasetPlan, GrantPlan, ProjectPlan, UploadPlan
from infra.plan.names import MANAGED_BY
from infra.spec.models import Spec


def plan_buckets(
    spec: Spec, report: Report, project: ProjectPlan, base: tuple[str, ...]
) -> tuple[BucketPlan, ...]:
    """The spec's buckets in spec order, then buckets only referenced (for grants) by name.

    Args:
        spec: The validated spec.
        report: Its validation report (image buckets count as used).
        project: The project node (region and labels).
        base: What a created bucket depends on (the project, the storage API).
    """
    uses = {
        b: tuple(sorted(str(r) for r in reasons))
        for b, reasons in derive.bucket_uses(spec, report).items()
    }
    output_buckets = {derive.bucket_of(j.output_uri) for j in spec.tuning_jobs}
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


def plan_grants(
    spec: Spec,
    report: Report,
    managed: dict[str, BucketPlan],
    agents: AgentsPlan,
    api: dict[str, str],
) -> tuple[GrantPlan, ...]:
    """Both service agents on every used bucket, then the spec's extra grants; by name.

    Args:
        spec: The validated spec.
        report: Its validation report.
        managed: The buckets the plan creates, by bucket name.
        agents: The service-agent nodes.
        api: Service name -> the API node's logical name.
    """
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


def plan_datasets(
    spec: Spec, report: Report, spec_dir: Path, managed: dict[str, BucketPlan]
) -> tuple[tuple[UploadPlan, ...], dict[str, DatasetPlan]]:
    """The uploads of local dataset files (spec order), and each dataset's URIs by name.

    Args:
        spec: The validated spec (a dataset with local files has a ``bucket``).
        report: Its validation report (every local file's sha256).
        spec_dir: The spec's folder; local paths are relative to it.
        managed: The buckets the plan creates, by bucket name.
    """
    uploads: list[UploadPlan] = []
    datasets: dict[str, DatasetPlan] = {}
    for ds in spec.datasets:
        uris: dict[str, str | None] = {"train": None, "validation": None}
        names: list[str] = []
        for split, ref in (("train", ds.train), ("validation", ds.validation)):
            if ref is None:
                continue
            if ref.startswith(gcs.SCHEME):
                uris[split] = ref
                continue
            assert ds.bucket is not None, "validation requires a bucket for local files"
            written = spec_dir / Path(ref).expanduser()
            summary = derive.file_summary(report, ref, written)
            local = Path(summary.local_path if summary and summary.local_path else written)
            sha = derive.sha256(report, ref, local)
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


# --- helpers -------------------------------------------------------------------------------


def _bucket_dep(bucket: str, managed: dict[str, BucketPlan]) -> tuple[str, ...]:
    plan = managed.get(bucket)
    return (plan.name,) if plan else ()


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", text).strip("-")
