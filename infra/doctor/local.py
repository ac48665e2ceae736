"""``tunestack doctor --local``: the same questions asked of the local API and storage emulator.

Discovery contract (issue 4): a running local server writes ``$TUNESTACK_HOME/local/api.json``
with ``{"api_url", "storage_url"}`` and keeps its bearer token in ``$TUNESTACK_HOME/local/token``.
The checks use the same client libraries a user's code would (Vertex GAPIC over REST,
google-cloud-storage), so a pass means the SDK works against the local stack too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google.oauth2.credentials
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.cloud.aiplatform_v1beta1 import GenAiTuningServiceClient
from google.cloud.storage import Client as StorageClient

from infra import gcs
from infra.doctor.api import CALL_ERRORS, TIMEOUT_S
from infra.doctor.cloud import region_check
from infra.doctor.results import CANNOT_CHECK, FAIL, PASS, CheckResult, blocked, first_line
from infra.local import home as local_home
from infra.spec.models import Spec

FIX_START = "start it: `tunestack up SPEC --local` (or `tunestack serve` in another terminal)"


@dataclass(frozen=True)
class LocalStack:
    """Where the local API and emulator listen, and the token they accept."""

    api_url: str
    storage_url: str
    token: str
    #: Why the emulator is not in its own network namespace ("" when it is).
    storage_exposed: str = ""


def run_local_checks(spec: Spec, home: Path | None = None) -> Iterator[CheckResult]:
    """Checks the local stack ``spec`` would run on, yielding each result when known.

    Args:
        spec: The loaded spec.
        home: The tunestack home; None means :func:`infra.local.home.home`.

    Yields:
        ``region``, ``local-discovery``, ``local-api``, ``local-storage`` and one
        ``bucket:NAME`` per spec bucket.
    """
    yield region_check(spec)
    later = ["local-api", "local-storage", *(f"bucket:{b.name}" for b in spec.buckets)]
    found, stack = _discover(home)
    yield found
    if stack is None:
        yield from blocked(later, "the local stack is not running", found.check)
        return
    yield _api(spec, stack)
    storage_result, client = _storage(stack, spec.project.id)
    yield storage_result
    if client is None:
        yield from blocked(later[2:], "the storage emulator does not answer", storage_result.check)
        return
    for bucket in spec.buckets:
        name = f"bucket:{bucket.name}"
        try:
            exists = client.bucket(bucket.name).exists(timeout=TIMEOUT_S, retry=None)
        except CALL_ERRORS as e:
            yield CheckResult(
                name, CANNOT_CHECK, f"bucket lookup failed: {first_line(e)}", "re-run"
            )
            continue
        if exists:
            yield CheckResult(name, PASS, f"gs://{bucket.name} exists in the emulator")
        elif bucket.create:
            yield CheckResult(
                name,
                PASS,
                f"gs://{bucket.name} does not exist yet; it is created when the spec is applied (create: true)",
            )
        else:
            yield CheckResult(name, FAIL, *missing_adopted_bucket(bucket.name, stack.storage_url))


def missing_adopted_bucket(bucket: str, storage_url: str) -> tuple[str, str]:
    """What is wrong and the fix when a ``create: false`` bucket is not in the emulator
    (doctor and ``up --local`` say the same)."""
    return (
        f"gs://{bucket} does not exist in the emulator (create: false adopts an existing bucket)",
        f"create it (`gcloud storage buckets create gs://{bucket}` with "
        f"CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE={storage_url.rstrip('/')}/storage/v1/) or set create: true",
    )


def _discover(home: Path | None) -> tuple[CheckResult, LocalStack | None]:
    api_file, token_file = local_home.api_file(home), local_home.token_file(home)
    try:
        data = local_home.read_api_info(home)
        stack = LocalStack(
            str(data["api_url"]).rstrip("/"),
            str(data["storage_url"]).rstrip("/"),
            local_home.read_token(home),
            str(data.get("storage_exposed", "")),
        )
    except FileNotFoundError as e:
        return CheckResult(
            "local-discovery",
            FAIL,
            f"{e.filename} does not exist: no local server has started",
            FIX_START,
        ), None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return CheckResult(
            "local-discovery",
            FAIL,
            f"{api_file} or {token_file} is unreadable ({first_line(e)})",
            "restart it: `tunestack serve --stop && tunestack up SPEC --local`",
        ), None
    if not stack.token:
        return CheckResult(
            "local-discovery",
            FAIL,
            f"{token_file} is empty",
            "restart it: `tunestack serve --stop && tunestack up SPEC --local`",
        ), None
    return CheckResult(
        "local-discovery", PASS, f"API at {stack.api_url}, storage at {stack.storage_url}"
    ), stack


def _api(spec: Spec, stack: LocalStack) -> CheckResult:
    creds = google.oauth2.credentials.Credentials(token=stack.token)
    parent = f"projects/{spec.project.id}/locations/{spec.project.region}"
    try:
        client = GenAiTuningServiceClient(
            credentials=creds,
            transport="rest",
            client_options=ClientOptions(api_endpoint=stack.api_url),
        )
        jobs = list(client.list_tuning_jobs(parent=parent, timeout=TIMEOUT_S))
    except (gexc.Unauthorized, gexc.Forbidden) as e:
        return CheckResult(
            "local-api",
            FAIL,
            f"{stack.api_url} refused the token ({e.code} {first_line(e)})",
            "the token file no longer matches the running server: `tunestack serve --stop && tunestack up SPEC --local`",
        )
    except auth_exc.RefreshError:
        # A 401 makes google-auth try to refresh a static token, which cannot be refreshed.
        return CheckResult(
            "local-api",
            FAIL,
            f"{stack.api_url} refused the token (HTTP 401)",
            "the token file no longer matches the running server: `tunestack serve --stop && tunestack up SPEC --local`",
        )
    except gexc.GoogleAPICallError as e:
        return CheckResult(
            "local-api",
            FAIL,
            f"{stack.api_url} answered tuningJobs.list with {e.code}: {first_line(e)}",
            "see the server log; restart it: `tunestack serve --stop && tunestack up SPEC --local`",
        )
    except CALL_ERRORS as e:
        return CheckResult(
            "local-api",
            FAIL,
            f"{stack.api_url} does not answer ({first_line(e)})",
            f"api.json is stale or the server died; {FIX_START}",
        )
    return CheckResult(
        "local-api",
        PASS,
        f"{stack.api_url} answers and accepts the token ({len(jobs)} tuning job(s) in {parent})",
    )


def _storage(stack: LocalStack, project: str) -> tuple[CheckResult, StorageClient | None]:
    try:
        # The storage door takes the API's token.
        client = gcs.client(project, stack.storage_url, token=stack.token)
        next(iter(client.list_buckets(max_results=1, timeout=TIMEOUT_S, retry=None)), None)
    except CALL_ERRORS as e:
        return CheckResult(
            "local-storage",
            FAIL,
            f"{stack.storage_url} does not answer ({first_line(e)})",
            f"the emulator is down; {FIX_START}",
        ), None
    where = (
        f"; the emulator itself listens on 127.0.0.1, reachable by any local process "
        f"({stack.storage_exposed})"
        if stack.storage_exposed
        else "; the emulator itself is reachable only through it (own network namespace)"
    )
    return CheckResult(
        "local-storage", PASS, f"storage door answers at {stack.storage_url}{where}"
    ), client
