"""Cloud Storage in one place: ``gs://`` URIs and storage clients.

Every module that reads a ``gs://`` URI parses it here, and every storage client is made
here (ADC for the cloud, the token-less emulator for the local default and tests), so the
rules for what a URI may name live once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # google-cloud-storage takes ~0.3 s to import; most callers never need it
    from google.cloud import storage

SCHEME = "gs://"


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
    project: str | None = None, endpoint: str | None = None, credentials: Any = None
) -> storage.Client:
    """A Cloud Storage client.

    Args:
        project: The project the client bills (``local`` for an emulator when None).
        endpoint: An API endpoint override (the local emulator, tests, doctor's fakes).
        credentials: google-auth credentials; None means ADC, or anonymous with an
            ``endpoint`` override (the emulator takes no credentials).
    """
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415 - slow import
    from google.cloud import storage  # noqa: PLC0415 - slow import

    if endpoint:
        return storage.Client(
            project=project or "local",
            credentials=credentials or AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
        )
    return storage.Client(project=project, credentials=credentials)
