"""Service agents: make the two Vertex agents exist before anything grants them bucket roles.

``gcp-sa-aiplatform`` is forced into existence with Service Usage ``generateServiceIdentity``;
``gcp-sa-vertex-moss-ft`` appears when Google runs the first open-model tuning job. A grant to
an agent that does not exist yet fails with "Service account ... does not exist", and IAM
changes take minutes to propagate: :func:`retry_grant` retries those errors with a bounded
deadline. An agent counts as visible once it appears in the project's IAM policy (Google grants
each agent its service-agent role when it creates it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.auth.transport.requests import AuthorizedSession
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from infra import catalog
from infra.providers.base import TunestackProvider, inputs_of, poll_settings
from infra.providers.vertex import (
    LocalTokenCredentials,
    VertexError,
    storage_client,
    tunestack_home,
)

SERVICEUSAGE = "https://serviceusage.googleapis.com"
RESOURCEMANAGER = "https://cloudresourcemanager.googleapis.com"
VERTEX_SERVICE = "aiplatform.googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

#: Errors worth retrying while an agent is being created or IAM propagates, or when parallel
#: grants on one bucket race on the policy's etag (412/409).
RETRYABLE_GRANT = re.compile(
    r"does not exist|service account .* not found|propagat|try again|precondition|conflict|"
    r"412|409",
    re.I,
)
#: Members a bucket grant never accepts (reliability.md: nothing public).
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

T = TypeVar("T")


def agent_email(project_number: str, domain: str) -> str:
    """``service-{number}@{domain}.iam.gserviceaccount.com``."""
    return f"service-{project_number}@{domain}.iam.gserviceaccount.com"


def agent_member(project_number: str, domain: str) -> str:
    """The IAM member string of a service agent."""
    return f"serviceAccount:{agent_email(project_number, domain)}"


def session(api_endpoint: str | None) -> requests.Session:
    """An authorised HTTP session: ADC for Google, the local token (if any) for a test base."""
    if api_endpoint is None:
        credentials, _ = google.auth.default(scopes=_SCOPES)
        return AuthorizedSession(credentials)
    if (tunestack_home() / "local" / "token").exists():
        return AuthorizedSession(LocalTokenCredentials())
    return requests.Session()


def project_number(project: str, api_endpoint: str | None = None) -> str:
    """Looks up a project's number with Resource Manager."""
    base = api_endpoint or RESOURCEMANAGER
    resp = session(api_endpoint).get(f"{base}/v1/projects/{project}", timeout=60)
    _raise(resp, f"looking up project {project}")
    return str(resp.json()["projectNumber"])


def generate_identity(
    project: str, deadline_s: float, api_endpoint: str | None = None, **poll: float
) -> str:
    """Forces ``gcp-sa-aiplatform`` into existence; returns its email (waits on the operation)."""
    base = api_endpoint or SERVICEUSAGE
    http = session(api_endpoint)
    url = f"{base}/v1beta1/projects/{project}/services/{VERTEX_SERVICE}:generateServiceIdentity"
    resp = http.post(url, json={}, timeout=60)
    _raise(resp, "generating the Vertex AI service identity")
    op = resp.json()
    end = time.monotonic() + deadline_s
    delay = poll.get("initial_delay", 2.0)
    while not op.get("done"):
        if time.monotonic() >= end:
            raise VertexError(f"generateServiceIdentity still running after {deadline_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, poll.get("max_delay", 60.0))
        resp = http.get(f"{base}/v1beta1/{op['name']}", timeout=60)
        _raise(resp, "waiting for generateServiceIdentity")
        op = resp.json()
    if op.get("error"):
        raise VertexError(f"generateServiceIdentity failed: {op['error'].get('message')}")
    return op.get("response", {}).get("email", "")


def visible_agents(project: str, number: str, api_endpoint: str | None = None) -> list[str]:
    """Agent domains that appear in the project's IAM policy."""
    base = api_endpoint or RESOURCEMANAGER
    resp = session(api_endpoint).post(
        f"{base}/v1/projects/{project}:getIamPolicy",
        json={"options": {"requestedPolicyVersion": 3}},
        timeout=60,
    )
    _raise(resp, f"reading the IAM policy of {project}")
    members = {m for b in resp.json().get("bindings", []) for m in b.get("members", [])}
    return [d for d in catalog.SERVICE_AGENT_DOMAINS if agent_member(number, d) in members]


def wait_visible(
    project: str,
    number: str,
    deadline_s: float,
    api_endpoint: str | None = None,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 60.0,
) -> list[str]:
    """Polls until every agent is visible or the deadline passes; returns the visible ones."""
    end = time.monotonic() + deadline_s
    delay = initial_delay
    while True:
        visible = visible_agents(project, number, api_endpoint)
        left = end - time.monotonic()
        if len(visible) == len(catalog.SERVICE_AGENT_DOMAINS) or left <= 0:
            return visible
        time.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def retry_grant(
    grant: Callable[[], T],
    what: str,
    deadline_s: float = 600.0,
    *,
    initial_delay: float = 5.0,
    max_delay: float = 60.0,
) -> T:
    """Runs ``grant`` until it stops failing with agent-missing or propagation errors.

    Args:
        grant: Performs one grant attempt (raises on failure).
        what: What is being granted, for the message ("objectUser on gs://b to service-...").
        deadline_s: Give up after this many seconds.
        initial_delay: First wait; doubles up to ``max_delay``.
        max_delay: Longest wait between attempts.

    Raises:
        VertexError: still failing at the deadline, saying why and what to do.
        Exception: any error that is not an agent-missing/propagation error, at once.
    """
    end = time.monotonic() + deadline_s
    delay = initial_delay
    attempts = 0
    while True:
        attempts += 1
        try:
            return grant()
        except Exception as e:
            if not RETRYABLE_GRANT.search(str(e)):
                raise
            left = end - time.monotonic()
            if left <= 0:
                raise VertexError(
                    f"granting {what} still fails after {attempts} attempts in "
                    f"{deadline_s:.0f} s: {e}. The service agent is created by Google (for "
                    "gcp-sa-vertex-moss-ft: on the first open-model tuning job) and IAM takes "
                    "2-7 minutes to propagate; re-run later."
                ) from e
            time.sleep(min(delay, left))
            delay = min(delay * 2, max_delay)


class ServiceAgentsProvider(TunestackProvider):
    """Generates the Vertex service identity and waits until the agents are visible."""

    INPUTS: ClassVar[tuple[str, ...]] = (
        "project", "project_number", "required", "deadline_seconds", "api_endpoint",
    )  # fmt: skip
    REPLACES: ClassVar[frozenset[str]] = frozenset({"project", "project_number", "api_endpoint"})
    REQUIRED: ClassVar[tuple[str, ...]] = ("project",)
    OUTPUTS: ClassVar[tuple[str, ...]] = (
        "project_number", "members", "aiplatform_member", "moss_ft_member", "visible", "missing",
    )  # fmt: skip

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        required = news.get("required")
        if not isinstance(required, list):
            return []
        unknown = {d for d in required if isinstance(d, str)} - set(catalog.SERVICE_AGENT_DOMAINS)
        if unknown:
            return [("required", f"unknown agents {sorted(unknown)}")]
        return []

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._ensure(inputs_of(props, self.INPUTS))
        return CreateResult(f"{outs['project']}/service-agents", outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._ensure(inputs_of(news, self.INPUTS)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        visible = visible_agents(
            props["project"], props["project_number"], props.get("api_endpoint")
        )
        outs["visible"] = visible
        outs["missing"] = [d for d in catalog.SERVICE_AGENT_DOMAINS if d not in visible]
        return ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Service agents belong to the project: nothing to delete."""

    def _ensure(self, inputs: dict[str, Any]) -> dict[str, Any]:
        project, endpoint = inputs["project"], inputs.get("api_endpoint")
        deadline = float(inputs.get("deadline_seconds") or 600)
        number = str(inputs.get("project_number") or project_number(project, endpoint))
        if number.endswith(".0"):
            number = number[:-2]  # numbers may arrive as floats on the wire
        generate_identity(project, deadline, endpoint, **poll_settings())
        visible = wait_visible(project, number, deadline, endpoint, **poll_settings())
        missing = [d for d in catalog.SERVICE_AGENT_DOMAINS if d not in visible]
        required = inputs.get("required") or ["gcp-sa-aiplatform"]
        fatal = [d for d in missing if d in required]
        if fatal:
            raise VertexError(
                f"service agent(s) {', '.join(agent_email(number, d) for d in fatal)} not "
                f"visible in project {project} after {deadline:.0f} s; is "
                f"{VERTEX_SERVICE} enabled? Re-run once it is."
            )
        members = [agent_member(number, d) for d in catalog.SERVICE_AGENT_DOMAINS]
        return {
            **inputs,
            "project_number": number,
            "members": members,
            "aiplatform_member": members[0],
            "moss_ft_member": members[1],
            "visible": visible,
            "missing": missing,
        }


def add_bucket_member(
    bucket: str,
    member: str,
    role: str,
    storage_endpoint: str | None = None,
    project: str | None = None,
) -> None:
    """Adds ``member`` to ``role`` on the bucket's IAM policy (additive; idempotent)."""
    b = storage_client(project, storage_endpoint).bucket(bucket)
    policy = b.get_iam_policy(requested_policy_version=3)
    for binding in policy.bindings:
        if binding["role"] == role and not binding.get("condition"):
            if member in binding["members"]:
                return
            binding["members"].add(member)
            break
    else:
        policy.bindings.append({"role": role, "members": {member}})
    b.set_iam_policy(policy)  # carries the etag: a concurrent change fails with 412, retried


def remove_bucket_member(
    bucket: str,
    member: str,
    role: str,
    storage_endpoint: str | None = None,
    project: str | None = None,
) -> None:
    """Removes only ``member`` from ``role`` (other members stay); a missing bucket is fine."""
    b = storage_client(project, storage_endpoint).bucket(bucket)
    try:
        policy = b.get_iam_policy(requested_policy_version=3)
    except gexc.NotFound:
        return
    changed = False
    for binding in policy.bindings:
        if binding["role"] == role and member in binding["members"]:
            binding["members"].discard(member)
            changed = True
    if changed:
        policy.bindings = [bd for bd in policy.bindings if bd["members"]]
        b.set_iam_policy(policy)


def has_bucket_member(
    bucket: str,
    member: str,
    role: str,
    storage_endpoint: str | None = None,
    project: str | None = None,
) -> bool:
    """Whether the bucket's policy grants ``role`` to ``member`` (False for a missing bucket)."""
    try:
        policy = (
            storage_client(project, storage_endpoint)
            .bucket(bucket)
            .get_iam_policy(requested_policy_version=3)
        )
    except gexc.NotFound:
        return False
    return any(bd["role"] == role and member in bd["members"] for bd in policy.bindings)


class BucketGrantProvider(TunestackProvider):
    """One additive bucket role grant (a ``BucketIAMMember`` that waits for its member).

    Create retries "does not exist" (service agent not created yet), propagation and
    concurrent-edit errors with a bounded deadline (:func:`retry_grant`); delete removes only
    this member; read drops the grant from state if it was removed outside Pulumi.
    """

    INPUTS: ClassVar[tuple[str, ...]] = (
        "bucket", "member", "role", "project", "deadline_seconds", "storage_endpoint",
    )  # fmt: skip
    REPLACES: ClassVar[frozenset[str]] = frozenset({"bucket", "member", "role", "storage_endpoint"})
    REQUIRED: ClassVar[tuple[str, ...]] = ("bucket", "member", "role")
    OUTPUTS: ClassVar[tuple[str, ...]] = ("attempts",)

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        member = news.get("member")
        if isinstance(member, str) and member in PUBLIC_MEMBERS:
            return [("member", f"{member} is refused: buckets are never public")]
        return []

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        attempts = 0

        def grant() -> None:
            nonlocal attempts
            attempts += 1
            add_bucket_member(
                inputs["bucket"], inputs["member"], inputs["role"],
                inputs.get("storage_endpoint"), inputs.get("project"),
            )  # fmt: skip

        what = f"{inputs['role']} on gs://{inputs['bucket']} to {inputs['member']}"
        poll = poll_settings()
        retry_grant(
            grant, what, float(inputs.get("deadline_seconds") or 600),
            initial_delay=poll["initial_delay"], max_delay=poll["max_delay"],
        )  # fmt: skip
        id_ = f"{inputs['bucket']}/{inputs['role']}/{inputs['member']}"
        return CreateResult(id_, {**inputs, "attempts": attempts})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not has_bucket_member(
            props["bucket"], props["member"], props["role"],
            props.get("storage_endpoint"), props.get("project"),
        ):  # fmt: skip
            return ReadResult("", {})
        return ReadResult(id_, {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        remove_bucket_member(
            props["bucket"], props["member"], props["role"],
            props.get("storage_endpoint"), props.get("project"),
        )  # fmt: skip


def _raise(resp: requests.Response, doing: str) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = resp.text[:300]
    raise VertexError(f"{doing} failed: HTTP {resp.status_code}: {message}")
