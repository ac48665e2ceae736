"""Buckets and dataset uploads of ``up``/``down --local``, as the cloud would treat them.

``create: false`` buckets must already exist (checked before anything is created or
uploaded); ``--delete-buckets`` never deletes them and refuses ``protect: true`` ones without
``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from rich.console import Console
from rich.status import Status

from infra import gcs
from infra.doctor.local import missing_adopted_bucket
from infra.local.outcome import Changes, UpError
from infra.plan import Plan


def ensure_buckets(
    buckets_api: Any, plan: Plan, changes: Changes, console: Console, status: Status
) -> None:
    """Creates the buckets the plan names (declared ones, and those of outputs and uploads)
    that do not exist yet; existing ones are adopted."""
    wanted = [b.bucket for b in plan.buckets]
    for uri in [j.output_uri for j in plan.jobs] + [u.uri for u in plan.uploads]:
        name = gcs.split(uri)[0]
        if name not in wanted:
            wanted.append(name)
    for name in wanted:
        status.update(f"bucket {name}")
        if buckets_api.bucket(name).exists():
            changes.adopted.append(f"bucket {name}")
            continue
        try:
            buckets_api.create_bucket(name)
        except gexc.Conflict:
            changes.adopted.append(f"bucket {name}")
            continue
        changes.created.append(f"bucket {name}")
        console.print(f"[green]+[/] bucket gs://{name}")


def check_adopted_buckets(buckets_api: Any, plan: Plan, storage_url: str, status: Status) -> None:
    """``create: false`` buckets must exist, as in the cloud: checked before anything is
    created or uploaded (the message is doctor --local's)."""
    for bucket in (b for b in plan.buckets if not b.create):
        status.update(f"bucket {bucket.bucket}")
        if not buckets_api.bucket(bucket.bucket).exists():
            problem, fix = missing_adopted_bucket(bucket.bucket, storage_url)
            raise UpError(f"{problem}: {fix}; nothing was uploaded or submitted")


def check_may_delete(plan: Plan, force: bool) -> None:
    """``--delete-buckets`` refuses protected buckets without ``--force``, before any removal."""
    protected = [b.bucket for b in plan.buckets if b.create and b.protect]
    if protected and not force:
        names = ", ".join(f"gs://{n}" for n in protected)
        raise UpError(
            f"{names}: protect: true, so --delete-buckets will not delete it (add --force to "
            f"delete protected buckets and their objects); nothing was removed"
        )


def delete_buckets(buckets_api: Any, plan: Plan, changes: Changes, console: Console) -> None:
    """Deletes the buckets the spec manages (``create: true``) with their objects; buckets it
    only adopts (``create: false``) are never deleted."""
    for bucket in plan.buckets:
        if not bucket.create:
            console.print(f"  bucket gs://{bucket.bucket} kept: create: false (not tunestack's)")
            continue
        b = buckets_api.bucket(bucket.bucket)
        if not b.exists():
            continue
        for blob in buckets_api.list_blobs(bucket.bucket):
            blob.delete()
        b.delete()
        changes.deleted.append(f"bucket {bucket.bucket}")
        protected = " (protected; --force)" if bucket.protect else ""
        console.print(f"[red]-[/] bucket {bucket.bucket} deleted{protected}")


def upload_datasets(
    buckets_api: Any, plan: Plan, changes: Changes, console: Console, status: Status
) -> None:
    """Uploads each dataset file under its content-addressed name (an existing object already
    holds exactly these bytes, so it is adopted)."""
    for upload in plan.uploads:
        status.update(f"dataset {upload.dataset} ({upload.split})")
        blob = buckets_api.bucket(upload.bucket).blob(upload.object_name)
        if blob.exists():
            changes.adopted.append(f"upload {upload.uri}")
            continue
        # Content-addressed name: an existing object already holds exactly these bytes.
        blob.upload_from_filename(upload.local_path)
        changes.created.append(f"upload {upload.uri}")
        console.print(
            f"[green]+[/] {upload.uri} ({Path(upload.local_path).stat().st_size:,} bytes)"
        )
