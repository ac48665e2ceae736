"""A fake of the Google REST APIs the doctor calls, on 127.0.0.1.

Answers have the shapes the real APIs return (field names, camelCase, int64 as strings, enums
as numbers when the client asks for ``$alt=json;enum-encoding=int`` as the GAPIC REST clients
do, errors as ``{"error": {"code", "message", "status"}}``), so Google's own client libraries
parse them. The fake's state is a :class:`World` each test edits to produce one failure.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.oauth2.credentials
import pytest

TOKEN = "test-token"
QUOTA_NAME = "Global concurrent managed OSS model fine-tuning jobs per project"

# Wire numbers of the enums the fake returns (google.cloud.*.State, aiplatform JobState).
PROJECT_STATE = {"ACTIVE": 1, "DELETE_REQUESTED": 2}
SERVICE_STATE = {"DISABLED": 1, "ENABLED": 2}
JOB_STATE = {
    "JOB_STATE_QUEUED": 1,
    "JOB_STATE_PENDING": 2,
    "JOB_STATE_RUNNING": 3,
    "JOB_STATE_SUCCEEDED": 4,
    "JOB_STATE_FAILED": 5,
    "JOB_STATE_CANCELLING": 6,
    "JOB_STATE_CANCELLED": 7,
    "JOB_STATE_PAUSED": 8,
    "JOB_STATE_EXPIRED": 9,
}
ALL_BUCKET_PERMISSIONS = {
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.objects.create",
    "storage.objects.get",
    "storage.objects.list",
}


@dataclass
class World:
    """What the fake Google knows: a healthy project unless a test changes something."""

    project_id: str = "tuned-proj-1"
    number: str = "123456789012"
    project_state: str | None = "ACTIVE"  # None: the project does not exist
    missing_project_status: int = 403  # CRM v3 answers 403 for a project that does not exist
    billing_enabled: bool = True
    enabled_apis: set[str] = field(
        default_factory=lambda: {
            "aiplatform.googleapis.com",
            "storage.googleapis.com",
            "cloudquotas.googleapis.com",
        }
    )
    agents: set[str] = field(default_factory=lambda: {"gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft"})
    buckets: dict[str, set[str]] = field(
        default_factory=lambda: {"tuned-data": set(ALL_BUCKET_PERMISSIONS)}
    )
    quota: int | None = 2  # None: no such quota listed
    quotas_status: int = 200
    jobs_status: int = 200
    jobs: dict[str, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # region -> [(base model, state)]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    token_email: str = "ana@example.com"
    open_storage: bool = False  # True: /storage/ needs no token, like the local emulator


class _Handler(BaseHTTPRequestHandler):
    world: World

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ints = any("enum-encoding=int" in v for vs in query.values() for v in vs)
        self.world.requests.append(
            (method, url.path, {k.lower(): v for k, v in self.headers.items()})
        )
        anonymous_ok = url.path == "/tokeninfo" or (
            self.world.open_storage and url.path.startswith("/storage/")
        )
        if not anonymous_ok and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        w = self.world
        for pattern, handler in _ROUTES:
            m = re.fullmatch(pattern, url.path)
            if m and handler[0] == method:
                return handler[1](self, w, m, query, ints)
        self._error(404, "NOT_FOUND", f"no route {method} {url.path}")

    def _json(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, status: str, message: str) -> None:
        self._json({"error": {"code": code, "message": message, "status": status}}, code)


def _enum(table: dict[str, int], name: str, ints: bool) -> str | int:
    return table[name] if ints else name


def _project(h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool) -> None:
    if m["p"] != w.project_id or w.project_state is None:
        if w.missing_project_status == 404:
            return h._error(404, "NOT_FOUND", f"Project '{m['p']}' not found.")
        return h._error(
            403, "PERMISSION_DENIED", f"Permission denied on resource project {m['p']}."
        )
    h._json(
        {
            "name": f"projects/{w.number}",
            "parent": "folders/987654321",
            "projectId": w.project_id,
            "state": _enum(PROJECT_STATE, w.project_state, ints),
            "displayName": w.project_id,
            "createTime": "2026-01-05T10:00:00.123Z",
            "updateTime": "2026-01-05T10:00:00.123Z",
            "etag": 'W/"8a4b1a2c"',
        }
    )


def _iam_policy(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    bindings = [{"role": "roles/owner", "members": ["user:owner@example.com"]}]
    if "gcp-sa-aiplatform" in w.agents:
        bindings.append(
            {
                "role": "roles/aiplatform.serviceAgent",
                "members": [
                    f"serviceAccount:service-{w.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
                ],
            }
        )
    if "gcp-sa-vertex-moss-ft" in w.agents:
        bindings.append(
            {
                "role": "roles/vertexaimossft.serviceAgent",
                "members": [
                    f"serviceAccount:service-{w.number}@gcp-sa-vertex-moss-ft.iam.gserviceaccount.com"
                ],
            }
        )
    h._json({"version": 1, "etag": "BwYd7zYv0xw=", "bindings": bindings})


def _billing(h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool) -> None:
    body: dict[str, Any] = {"name": f"projects/{m['p']}/billingInfo", "projectId": m["p"]}
    if w.billing_enabled:
        body |= {
            "billingAccountName": "billingAccounts/012345-6789AB-CDEF01",
            "billingEnabled": True,
        }
    else:
        body |= {"billingAccountName": ""}  # the real answer omits billingEnabled when false
    h._json(body)


def _service(h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool) -> None:
    state = "ENABLED" if m["s"] in w.enabled_apis else "DISABLED"
    h._json(
        {
            "name": f"projects/{w.number}/services/{m['s']}",
            "parent": f"projects/{w.number}",
            "config": {"name": m["s"], "title": m["s"].split(".")[0]},
            "state": _enum(SERVICE_STATE, state, ints),
        }
    )


def _test_permissions(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    if m["b"] not in w.buckets:
        return h._error(404, "NOT_FOUND", "The specified bucket does not exist.")
    asked = q.get("permissions", [])
    h._json(
        {
            "kind": "storage#testIamPermissionsResponse",
            "permissions": [p for p in asked if p in w.buckets[m["b"]]],
        }
    )


def _quota_infos(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    if w.quotas_status == 403:
        return h._error(
            403,
            "PERMISSION_DENIED",
            "Cloud Quotas API has not been used in project tuned-proj-1 before or it is disabled.",
        )
    parent = f"projects/{w.number}/locations/global/services/aiplatform.googleapis.com"

    def info(qid: str, display: str, value: str) -> dict[str, Any]:
        return {
            "name": f"{parent}/quotaInfos/{qid}",
            "quotaId": qid,
            "metric": f"aiplatform.googleapis.com/{qid.lower()}",
            "service": "aiplatform.googleapis.com",
            "isPrecise": True,
            "containerType": 1 if ints else "PROJECT",
            "dimensions": [],
            "metricDisplayName": display,
            "quotaDisplayName": display,
            "metricUnit": "1",
            "quotaIncreaseEligibility": {"isEligible": True},
            "isFixed": False,
            "isConcurrent": True,
            "dimensionsInfos": [{"details": {"value": value}, "applicableLocations": ["global"]}],
        }

    # Two pages, the wanted quota on the second, to exercise paging.
    if not q.get("pageToken"):
        return h._json(
            {
                "quotaInfos": [
                    info(
                        "OnlinePredictionRequestsPerMinute",
                        "Online prediction requests per minute",
                        "30000",
                    )
                ],
                "nextPageToken": "page-2",
            }
        )
    infos = [
        info("CustomModelTrainingCpusPerRegion", "Custom model training CPUs per region", "24")
    ]
    if w.quota is not None:
        infos.append(
            info("ConcurrentOssTuningJobsPerProject", QUOTA_NAME, str(w.quota))
        )  # id invented: not published
    h._json({"quotaInfos": infos})


def _tuning_jobs(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    if w.jobs_status == 403:
        return h._error(
            403,
            "PERMISSION_DENIED",
            f"Permission 'aiplatform.tuningJobs.list' denied on resource "
            f"'//aiplatform.googleapis.com/projects/{m['p']}/locations/{m['r']}' (or it may not exist).",
        )
    jobs = [
        {
            "name": f"projects/{w.number}/locations/{m['r']}/tuningJobs/{1000 + i}",
            "tunedModelDisplayName": f"job-{i}",
            "baseModel": base,
            "state": _enum(JOB_STATE, state, ints),
            "createTime": "2026-11-29T03:00:00.000Z",
            "supervisedTuningSpec": {
                "trainingDatasetUri": "gs://tuned-data/train.jsonl",
                "tuningMode": 1 if ints else "TUNING_MODE_FULL",
            },
        }
        for i, (base, state) in enumerate(w.jobs.get(m["r"], []))
    ]
    h._json({"tuningJobs": jobs} if jobs else {})


def _bucket_list(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    h._json(
        {"kind": "storage#buckets", "items": [_bucket_resource(w, b) for b in sorted(w.buckets)]}
    )


def _bucket(h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool) -> None:
    if m["b"] not in w.buckets:
        return h._error(404, "NOT_FOUND", "The specified bucket does not exist.")
    h._json(_bucket_resource(w, m["b"]))


def _bucket_resource(w: World, name: str) -> dict[str, Any]:
    return {
        "kind": "storage#bucket",
        "id": name,
        "name": name,
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}",
        "projectNumber": w.number,
        "metageneration": "1",
        "location": "US-CENTRAL1",
        "storageClass": "STANDARD",
        "etag": "CAE=",
        "timeCreated": "2026-01-05T10:00:00.123Z",
        "updated": "2026-01-05T10:00:00.123Z",
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
        "locationType": "region",
    }


def _tokeninfo(
    h: _Handler, w: World, m: re.Match[str], q: dict[str, list[str]], ints: bool
) -> None:
    if q.get("access_token") != [TOKEN]:
        return h._json({"error": "invalid_token", "error_description": "Invalid Value"}, 400)
    h._json(
        {
            "azp": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
            "aud": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
            "sub": "112233445566778899",
            "scope": "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/cloud-platform",
            "exp": "1796000000",
            "expires_in": "3599",
            "email": w.token_email,
            "email_verified": "true",
        }
    )


_ROUTES = [
    (r"/tokeninfo", ("GET", _tokeninfo)),
    (r"/storage/v1/b", ("GET", _bucket_list)),
    (r"/storage/v1/b/(?P<b>[^/]+)", ("GET", _bucket)),
    (r"/v3/projects/(?P<p>[^/:]+)", ("GET", _project)),
    (r"/v3/projects/(?P<p>[^/:]+):getIamPolicy", ("POST", _iam_policy)),
    (r"/v1/projects/(?P<p>[^/]+)/billingInfo", ("GET", _billing)),
    (r"/v1/projects/(?P<p>[^/]+)/services/(?P<s>[^/:]+)", ("GET", _service)),
    (r"/storage/v1/b/(?P<b>[^/]+)/iam/testPermissions", ("GET", _test_permissions)),
    (
        r"/v1/projects/(?P<p>[^/]+)/locations/global/services/aiplatform\.googleapis\.com/quotaInfos",
        ("GET", _quota_infos),
    ),
    (r"/v1beta1/projects/(?P<p>[^/]+)/locations/(?P<r>[^/]+)/tuningJobs", ("GET", _tuning_jobs)),
]


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def fake_google(world: World) -> Iterator[str]:
    """Base URL of a running fake serving ``world``."""
    handler = type("Handler", (_Handler,), {"world": world})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def creds() -> google.oauth2.credentials.Credentials:
    """Static-token user credentials: valid, never refreshed, no network."""
    return google.oauth2.credentials.Credentials(token=TOKEN)
