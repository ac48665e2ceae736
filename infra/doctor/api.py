"""Where the doctor's live checks call Google, and what counts as a failed call.

Shared by the cloud checks (:mod:`infra.doctor.cloud`, :mod:`infra.doctor.project`) and the
local ones (:mod:`infra.doctor.local`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc

#: One base URL for every Google API (a test's fake server, or a private gateway such as
#: https://private.googleapis.com). Unset: each API's public endpoint.
ENDPOINT_ENV = "TUNESTACK_GOOGLE_API_ENDPOINT"

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TIMEOUT_S = 30.0

# Failures of one call that make a check "cannot-check" instead of crashing the doctor: an API
# error answer, a refused or timed-out connection, credentials that stop working midway.
# Over REST an HTTP 403 raises ``Forbidden`` (gRPC's ``PermissionDenied`` is a subclass of it),
# so the checks catch ``Forbidden`` to cover both transports.
CALL_ERRORS = (gexc.GoogleAPIError, requests.RequestException, auth_exc.GoogleAuthError, OSError)


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the Google APIs the doctor calls (``{region}`` is filled for Vertex AI)."""

    resource_manager: str = "https://cloudresourcemanager.googleapis.com"
    billing: str = "https://cloudbilling.googleapis.com"
    service_usage: str = "https://serviceusage.googleapis.com"
    storage: str = "https://storage.googleapis.com"
    quotas: str = "https://cloudquotas.googleapis.com"
    aiplatform: str = "https://{region}-aiplatform.googleapis.com"
    oauth2: str = "https://oauth2.googleapis.com"

    @classmethod
    def single(cls, base_url: str) -> Endpoints:
        """Every API at one base URL."""
        url = base_url.rstrip("/")
        return cls(url, url, url, url, url, url, url)

    @classmethod
    def from_env(cls) -> Endpoints:
        """The public endpoints, or all at ``$TUNESTACK_GOOGLE_API_ENDPOINT`` when it is set."""
        base = os.environ.get(ENDPOINT_ENV, "").strip()
        return cls.single(base) if base else cls()


def client_options(endpoint: str) -> ClientOptions:
    """Client options pointing a GAPIC client at ``endpoint``."""
    return ClientOptions(api_endpoint=endpoint)
