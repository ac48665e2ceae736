"""Request limits of the local API (issue 14, findings 2, 3 (non-finite) and 7 (slow clients))."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from infra.local.api import middleware
from infra.local.api.middleware import MAX_INSTANCES_PER_CALL, MAX_JSON_DEPTH, BoundedH11, Guard
from tests.local.conftest import PARENT, Server, tuning_body


def test_500_deep_body_is_400_not_500(server: Server) -> None:
    deep = b'{"a":' * 500 + b"1" + b"}" * 500
    status, body = server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", deep)
    assert status == 400 and str(MAX_JSON_DEPTH) in body["error"]["message"]
    very_deep = b"[" * 200_000 + b"]" * 200_000
    status, _ = server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", very_deep)
    assert status == 400


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_400(server: Server, number: str) -> None:
    body = f'{{"instances": [{{"prompt": "hi", "max_tokens": 2, "temperature": {number}}}]}}'
    status, answer = server.call("POST", f"/v1/{PARENT}/endpoints/1:predict", body.encode())
    assert status == 400, answer
    job = tuning_body("gs://b/train.jsonl", "gs://b/out")
    text = (
        __import__("json")
        .dumps(job)
        .replace('"epochCount": "1"', f'"epochCount": "1", "learningRateMultiplier": {number}')
    )
    status, answer = server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", text.encode())
    assert status == 400 and "non-finite" in answer["error"]["message"]


def test_too_many_instances_is_400(server: Server) -> None:
    body = {"instances": [{"prompt": "x"}] * (MAX_INSTANCES_PER_CALL + 1)}
    status, answer = server.call("POST", f"/v1/{PARENT}/endpoints/1:predict", body)
    assert status == 400 and str(MAX_INSTANCES_PER_CALL) in answer["error"]["message"]


@pytest.mark.parametrize(
    ("field", "uri"),
    [
        ("outputUri", "gs://b/../../etc"),
        ("trainingDatasetUri", "gs://b/a/../../x.jsonl"),
        ("customBaseModel", "gs://b/./w"),
        ("outputUri", "gs://b/out\x00"),
    ],
)
def test_escaping_uris_are_400_at_create(server: Server, field: str, uri: str) -> None:
    body = tuning_body("gs://b/train.jsonl", "gs://b/out")
    if field == "trainingDatasetUri":
        body["supervisedTuningSpec"][field] = uri
    else:
        body[field] = uri
    status, answer = server.call("POST", f"/v1beta1/{PARENT}/tuningJobs", body)
    assert status == 400 and field in answer["error"]["message"]


def test_escaping_deploy_uri_is_400(server: Server) -> None:
    body = {
        "customModel": {"gcsUri": "gs://b/../../etc"},
        "endpointConfig": {"endpointDisplayName": "x"},
    }
    status, answer = server.call("POST", f"/v1beta1/{PARENT}:deploy", body)
    assert status == 400 and "gcsUri" in answer["error"]["message"]


# --- slow clients (in-process server with short deadlines) ---------------------------------


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


@pytest.fixture
def slow_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(middleware, "HEADER_READ_TIMEOUT_S", 1.0)
    monkeypatch.setattr(middleware, "BODY_READ_TIMEOUT_S", 1.0)
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    guarded = Guard(app, token="t", origins=(), body_limit=1 << 20)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        guarded, log_level="warning", http=BoundedH11, timeout_keep_alive=1, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)


def _closed_within(conn: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[bool, bytes]:
    """Sends ``trickle`` one byte every 0.2 s; True when the server closes in time."""
    conn.settimeout(0.2)
    deadline = time.monotonic() + seconds
    got = b""
    i = 0
    while time.monotonic() < deadline:
        if i < len(trickle):
            try:
                conn.send(trickle[i : i + 1])
            except OSError:
                return True, got
            i += 1
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_slow_headers_are_closed(slow_server: int) -> None:
    conn = socket.create_connection(("127.0.0.1", slow_server))
    conn.send(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed, _ = _closed_within(conn, 5, trickle=b"X-Slow: " + b"a" * 100)
    assert closed, "a slow-header connection stayed open"


def test_idle_connection_without_a_request_is_closed(slow_server: int) -> None:
    conn = socket.create_connection(("127.0.0.1", slow_server))
    closed, _ = _closed_within(conn, 4)
    assert closed


def test_slow_body_is_408_and_closed(slow_server: int) -> None:
    conn = socket.create_connection(("127.0.0.1", slow_server))
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nabc"
    )
    closed, got = _closed_within(conn, 5)
    assert closed and b" 408 " in got.split(b"\r\n")[0]


def test_normal_request_still_answers(slow_server: int) -> None:
    conn = socket.create_connection(("127.0.0.1", slow_server))
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    conn.settimeout(5)
    assert b"200 OK" in conn.recv(4096)
