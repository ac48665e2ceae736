"""Cloud Storage in one place: ``gs://`` URIs and storage clients.

Every module that reads a ``gs://`` URI parses it here, and every storage client is made
here (ADC for the cloud, the token-less emulator for the local default and tests), so the
rules for what a URI may name live once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # google-cloud-storage takes ~0.3 s to import; most callers never need it
    from google.cloud import storage

SCHEME = "gs://"
#: Environment variable with the bearer token of the local storage door (set for the trainer
#: and for ``validate`` reading gs:// datasets through ``STORAGE_EMULATOR_HOST``).
TOKEN_ENV = "TUNESTACK_STORAGE_TOKEN"
#: Longest object name Cloud Storage allows (bytes of UTF-8).
MAX_OBJECT_NAME_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class GsUri:
    """A parsed ``gs://bucket/object`` URI (``object`` may be empty or a prefix)."""

    bucket: str
    object: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.object}" if self.object else f"{SCHEME}{self.bucket}"

    def join(self, *parts: str) -> GsUri:
        """This URI with ``parts`` appended as ``/``-separated segments."""
        segments = [self.object.rstrip("/"), *(p.strip("/") for p in parts)]
        return GsUri(self.bucket, "/".join(s for s in segments if s))


def parse(uri: str) -> GsUri | None:
    """Splits a gs:// URI into bucket and object; None when it is not one."""
    if not uri.startswith(SCHEME):
        return None
    bucket, _, obj = uri[len(SCHEME) :].partition("/")
    return GsUri(bucket, obj)


def escape_problem(uri: str) -> str | None:
    """Why a ``gs://`` URI could name something outside its bucket, or None when it cannot.

    Refused: ``.`` or ``..`` segments (``gs://b/../../etc``), backslashes, NUL and control
    characters, and names over :data:`MAX_OBJECT_NAME_BYTES`; also a bucket that is ``.``
    or ``..``. Empty segments (``a//b``) are allowed: Cloud Storage names may contain them.
    """
    parsed = parse(uri)
    if parsed is None:
        return "not a gs:// URI"
    if _CONTROL.search(uri):
        return "contains NUL or control characters"
    if "\\" in uri:
        return "contains a backslash"
    if parsed.bucket in ("", ".", ".."):
        return "names no bucket"
    if len(parsed.object.encode()) > MAX_OBJECT_NAME_BYTES:
        return f"object name over {MAX_OBJECT_NAME_BYTES} bytes"
    for segment in parsed.object.split("/"):
        if segment in (".", ".."):
            return f"has a '{segment}' segment"
    return None


def checked(uri: str) -> GsUri:
    """Parses a gs:// URI that must stay inside its bucket.

    Raises:
        ValueError: naming the problem (see :func:`escape_problem`).
    """
    problem = escape_problem(uri)
    if problem is not None:
        raise ValueError(f"{uri[:200]!r} {problem}")
    parsed = parse(uri)
    assert parsed is not None
    return parsed


def split(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``.

    Raises:
        ValueError: when ``uri`` is not a gs:// URI or names no bucket.
    """
    parsed = parse(uri)
    if parsed is None:
        raise ValueError(f"not a gs:// URI: {uri!r}")
    if not parsed.bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return parsed.bucket, parsed.object


def is_remote(uri: str) -> bool:
    """True for anything with a URI scheme (gs://, http://, ...), False for local paths."""
    return "://" in uri


def client(
    project: str | None = None,
    endpoint: str | None = None,
    credentials: Any = None,
    token: str | None = None,
) -> storage.Client:
    """A Cloud Storage client.

    Args:
        project: The project the client bills (``local`` for an emulator when None).
        endpoint: An API endpoint override (the local storage door, tests, doctor's fakes).
        credentials: google-auth credentials; None means ADC, or ``token``, or anonymous
            with an ``endpoint`` override.
        token: A bearer token for the ``endpoint`` (the local storage door requires the
            local API's token). Default: :data:`TOKEN_ENV` when set, else none.
    """
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415 - slow import
    from google.cloud import storage  # noqa: PLC0415 - slow import
    from google.oauth2.credentials import Credentials  # noqa: PLC0415 - slow import

    if endpoint:
        token = token or os.environ.get(TOKEN_ENV)
        if credentials is None and token:
            credentials = Credentials(token=token)
        return storage.Client(
            project=project or "local",
            credentials=credentials or AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return storage.Client(project=project, credentials=credentials)
