"""A scriptable Vertex AI REST server on 127.0.0.1 for provider tests.

It speaks the subset of ``aiplatform_v1beta1`` REST the client layer uses and parses every
request body into the real proto types (unknown fields rejected), so a shape error fails as
Vertex would fail it. Unlike the local API it lets a test choose how jobs end (EXPIRED,
PARTIALLY_SUCCEEDED...), how long a deploy takes, and run a hook at precise points, which is
how the crash-injection tests kill the provider host between "submitted" and "returned".
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.cloud import aiplatform_v1beta1 as aip
from google.longrunning import operations_pb2
from google.protobuf import json_format, timestamp_pb2

SUCCESS_SCRIPT = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
_FILTER = re.compile(r'labels\.([\w-]+)\s*=\s*"?([\w-]+)"?')


@dataclass
class Job:
    """A job and the states it walks through, one per GET after creation."""

    message: Any  # aip.TuningJob | aip.CustomJob
    script: list[str]
    error: str = ""
    gets: int = 0


@dataclass
class Op:
    """A long-running operation done after ``polls_left`` GETs."""

    name: str
    polls_left: int
    on_done: Callable[[], operations_pb2.Operation] | None = None
    result: operations_pb2.Operation | None = None


@dataclass
class FakeVertex:
    """State and knobs of the fake server (shared by handler threads under ``lock``)."""

    token: str
    script: tuple[str, ...] = SUCCESS_SCRIPT
    final_error: str = ""
    deploy_polls: int = 2
    deploy_error: str = ""
    honour_filter: bool = True
    hook: Callable[[str, str], None] | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    endpoints: dict[str, aip.Endpoint] = field(default_factory=dict)
    models: dict[str, aip.Model] = field(default_factory=dict)
    ops: dict[str, Op] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1000))

    # -- helpers for tests
    def jobs_with_key(self, key: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.message.labels.get("tunestack-key") == key]

    def count(self, method: str, kind: str) -> int:
        return sum(1 for m, k in self.calls if m == method and k == kind)

    def set_state(self, name: str, state: str, error: str = "") -> None:
        with self.lock:
            job = self.jobs[name]
            job.script = [state]
            job.error = error
            _apply(job, state)

    # -- request handling
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        path = re.sub(r"^/(ui|v1beta1|v1)/", "", path)
        kind = _kind(method, path)
        with self.lock:
            self.calls.append((method, kind))
            self.bodies.append(body)
            self._tick()
            try:
                status, payload = self._route(method, kind, path, query, body)
            except json_format.ParseError as e:  # what Vertex answers to a wrong shape
                status, payload = 400, _error(400, str(e), "INVALID_ARGUMENT")
        if self.hook is not None:
            self.hook(kind, path)
        return status, payload

    def _route(
        self, method: str, kind: str, path: str, query: dict, body: bytes
    ) -> tuple[int, Any]:
        m = re.fullmatch(r"(projects/[^/]+/locations/[^/]+)/(tuningJobs|customJobs)", path)
        if m and method == "POST":
            parent, coll = m.groups()
            cls = aip.TuningJob if coll == "tuningJobs" else aip.CustomJob
            msg = cls.from_json(body, ignore_unknown_fields=False)
            msg.name = f"{parent}/{coll}/{next(self._ids)}"
            msg.create_time = timestamp_pb2.Timestamp(seconds=1_700_000_000 + len(self.jobs))
            job = Job(msg, list(self.script), self.final_error)
            _apply(job, "JOB_STATE_QUEUED")
            self.jobs[msg.name] = job
            return 200, cls.to_json(msg)
        if m and method == "GET":
            parent, coll = m.groups()
            found = [j.message for n, j in self.jobs.items() if n.startswith(f"{parent}/{coll}/")]
            flt = query.get("filter", [""])[0]
            if flt and self.honour_filter:
                for k, v in _FILTER.findall(flt):
                    found = [j for j in found if j.labels.get(k) == v]
            cls = type(found[0]) if found else None
            return 200, json.dumps(
                {coll: [json.loads(cls.to_json(j)) for j in found]} if cls else {}
            )
        m = re.fullmatch(
            r"(projects/[^/]+/locations/[^/]+/(?:tuningJobs|customJobs)/\d+)(:cancel)?", path
        )
        if m:
            job = self.jobs.get(m.group(1))
            if job is None:
                return 404, _error(404, f"job {m.group(1)} not found")
            if m.group(2):
                state = aip.JobState(job.message.state).name
                if state in (
                    "JOB_STATE_SUCCEEDED",
                    "JOB_STATE_FAILED",
                    "JOB_STATE_CANCELLED",
                    "JOB_STATE_EXPIRED",
                ):
                    return 400, _error(400, "job already ended", "FAILED_PRECONDITION")
                job.script = ["JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"]
                job.error = "CANCELLED"
                _apply(job, "JOB_STATE_CANCELLING")
                return 200, "{}"
            if job.script:
                state = job.script.pop(0)
                _apply(job, state, job.error if not job.script else "")
            job.gets += 1
            return 200, type(job.message).to_json(job.message)
        m = re.fullmatch(r"(projects/[^/]+/locations/[^/]+):deploy", path)
        if m:
            req = aip.DeployRequest.from_json(body, ignore_unknown_fields=False)
            return 200, self._deploy(m.group(1), req)
        m = re.fullmatch(r"projects/[^/]+/locations/[^/]+/operations/\d+", path)
        if m:
            op = self.ops.get(path)
            if op is None:
                return 404, _error(404, f"operation {path} not found")
            if op.result is None:
                op.polls_left -= 1
                if op.polls_left <= 0:
                    op.result = (
                        op.on_done()
                        if op.on_done
                        else operations_pb2.Operation(name=path, done=True)
                    )
            return 200, json_format.MessageToJson(op.result or operations_pb2.Operation(name=path))
        m = re.fullmatch(r"(projects/[^/]+/locations/[^/]+)/(endpoints|models)", path)
        if m and method == "GET":
            coll = m.group(2)
            store = self.endpoints if coll == "endpoints" else self.models
            return 200, json.dumps({coll: [json.loads(type(v).to_json(v)) for v in store.values()]})
        m = re.fullmatch(
            r"projects/[^/]+/locations/[^/]+/(endpoints|models)/\d+(:undeployModel)?", path
        )
        if m:
            name = path.split(":")[0]
            store = self.endpoints if m.group(1) == "endpoints" else self.models
            if name not in store:
                return 404, _error(404, f"{name} not found")
            if m.group(2):
                req = aip.UndeployModelRequest.from_json(body, ignore_unknown_fields=False)
                ep = store[name]
                kept = [d for d in ep.deployed_models if d.id != req.deployed_model_id]
                del ep.deployed_models[:]
                ep.deployed_models.extend(kept)
                return 200, self._done_op()
            if method == "DELETE":
                if m.group(1) == "endpoints" and store[name].deployed_models:
                    return 400, _error(400, "endpoint has deployed models", "FAILED_PRECONDITION")
                del store[name]
                return 200, self._done_op()
            return 200, type(store[name]).to_json(store[name])
        return 501, _error(501, f"{method} {path} not implemented", "UNIMPLEMENTED")

    def _tick(self) -> None:
        # Time passes with every request, so operations finish even if nobody polls them
        # (as on Vertex, where a deploy goes on after its caller died).
        for op in self.ops.values():
            if op.result is None:
                op.polls_left -= 1
                if op.polls_left <= 0:
                    op.result = (
                        op.on_done()
                        if op.on_done
                        else operations_pb2.Operation(name=op.name, done=True)
                    )

    def _deploy(self, parent: str, req: aip.DeployRequest) -> str:
        # Like Vertex: the endpoint exists at once, the model only when the operation is done.
        endpoint = aip.Endpoint(
            name=f"{parent}/endpoints/{next(self._ids)}",
            display_name=req.endpoint_config.endpoint_display_name,
            create_time=timestamp_pb2.Timestamp(seconds=1_700_000_000),
        )
        self.endpoints[endpoint.name] = endpoint
        op_name = f"{parent}/operations/{next(self._ids)}"

        def finish() -> operations_pb2.Operation:
            done = operations_pb2.Operation(name=op_name, done=True)
            if self.deploy_error:
                done.error.code = 9
                done.error.message = self.deploy_error
                return done
            model = aip.Model(
                name=f"{parent}/models/{next(self._ids)}",
                display_name=req.model_config.model_display_name,
                artifact_uri=req.custom_model.gcs_uri,
            )
            self.models[model.name] = model
            if endpoint.name in self.endpoints:
                self.endpoints[endpoint.name].deployed_models.append(
                    aip.DeployedModel(id=str(next(self._ids)), model=f"{model.name}@1")
                )
            done.response.Pack(
                aip.DeployResponse.pb(
                    aip.DeployResponse(endpoint=endpoint.name, model=f"{model.name}@1")
                )
            )
            return done

        self.ops[op_name] = Op(op_name, self.deploy_polls, finish)
        return json_format.MessageToJson(operations_pb2.Operation(name=op_name, done=False))

    def _done_op(self) -> str:
        return json.dumps(
            {"name": f"projects/p/locations/l/operations/{next(self._ids)}", "done": True}
        )


def _apply(job: Job, state: str, error: str = "") -> None:
    job.message.state = aip.JobState[state]
    if error:
        job.message.error.code = 1 if state == "JOB_STATE_CANCELLED" else 13
        job.message.error.message = error
    if state == "JOB_STATE_SUCCEEDED" and isinstance(job.message, aip.TuningJob):
        job.message.tuned_model.model = job.message.name.replace("tuningJobs", "models")


def _kind(method: str, path: str) -> str:
    if path.endswith(":deploy"):
        return "deploy"
    if "/operations/" in path:
        return "operation.get"
    for coll in ("tuningJobs", "customJobs", "endpoints", "models"):
        if path.endswith("/" + coll):
            return f"{coll}.{'create' if method == 'POST' else 'list'}"
        if f"/{coll}/" in path:
            if path.endswith(":cancel"):
                return f"{coll}.cancel"
            if path.endswith(":undeployModel"):
                return f"{coll}.undeploy"
            return f"{coll}.{'delete' if method == 'DELETE' else 'get'}"
    return "other"


def _error(code: int, message: str, status: str = "NOT_FOUND") -> str:
    return json.dumps({"error": {"code": code, "message": message, "status": status}})


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVertex

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            status, payload = 401, _error(401, "missing or wrong bearer token", "UNAUTHENTICATED")
        else:
            status, payload = self.fake.handle(self.command, url.path, parse_qs(url.query), body)
        data = payload.encode() if isinstance(payload, str) else payload
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed mid-request: exactly what crash tests do

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, *args: Any) -> None:
        pass


def serve(fake: FakeVertex) -> tuple[ThreadingHTTPServer, str]:
    """Starts the fake on a free 127.0.0.1 port; returns ``(server, "http://127.0.0.1:PORT")``."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


#: Answers one request: (handler, raw body) -> (status, JSON text).
Respond = Callable[[BaseHTTPRequestHandler, bytes], tuple[int, str]]


@contextmanager
def serve_json(respond: Respond) -> Iterator[str]:
    """Serves ``respond`` (a small fake Google REST API) on a free 127.0.0.1 port.

    Yields ``"http://127.0.0.1:PORT"``; the server stops when the block ends.
    """

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, text = respond(self, body)
            data = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the provider host was killed mid-request (crash tests)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
