"""Where Vertex AI calls go, and the credentials they carry.

Real Vertex AI gets gRPC with Application Default Credentials resolved at call time; the
local API (found through :mod:`infra.local.home`) gets REST with its bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import google.auth
import google.auth.credentials
from google.api_core.client_options import ClientOptions

from infra import gcs
from infra.local import home
from infra.vertex.errors import VertexError

if TYPE_CHECKING:
    from google.cloud import storage


class LocalTokenCredentials(google.auth.credentials.Credentials):
    """google-auth credentials carrying the local API's bearer token.

    The token is read from ``$TUNESTACK_HOME/local/token`` when the object is built (inside
    each call) and re-read on refresh, so a server restart with a new token is picked up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.token = self._read()

    def _read(self) -> str:
        try:
            return home.read_token()
        except FileNotFoundError as e:
            raise VertexError(
                f"no local API token at {home.token_file()}: start it with `tunestack serve`"
            ) from e

    def refresh(self, request: Any) -> None:  # noqa: ARG002 - google-auth interface
        self.token = self._read()

    @property
    def expired(self) -> bool:
        return False

    @property
    def valid(self) -> bool:
        return bool(self.token)


@dataclass(frozen=True)
class Target:
    """Where Vertex AI calls go.

    Attributes:
        project: GCP project id.
        location: Region (``us-central1``...).
        api_endpoint: None for real Vertex AI (``{location}-aiplatform.googleapis.com``, gRPC,
            ADC credentials at call time), or ``http://127.0.0.1:PORT`` for the local API
            (REST transport, bearer token from ``$TUNESTACK_HOME/local/token``).
        storage_endpoint: None for real Cloud Storage; the emulator URL for the local API
            (``Target.local()`` fills it from ``api.json``).
    """

    project: str
    location: str
    api_endpoint: str | None = None
    storage_endpoint: str | None = None

    @classmethod
    def local(cls, project: str = "local-project", location: str = "us-central1") -> Target:
        """The local API, as found in ``$TUNESTACK_HOME/local/api.json``.

        Raises:
            VertexError: the local API has not been started.
        """
        try:
            info = home.read_api_info()
        except FileNotFoundError as e:
            raise VertexError(
                f"no local API at {home.api_file()}: start it with `tunestack serve`"
            ) from e
        return cls(project, location, info["api_url"], info.get("storage_url"))

    @property
    def is_local(self) -> bool:
        return self.api_endpoint is not None

    @property
    def parent(self) -> str:
        """``projects/{project}/locations/{location}``."""
        return f"projects/{self.project}/locations/{self.location}"

    def storage_token(self) -> str | None:
        """The local storage door's token (the API's) for a local target, else None."""
        if not self.is_local:
            return None
        try:
            return home.read_token()
        except OSError:
            return None

    def storage_client(self) -> storage.Client:
        """A Cloud Storage client for this target: ADC, or the local storage door with its
        token."""
        return gcs.client(
            self.project, self.resolved_storage_endpoint(), token=self.storage_token()
        )

    def resolved_storage_endpoint(self) -> str | None:
        """The storage emulator URL for a local target (from api.json when not set)."""
        if not self.is_local or self.storage_endpoint:
            return self.storage_endpoint
        try:
            return home.read_api_info().get("storage_url")
        except FileNotFoundError:
            return None


C = TypeVar("C")


def client(cls: type[C], target: Target) -> C:
    """Builds a GAPIC client of ``cls`` for ``target`` (call inside each function; never keep)."""
    if target.api_endpoint:
        return cls(  # type: ignore[call-arg]
            transport="rest",
            client_options=ClientOptions(api_endpoint=target.api_endpoint),
            credentials=LocalTokenCredentials(),
        )
    credentials, _ = google.auth.default()
    return cls(  # type: ignore[call-arg]
        client_options=ClientOptions(api_endpoint=f"{target.location}-aiplatform.googleapis.com"),
        credentials=credentials,
    )
