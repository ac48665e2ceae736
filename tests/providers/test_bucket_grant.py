"""BucketGrant through the provider host against a fake Cloud Storage IAM API (etags, missing
service accounts), the way parallel grants behave on a real bucket."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import grpc
import pytest
from fake_google import serve_json

from infra.providers.agents import BucketGrantProvider

AGENT = "serviceAccount:service-1@gcp-sa-vertex-moss-ft.iam.gserviceaccount.com"
OTHER = "group:ml@example.com"


@dataclass
class FakeIam:
    """``GET/PUT /storage/v1/b/{bucket}/iam`` with etag checks.

    ``missing[member]`` = how many more PUTs fail with "does not exist" for that member.
    """

    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    puts: int = 0
    conflicts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/storage/v1/b/([^/]+)/iam", path)
        if not m:
            return 501, {"error": {"code": 501, "message": path}}
        bucket = m.group(1)
        with self.lock:
            if bucket not in self.policies:
                return 404, {"error": {"code": 404, "message": f"bucket {bucket} not found"}}
            current = self.policies[bucket]
            if method == "GET":
                return 200, current
            self.puts += 1
            new = json.loads(body)
            if new.get("etag") != current["etag"]:
                self.conflicts += 1
                return 412, {
                    "error": {"code": 412, "message": "Precondition Failed: etag mismatch"}
                }
            for binding in new.get("bindings", []):
                for member in binding["members"]:
                    if self.missing.get(member, 0) > 0:
                        self.missing[member] -= 1
                        return 400, {
                            "error": {
                                "code": 400,
                                "message": f"Service account {member.split(':')[1]} does not exist.",
                            }
                        }
            new["etag"] = f"e{int(current['etag'][1:]) + 1}"
            new["kind"] = "storage#policy"
            self.policies[bucket] = new
            return 200, new

    def members(self, bucket: str, role: str = "roles/storage.objectUser") -> set[str]:
        return {
            m
            for b in self.policies[bucket].get("bindings", [])
            if b["role"] == role
            for m in b["members"]
        }


@pytest.fixture
def iam(home) -> Iterator[tuple[FakeIam, str]]:
    fake = FakeIam()
    fake.policies["data"] = {
        "kind": "storage#policy", "etag": "e1", "version": 3,
        "bindings": [{"role": "roles/storage.objectUser", "members": [OTHER]}],
    }  # fmt: skip

    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str]:
        status, payload = fake.handle(handler.command, handler.path.split("?")[0], body)
        return status, json.dumps(payload)

    with serve_json(respond) as url:
        yield fake, url


def grant(url: str, **over: object) -> dict:
    return {"bucket": "data", "member": AGENT, "role": "roles/storage.objectUser",
            "project": "proj", "deadline_seconds": 10, "storage_endpoint": url, **over}  # fmt: skip


def test_grant_waits_for_the_agent_to_exist_and_keeps_other_members(iam, make_host):
    fake, url = iam
    fake.missing[AGENT] = 2
    id_, outs = make_host(BucketGrantProvider()).create(grant(url))
    assert outs["attempts"] == 3 and fake.members("data") == {OTHER, AGENT}
    assert id_ == f"data/roles/storage.objectUser/{AGENT}"


def test_parallel_grants_on_one_bucket_both_land(iam, make_host):
    fake, url = iam
    host = make_host(BucketGrantProvider())
    members = [f"serviceAccount:sa{i}@p.iam.gserviceaccount.com" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda m: host.create(grant(url, member=m)), members))
    assert fake.members("data") == {OTHER, *members}


def test_grant_gives_up_at_the_deadline_with_a_clear_message(iam, make_host):
    fake, url = iam
    fake.missing[AGENT] = 10_000
    with pytest.raises(grpc.RpcError) as err:
        make_host(BucketGrantProvider()).create(grant(url, deadline_seconds=0.3))
    details = err.value.details()
    assert "does not exist" in details and "re-run later" in details and "gs://data" in details
    assert fake.members("data") == {OTHER}


def test_public_members_are_refused(iam, make_host):
    _, url = iam
    _, failures = make_host(BucketGrantProvider()).check(grant(url, member="allUsers"))
    assert [p for p, _ in failures] == ["member"]


def test_read_detects_removal_and_delete_removes_only_this_member(iam, make_host):
    fake, url = iam
    host = make_host(BucketGrantProvider())
    id_, outs = host.create(grant(url))
    assert host.read(id_, outs)[0] == id_
    host.delete(id_, outs)
    assert fake.members("data") == {OTHER}
    assert host.read(id_, outs)[0] == ""
    host.delete(id_, outs)  # idempotent
