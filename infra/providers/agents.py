"""Service agents: make the two Vertex agents exist before anything grants them bucket roles.

``gcp-sa-aiplatform`` is forced into existence with Service Usage ``generateServiceIdentity``;
``gcp-sa-vertex-moss-ft`` appears when Google runs the first open-model tuning job. A grant to
an agent that does not exist yet fails with "Service account ... does not exist", so the
program's bucket grants wait for this resource. An agent counts as visible once it appears in
the project's IAM policy (Google grants each agent its service-agent role when it creates it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import google.auth
import requests
from google.auth.transport.requests import AuthorizedSession
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from infra import catalog, wait
from infra.local import home
from infra.plan.inputs import ServiceAgentsArgs, input_names, replacing, required
from infra.providers.base import TunestackProvider, inputs_of, poll_settings
from infra.vertex.errors import VertexError
from infra.vertex.target import LocalTokenCredentials

SERVICEUSAGE = "https://serviceusage.googleapis.com"
RESOURCEMANAGER = "https://cloudresourcemanager.googleapis.com"
VERTEX_SERVICE = "aiplatform.googleapis.com"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def agent_email(project_number: str, domain: str) -> str:
    """``service-{number}@{domain}.iam.gserviceaccount.com`` (the catalog's member, unprefixed)."""
    return catalog.service_agent(project_number, domain).removeprefix("serviceAccount:")


def session(api_endpoint: str | None) -> requests.Session:
    """An authorised HTTP session: ADC for Google, the local token (if any) for a test base."""
    if api_endpoint is None:
        credentials, _ = google.auth.default(scopes=_SCOPES)
        return AuthorizedSession(credentials)
    if home.token_file().exists():
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
    op: dict[str, Any] = resp.json()
    polls = 0

    def fetch() -> dict[str, Any]:
        # The first poll is the create's own answer; later ones get the operation.
        nonlocal op, polls
        if polls:
            resp = http.get(f"{base}/v1beta1/{op['name']}", timeout=60)
            _raise(resp, "waiting for generateServiceIdentity")
            op = resp.json()
        polls += 1
        return op

    op = wait.poll(
        fetch,
        lambda o: bool(o.get("done")),
        deadline_s,
        lambda _o: VertexError(f"generateServiceIdentity still running after {deadline_s:.0f} s"),
        initial_delay=poll.get("initial_delay", 2.0),
        max_delay=poll.get("max_delay", 60.0),
    )
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
    return [d for d in catalog.SERVICE_AGENT_DOMAINS if catalog.service_agent(number, d) in members]


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
    try:
        return wait.poll(
            lambda: visible_agents(project, number, api_endpoint),
            lambda visible: len(visible) == len(catalog.SERVICE_AGENT_DOMAINS),
            deadline_s,
            _StillMissing,
            initial_delay=initial_delay,
            max_delay=max_delay,
        )
    except _StillMissing as e:
        return e.visible


class _StillMissing(Exception):
    """The deadline passed with agents still missing (not an error: the caller decides)."""

    def __init__(self, visible: list[str]) -> None:
        super().__init__(visible)
        self.visible = visible


class ServiceAgentsProvider(TunestackProvider):
    """Generates the Vertex service identity and waits until the agents are visible."""

    INPUTS: ClassVar[tuple[str, ...]] = input_names(ServiceAgentsArgs)
    REPLACES: ClassVar[frozenset[str]] = replacing(ServiceAgentsArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(ServiceAgentsArgs)
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
        members = [catalog.service_agent(number, d) for d in catalog.SERVICE_AGENT_DOMAINS]
        return {
            **inputs,
            "project_number": number,
            "members": members,
            "aiplatform_member": members[0],
            "moss_ft_member": members[1],
            "visible": visible,
            "missing": missing,
        }


def _raise(resp: requests.Response, doing: str) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = resp.text[:300]
    raise VertexError(f"{doing} failed: HTTP {resp.status_code}: {message}")
