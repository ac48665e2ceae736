"""ServiceAgents through the provider host against a small fake of Service Usage + Resource
Manager."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import grpc
import pytest
from fake_google import serve_json

from infra import catalog
from infra.providers import agents
from infra.providers.agents import ServiceAgentsProvider

NUMBER = "123456789012"


@dataclass
class FakeGoogle:
    """Service Usage generateServiceIdentity + Resource Manager project get / getIamPolicy.

    Agents become visible in the IAM policy ``visible_after`` policy reads after the identity
    was generated (None: never), like Google creating them in the background.
    """

    token: str
    visible_after: dict[str, int | None] = field(
        default_factory=lambda: {"gcp-sa-aiplatform": 2, "gcp-sa-vertex-moss-ft": 3}
    )
    generate_status: int = 200
    generated: bool = False
    policy_reads: int = 0
    calls: list[str] = field(default_factory=list)

    def handle(self, method: str, path: str) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        if method == "GET" and (m := re.fullmatch(r"/v1/projects/([\w-]+)", path)):
            return 200, {"projectId": m.group(1), "projectNumber": NUMBER}
        if method == "POST" and path.endswith(
            "/services/aiplatform.googleapis.com:generateServiceIdentity"
        ):
            if self.generate_status != 200:
                return self.generate_status, {
                    "error": {"code": 403, "message": "serviceusage.services.use denied"}
                }
            self.generated = True
            return 200, {"name": "operations/gsi.1", "done": False}
        if method == "GET" and path == "/v1beta1/operations/gsi.1":
            email = agents.agent_email(NUMBER, "gcp-sa-aiplatform")
            return 200, {"name": "operations/gsi.1", "done": True, "response": {"email": email}}
        if method == "POST" and path.endswith(":getIamPolicy"):
            self.policy_reads += 1
            members = [
                catalog.service_agent(NUMBER, d)
                for d, after in self.visible_after.items()
                if self.generated and after is not None and self.policy_reads >= after
            ]
            return 200, {
                "bindings": [{"role": "roles/aiplatform.serviceAgent", "members": members}]
            }
        return 501, {"error": {"code": 501, "message": f"{method} {path}"}}


@pytest.fixture
def google(home) -> Iterator[tuple[FakeGoogle, str]]:
    fake = FakeGoogle(token=(home / "local" / "token").read_text())

    def respond(handler: BaseHTTPRequestHandler, _body: bytes) -> tuple[int, str]:
        if handler.headers.get("Authorization") != f"Bearer {fake.token}":
            return 401, json.dumps({"error": {"code": 401, "message": "no token"}})
        status, payload = fake.handle(handler.command, handler.path.split("?")[0])
        return status, json.dumps(payload)

    with serve_json(respond) as url:
        yield fake, url


def inputs(url: str, **over: object) -> dict:
    return {"project": "proj", "project_number": None, "required": ["gcp-sa-aiplatform"],
            "deadline_seconds": 10, "api_endpoint": url, **over}  # fmt: skip


def test_generates_identity_and_waits_until_both_agents_are_visible(google, make_host):
    fake, url = google
    id_, outs = make_host(ServiceAgentsProvider()).create(inputs(url))
    assert id_ == "proj/service-agents" and outs["project_number"] == NUMBER
    assert outs["members"] == [
        f"serviceAccount:service-{NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com",
        f"serviceAccount:service-{NUMBER}@gcp-sa-vertex-moss-ft.iam.gserviceaccount.com",
    ]
    assert (
        outs["aiplatform_member"] == outs["members"][0]
        and outs["moss_ft_member"] == outs["members"][1]
    )
    assert (
        outs["visible"] == ["gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft"] and outs["missing"] == []
    )
    assert fake.generated and fake.policy_reads >= 3


def test_given_project_number_skips_the_lookup(google, make_host):
    fake, url = google
    make_host(ServiceAgentsProvider()).create(inputs(url, project_number=NUMBER))
    assert not any(c.startswith("GET /v1/projects/") for c in fake.calls)


def test_moss_ft_not_yet_created_is_reported_not_fatal(google, make_host):
    fake, url = google
    fake.visible_after["gcp-sa-vertex-moss-ft"] = None
    _, outs = make_host(ServiceAgentsProvider()).create(inputs(url, deadline_seconds=0.5))
    assert outs["visible"] == ["gcp-sa-aiplatform"] and outs["missing"] == ["gcp-sa-vertex-moss-ft"]
    # Once Google creates it, refresh (read) sees it.
    fake.visible_after["gcp-sa-vertex-moss-ft"] = 0
    _, refreshed = make_host(ServiceAgentsProvider()).read("proj/service-agents", outs)
    assert refreshed["missing"] == []


def test_a_required_agent_that_never_appears_fails_with_a_clear_message(google, make_host):
    fake, url = google
    fake.visible_after["gcp-sa-aiplatform"] = None
    with pytest.raises(grpc.RpcError) as err:
        make_host(ServiceAgentsProvider()).create(inputs(url, deadline_seconds=0.3))
    assert f"service-{NUMBER}@gcp-sa-aiplatform" in err.value.details()
    assert "not visible" in err.value.details()


def test_a_refused_generate_call_surfaces_googles_message(google, make_host):
    fake, url = google
    fake.generate_status = 403
    with pytest.raises(grpc.RpcError) as err:
        make_host(ServiceAgentsProvider()).create(inputs(url))
    assert (
        "HTTP 403" in err.value.details()
        and "serviceusage.services.use denied" in err.value.details()
    )


def test_check_rejects_unknown_agents(google, make_host):
    _, url = google
    _, failures = make_host(ServiceAgentsProvider()).check(inputs(url, required=["gcp-sa-nope"]))
    assert [p for p, _ in failures] == ["required"]
