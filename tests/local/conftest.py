"""Helpers for the local API tests: servers in their own homes, plain HTTP calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
ENTRY = "import sys; from infra.cli import run; sys.exit(run())"
PARENT = "projects/test-project/locations/us-central1"


@dataclass
class Server:
    """A ``tunestack serve`` subprocess in its own ``TUNESTACK_HOME``."""

    proc: subprocess.Popen[bytes]
    home: Path
    api_url: str
    storage_url: str
    token: str
    env: dict[str, str]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = "",
    ) -> tuple[int, dict[str, Any]]:
        """One HTTP call with the token (``token=None`` sends none); returns (status, JSON)."""
        return http(
            method, self.api_url + path, body, headers, self.token if token == "" else token
        )

    def stop(self, sig: str = "term") -> None:
        if self.proc.poll() is None:
            (self.proc.kill if sig == "kill" else self.proc.terminate)()
        self.proc.wait(timeout=30)


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, Any]]:
    """A JSON HTTP call; returns (status, decoded body)."""
    data = (
        body
        if isinstance(body, bytes)
        else (json.dumps(body).encode() if body is not None else None)
    )
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, {"raw": raw.decode(errors="replace")}


def start_server(
    home: Path, args: list[str], extra_env: dict[str, str] | None = None, timeout: float = 120
) -> Server:
    """Starts ``tunestack serve --port 0 ARGS`` with ``TUNESTACK_HOME=home``; waits for it."""
    env = {**os.environ, "TUNESTACK_HOME": str(home), **(extra_env or {})}
    (home / "local").mkdir(parents=True, exist_ok=True)
    log = (home / "local" / "server.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "serve", "--port", "0", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api_file = home / "local" / "api.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (home / "local" / "server.log").read_text()[-3000:]
        try:
            info = json.loads(api_file.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("pid") == proc.pid:
            token = (home / "local" / "token").read_text().strip()
            status, _ = http("GET", info["api_url"] + "/local/v1/status", token=token, timeout=5)
            if status == 200:
                return Server(proc, home, info["api_url"], info["storage_url"], token, env)
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(
        "server did not start: " + (home / "local" / "server.log").read_text()[-3000:]
    )


def fake_trainer_env() -> dict[str, str]:
    """Environment making the server run the fake trainer (fast scheduler tests)."""
    return {"TUNESTACK_TRAINER_CMD": json.dumps([sys.executable, str(FAKE_TRAINER)])}


def wait_state(server: Server, name: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    """Polls a job until its state is one of ``states``; returns the job."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, job = server.call("GET", f"/v1beta1/{name}")
        if job.get("state") in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {states}; last: {job}")


def tuning_body(train: str, output: str, **extra: Any) -> dict[str, Any]:
    """A tuningJobs.create body as Google's SDK sends it."""
    body = {
        "baseModel": "meta/llama3_1@llama-3.1-8b",
        "outputUri": output,
        "supervisedTuningSpec": {
            "trainingDatasetUri": train,
            "tuningMode": 1,
            "hyperParameters": {"epochCount": "1"},
        },
    }
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A smoke server running the fake trainer, shared by one test module."""
    server = start_server(tmp_path_factory.mktemp("home"), ["--smoke"], fake_trainer_env())
    try:
        yield server
    finally:
        server.stop()
