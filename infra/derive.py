"""Facts derived from a spec (pure): which buckets jobs use, and the IAM grants that follow.

Grants are derived, never hand-written: both Vertex service agents get
``roles/storage.objectUser`` on every bucket a job reads or writes. ``spec.iam`` may add
grants elsewhere; it can never remove one of these.
"""

from __future__ import annotations

from infra import catalog
from infra.checks import Report
from infra.checks.spec import is_remote, parse_gs
from infra.spec import Spec


def bucket_uses(spec: Spec, report: Report | None = None) -> dict[str, list[str]]:
    """Every bucket a job reads or writes, with why.

    Args:
        spec: A loaded spec.
        report: Its validation report; when given, buckets of gs:// images found in the
            datasets count too (only dataset validation sees them).

    Returns:
        Bucket name -> sorted reasons, e.g. ``"dataset support-chat train"``, ``"job x output"``,
        ``"images of dataset y"``, ``"job x custom_base_model"``, ``"endpoint e weights"``.
    """
    uses: dict[str, set[str]] = {}

    def use(bucket: str | None, reason: str) -> None:
        if bucket:
            uses.setdefault(bucket, set()).add(reason)

    datasets = {d.name: d for d in spec.datasets}
    used = {j.dataset for j in spec.tuning_jobs}
    for name in sorted(used):
        ds = datasets.get(name)
        if ds is None:
            continue
        for key in ("train", "validation"):
            uri = getattr(ds, key)
            if uri is None:
                continue
            gs = parse_gs(uri)
            # Local files are uploaded to the dataset's bucket, which Vertex then reads.
            use(
                gs.bucket if gs else (None if is_remote(uri) else ds.bucket),
                f"dataset {name} {key}",
            )
            summary = report.files.get(uri) if report is not None else None
            for b in summary.image_buckets if summary else []:
                use(b, f"images of dataset {name}")
    for j in spec.tuning_jobs:
        gs = parse_gs(j.output_uri)
        use(gs.bucket if gs else None, f"job {j.name} output")
        if j.custom_base_model:
            gs = parse_gs(j.custom_base_model)
            use(gs.bucket if gs else None, f"job {j.name} custom_base_model")
    for e in spec.endpoints:
        gs = parse_gs(e.model)
        use(gs.bucket if gs else None, f"endpoint {e.name} weights")
    return {b: sorted(r) for b, r in sorted(uses.items())}


def derived_grants(spec: Spec, report: Report | None = None) -> list[tuple[str, str]]:
    """(bucket, service agent domain) for both Vertex agents on every used bucket, sorted.

    The member is ``catalog.service_agent(project_number, domain)``; the role is
    ``catalog.BUCKET_ROLE``. Extra grants in ``spec.iam`` come on top of these.
    """
    return [(b, d) for b in bucket_uses(spec, report) for d in catalog.SERVICE_AGENT_DOMAINS]
