"""gs:// inputs and outputs: the /gcs FUSE mount when present, else google-cloud-storage.

Vertex custom jobs mount every bucket under ``/gcs/<bucket>/``; there a gs:// URI is just a path.
Elsewhere (local runs, the local Vertex-compatible server) objects are downloaded to a temp dir
and outputs are uploaded as they are written (checkpoints included, so resume works).
With ``STORAGE_EMULATOR_HOST`` the client talks to that endpoint, sending the local storage
door's token (``TUNESTACK_STORAGE_TOKEN``) when set. Every gs:// URI is checked by
:func:`escape_problem` before use.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

GCS_MOUNT = Path(os.environ.get("TUNESTACK_GCS_MOUNT", "/gcs"))
#: Bearer token of the local storage door (set by the local API for the trainers it runs).
TOKEN_ENV = "TUNESTACK_STORAGE_TOKEN"
#: Longest object name Cloud Storage allows (bytes of UTF-8).
MAX_OBJECT_NAME_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape_problem(uri: str) -> str | None:
    """Why a gs:// URI could name something outside its bucket, else None.

    The trainer's copy of ``infra.gcs.escape_problem`` (the trainer must not import infra;
    a test checks the two agree): ``.``/``..`` segments, backslashes, NUL and control
    characters, over-long names, and a bucket that is empty, ``.`` or ``..``.
    """
    if not uri.startswith("gs://"):
        return "not a gs:// URI"
    if _CONTROL.search(uri):
        return "contains NUL or control characters"
    if "\\" in uri:
        return "contains a backslash"
    bucket, _, name = uri[5:].partition("/")
    if bucket in ("", ".", ".."):
        return "names no bucket"
    if len(name.encode()) > MAX_OBJECT_NAME_BYTES:
        return f"object name over {MAX_OBJECT_NAME_BYTES} bytes"
    for segment in name.split("/"):
        if segment in (".", ".."):
            return f"has a '{segment}' segment"
    return None


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``).

    Raises:
        ValueError: when the URI could escape its bucket (``gs://b/../../etc``).
    """
    problem = escape_problem(uri)
    if problem is not None:
        raise ValueError(f"{uri[:200]!r} {problem}")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name.strip("/")


def local_file_problem(path: Path) -> str | None:
    """Why a local input is not a readable regular file, else None (never opens it)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "is a dangling symlink" if path.is_symlink() else "does not exist"
    except OSError as e:  # ELOOP (a symlink loop), EACCES, ENOTDIR
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a JSONL file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


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

        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
            from google.oauth2.credentials import Credentials  # noqa: PLC0415

            token = os.environ.get(TOKEN_ENV)
            _CLIENT = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                credentials=Credentials(token=token) if token else AnonymousCredentials(),
                client_options={"api_endpoint": emulator},
            )
        else:
            _CLIENT = storage.Client()
    return _CLIENT
