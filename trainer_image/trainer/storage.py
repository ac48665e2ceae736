"""gs:// inputs and outputs: the /gcs FUSE mount when present, else google-cloud-storage.

Vertex custom jobs mount every bucket under ``/gcs/<bucket>/``; there a gs:// URI is just a path.
Elsewhere (local runs, the local Vertex-compatible server) objects are downloaded to a temp dir
and outputs are uploaded as they are written (checkpoints included, so resume works).
``STORAGE_EMULATOR_HOST`` is honoured by the client library (anonymous credentials are used then).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

GCS_MOUNT = Path(os.environ.get("TUNESTACK_GCS_MOUNT", "/gcs"))


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, name = uri[5:].partition("/")
    return bucket, name.strip("/")


def mounted_path(uri: str) -> Path | None:
    """The /gcs path for a gs:// URI when its bucket is mounted, else None."""
    if not uri.startswith("gs://"):
        return None
    bucket, name = split_gs(uri)
    if (GCS_MOUNT / bucket).is_dir():
        return GCS_MOUNT / bucket / name
    return None


def fetch(uri: str, dest: Path) -> Path:
    """A local path holding ``uri``: itself when local or mounted, else a download into dest.

    A gs:// URI that names no object is treated as a prefix (a model directory).

    Raises:
        FileNotFoundError: when nothing exists at ``uri``.
    """
    if not uri.startswith("gs://"):
        p = Path(uri)
        if not p.exists():
            raise FileNotFoundError(uri)
        return p
    mounted = mounted_path(uri)
    if mounted is not None:
        if not mounted.exists():
            raise FileNotFoundError(uri)
        return mounted
    bucket_name, name = split_gs(uri)
    bucket = client().bucket(bucket_name)
    blob = bucket.blob(name)
    if name and blob.exists():
        target = dest / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target))
        return target
    prefix = name + "/" if name else ""
    target = dest / (Path(name).name or bucket_name)
    found = False
    for b in client().list_blobs(bucket_name, prefix=prefix):
        if b.name.endswith("/"):
            continue
        out = target / b.name[len(prefix) :]
        out.parent.mkdir(parents=True, exist_ok=True)
        b.download_to_filename(str(out))
        found = True
    if not found:
        raise FileNotFoundError(uri)
    return target


class Output:
    """Where artifacts are written: a local dir, mirrored to gs:// when the output is remote.

    Args:
        uri: The ``--output-dir`` value.
        scratch: A temp dir used when the output is gs:// and not mounted.
    """

    def __init__(self, uri: str, scratch: Path) -> None:
        self.uri = uri.rstrip("/")
        mounted = mounted_path(self.uri)
        self.remote = self.uri.startswith("gs://") and mounted is None
        if not self.uri.startswith("gs://"):
            self.root = Path(self.uri)
        elif mounted is not None:
            self.root = mounted
        else:
            self.root = scratch / "output"
        # Local outputs are created by the first write: a run that fails validation leaves none.

    def pull(self, rel: str) -> None:
        """Downloads ``rel`` (a file or prefix under the output) when the output is remote."""
        if not self.remote:
            return
        bucket, name = split_gs(self.uri)
        prefix = f"{name}/{rel}".strip("/")
        for b in client().list_blobs(bucket, prefix=prefix):
            if b.name.endswith("/") or not (b.name == prefix or b.name.startswith(prefix + "/")):
                continue
            out = self.root / b.name[len(name) :].lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            b.download_to_filename(str(out))

    def push(self, path: Path) -> None:
        """Uploads a file or a directory tree under the output root (no-op when local)."""
        if not self.remote:
            return
        bucket_name, name = split_gs(self.uri)
        bucket = client().bucket(bucket_name)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(self.root).as_posix()
            bucket.blob(f"{name}/{rel}".lstrip("/")).upload_from_filename(str(f))

    def remove(self, path: Path) -> None:
        """Deletes a local dir and, when remote, its objects."""
        rel = path.relative_to(self.root).as_posix()
        shutil.rmtree(path, ignore_errors=True)
        if not self.remote:
            return
        bucket, name = split_gs(self.uri)
        for b in client().list_blobs(bucket, prefix=f"{name}/{rel}/".lstrip("/")):
            b.delete()


_CLIENT: Any = None


def client() -> Any:
    """A cached google-cloud-storage client (anonymous against an emulator)."""
    global _CLIENT
    if _CLIENT is None:
        from google.cloud import storage  # noqa: PLC0415  (heavy; only gs:// runs need it)

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

            _CLIENT = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                credentials=AnonymousCredentials(),
            )
        else:
            _CLIENT = storage.Client()
    return _CLIENT
