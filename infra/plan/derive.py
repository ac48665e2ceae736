"""Facts the plan derives from a spec and its validation report (pure).

Which buckets jobs use, and the IAM grants that follow: grants are derived, never
hand-written. Both Vertex service agents get ``roles/storage.objectUser`` on every bucket a
job reads or writes; ``spec.iam`` may add grants elsewhere, it can never remove one of these.
And what validation read of each dataset file (its sha256, images, counts).
"""

from __future__ import annotations

from pathlib import Path

from infra import catalog, gcs
from infra.checks.report import FileSummary, Report
from infra.spec import Dataset, Spec


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
            gs = gcs.parse(uri)
            # Local files are uploaded to the dataset's bucket, which Vertex then reads.
            use(
                gs.bucket if gs else (None if gcs.is_remote(uri) else ds.bucket),
                f"dataset {name} {key}",
            )
            summary = report.files.get(uri) if report is not None else None
            for b in summary.image_buckets if summary else []:
                use(b, f"images of dataset {name}")
    for j in spec.tuning_jobs:
        use(bucket_of(j.output_uri), f"job {j.name} output")
        if j.custom_base_model:
            use(bucket_of(j.custom_base_model), f"job {j.name} custom_base_model")
    for e in spec.endpoints:
        use(bucket_of(e.model), f"endpoint {e.name} weights")
    return {b: sorted(r) for b, r in sorted(uses.items())}


def derived_grants(spec: Spec, report: Report | None = None) -> list[tuple[str, str]]:
    """(bucket, service agent domain) for both Vertex agents on every used bucket, sorted.

    The member is ``catalog.service_agent(project_number, domain)``; the role is
    ``catalog.BUCKET_ROLE``. Extra grants in ``spec.iam`` come on top of these.
    """
    return [(b, d) for b in bucket_uses(spec, report) for d in catalog.SERVICE_AGENT_DOMAINS]


def bucket_of(uri: str | None) -> str | None:
    """The bucket of a ``gs://bucket/...`` URI, or None for anything else (or no bucket)."""
    gs = gcs.parse(uri) if uri else None
    return (gs.bucket or None) if gs else None


def file_summary(report: Report, ref: str, local: Path) -> FileSummary | None:
    """What validation read of a dataset file: by the path as written, else by resolved path."""
    if ref in report.files:
        return report.files[ref]
    target = _resolved(local)
    for key, summary in report.files.items():
        path = summary.local_path or key
        if path and _resolved(Path(path)) == target:
            return summary
    return None


def sha256(report: Report, ref: str, local: Path) -> str:
    """The sha256 validation computed for a local dataset file.

    Raises:
        ValueError: The report has none (the file was not validated with its datasets).
    """
    summary = file_summary(report, ref, local)
    if summary is None or not summary.sha256:
        raise ValueError(f"validation report has no sha256 for dataset file {ref!r}")
    return summary.sha256


def image_buckets(report: Report, ds: Dataset, spec_dir: Path) -> set[str]:
    """Buckets that the images of a dataset's files live in."""
    found: set[str] = set()
    for ref in (ds.train, ds.validation):
        if ref is None:
            continue
        summary = file_summary(report, ref, spec_dir / ref)
        found |= set(summary.image_buckets if summary else ())
    return found


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)
