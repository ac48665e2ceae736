"""Live, read-only pre-flight checks of a spec's GCP project with Application Default Credentials.

Every call goes through Google's own client libraries over REST, each pointed at an endpoint
from :class:`Endpoints` so that a test (or a private API gateway) can stand in for Google.
Nothing here writes: the only calls are gets, lists, ``getIamPolicy``, ``testIamPermissions``
and OAuth2 ``tokeninfo`` (to name the caller).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import google.auth
import requests
from google.auth import exceptions as auth_exc
from google.auth.credentials import Credentials
from google.auth.transport.requests import Request

from infra import catalog
from infra.doctor import project
from infra.doctor.api import SCOPES, Endpoints
from infra.doctor.results import FAIL, PASS, CheckResult, blocked, first_line
from infra.spec.models import Spec


def run_cloud_checks(
    spec: Spec, credentials: Credentials | None = None, endpoints: Endpoints | None = None
) -> Iterator[CheckResult]:
    """Runs every live check of ``spec``'s project, yielding each result as soon as it is known.

    Args:
        spec: The loaded spec.
        credentials: Credentials to use; None means Application Default Credentials.
        endpoints: API base URLs; None means :meth:`Endpoints.from_env`.

    Yields:
        One :class:`CheckResult` per check, in a fixed order. Checks that need an earlier one
        to pass (a reachable project, credentials) yield ``cannot-check`` when it did not.
    """
    endpoints = endpoints or Endpoints.from_env()
    yield region_check(spec)
    creds_result, creds, who = _credentials_check(credentials, endpoints)
    yield creds_result
    names = _later_checks(spec)
    if creds is None:
        yield from blocked(names, "no usable credentials", creds_result.check)
        return
    doctor = project.ProjectChecks(spec, creds, endpoints, who)
    project_result, number = doctor.project()
    yield project_result
    if number is None:
        why = "does not exist yet" if project_result.status == PASS else "is not reachable"
        yield from blocked(names[1:], f"project {spec.project.id} {why}", project_result.check)
        return
    # Cloud Quotas and Service Usage refuse user credentials without a quota project; the spec's
    # project is the natural one, and it exists by now.
    doctor.use_quota_project()
    yield doctor.billing()
    yield from doctor.apis(number)
    yield from doctor.agents(number)
    for bucket in spec.buckets:
        yield doctor.bucket(bucket)
    quota_result, limit = doctor.quota()
    yield quota_result
    yield doctor.running_jobs(limit)


def region_check(spec: Spec) -> CheckResult:
    """The spec's region runs open-model tuning (pure: no call)."""
    region = spec.project.region
    if region in catalog.TUNING_REGIONS:
        return CheckResult("region", PASS, f"{region} runs open-model tuning")
    close = difflib.get_close_matches(region, catalog.TUNING_REGIONS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return CheckResult(
        "region",
        FAIL,
        f"{region} does not run open-model tuning{hint}",
        f"set project.region to one of {', '.join(catalog.TUNING_REGIONS)}",
    )


def principal(creds: Credentials, email: str | None = None) -> str:
    """Whose credentials these are, as an IAM member when known.

    Args:
        creds: The credentials.
        email: The token's email from tokeninfo, used when the credentials do not name one.
    """
    sa_email = getattr(creds, "service_account_email", None)
    if sa_email and sa_email != "default":
        return f"serviceAccount:{sa_email}"
    account = getattr(creds, "account", None) or email
    if account:
        kind = "serviceAccount" if account.endswith(".gserviceaccount.com") else "user"
        return f"{kind}:{account}"
    return f"{type(creds).__module__}.{type(creds).__name__} (no account recorded)"


def _credentials_check(
    given: Credentials | None, endpoints: Endpoints
) -> tuple[CheckResult, Credentials | None, str]:
    fix_login = (
        "run `gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS "
        "at a service account key, or run where a metadata server or workload identity is set up"
    )
    try:
        creds = given if given is not None else google.auth.default(scopes=SCOPES)[0]
    except auth_exc.DefaultCredentialsError as e:
        return (
            CheckResult(
                "credentials",
                FAIL,
                f"no Application Default Credentials ({first_line(e)})",
                fix_login,
            ),
            None,
            "",
        )
    if not creds.valid:
        try:
            creds.refresh(Request())
        except (auth_exc.GoogleAuthError, requests.RequestException, OSError) as e:
            return (
                CheckResult(
                    "credentials",
                    FAIL,
                    f"found, but no token could be obtained ({first_line(e)})",
                    fix_login,
                ),
                None,
                "",
            )
    who = principal(creds)
    if who.endswith("(no account recorded)"):
        who = principal(creds, _token_email(creds, endpoints))
    return CheckResult("credentials", PASS, f"Application Default Credentials of {who}"), creds, who


def _token_email(creds: Credentials, endpoints: Endpoints) -> str | None:
    # gcloud's user ADC file often leaves "account" empty; the token itself knows its email
    # (ADC user tokens carry the userinfo.email scope). Best effort: None on any failure.
    try:
        resp = requests.get(
            f"{endpoints.oauth2}/tokeninfo", params={"access_token": creds.token}, timeout=10
        )
        email = resp.json().get("email") if resp.ok else None
    except (requests.RequestException, ValueError):
        return None
    return email if isinstance(email, str) and email else None


def _later_checks(spec: Spec) -> list[str]:
    apis = [f"api:{a}" for a in project.apis(spec)]
    agents = [f"service-agent:{d}" for d in catalog.SERVICE_AGENT_DOMAINS]
    buckets = [f"bucket:{b.name}" for b in spec.buckets]
    return ["project", "billing", *apis, *agents, *buckets, "tuning-quota", "running-tuning-jobs"]
