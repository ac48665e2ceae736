"""Secure by default: token, Host/Origin allowlist, no CORS, body cap, max_tokens cap, 429."""

from __future__ import annotations

import contextlib
import http.client
import json
import stat
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from trainer import tiny

from infra.gcs import client as gcs_client
from tests.local.conftest import http as http_call

PARENT = "projects/sec-project/locations/us-central1"


def _call(
    local_api: Any,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    token: str | None = "",
) -> tuple[int, dict[str, Any]]:
    return http_call(
        method, local_api.api_url + path, body, headers, local_api.token if token == "" else token
    )


@pytest.fixture(scope="module")
def endpoint(local_api: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny llama checkpoint deployed through the REST :deploy call."""
    ckpt = tiny.build_tiny_checkpoint("llama", tmp_path_factory.mktemp("ckpt"))
    gcs = gcs_client(endpoint=local_api.storage_url, token=local_api.token)
    bucket = gcs.create_bucket("sec-weights")
    for f in Path(ckpt).iterdir():
        bucket.blob(f"final/{f.name}").upload_from_filename(str(f))
    body = {
        "customModel": {"gcsUri": "gs://sec-weights/final"},
        "modelConfig": {"modelDisplayName": "sec"},
        "endpointConfig": {"endpointDisplayName": "sec-ep"},
    }
    status, op = _call(local_api, "POST", f"/v1beta1/{PARENT}:deploy", body)
    assert status == 200, op
    deadline = time.monotonic() + 120
    while not op.get("done") and time.monotonic() < deadline:
        time.sleep(0.2)
        _, op = _call(local_api, "GET", f"/v1beta1/{op['name']}")
    assert "error" not in op, op
    return str(op["response"]["endpoint"])


def test_missing_or_wrong_token_is_401(local_api: Any) -> None:
    for token in (None, "not-the-token"):
        status, err = _call(local_api, "GET", f"/v1/{PARENT}/endpoints", token=token)
        assert status == 401
        assert err["error"]["status"] == "UNAUTHENTICATED"
    status, _ = _call(local_api, "GET", f"/v1/{PARENT}/endpoints")
    assert status == 200


def test_token_file_is_private_and_server_is_loopback_only(local_api: Any) -> None:
    token_file = local_api.home / "local" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == local_api.token
    api = json.loads((local_api.home / "local" / "api.json").read_text())
    assert urllib.parse.urlparse(api["api_url"]).hostname == "127.0.0.1"
    assert urllib.parse.urlparse(api["storage_url"]).hostname == "127.0.0.1"


def test_foreign_host_and_origin_are_403_and_no_cors_is_sent(local_api: Any) -> None:
    port = urllib.parse.urlparse(local_api.api_url).port
    # DNS rebinding: a page on evil.example resolves its name to 127.0.0.1 and calls us.
    status, err = _call(
        local_api, "GET", f"/v1/{PARENT}/endpoints", headers={"Host": f"evil.example:{port}"}
    )
    assert status == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    status, _ = _call(
        local_api, "GET", f"/v1/{PARENT}/endpoints", headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for method, headers in (
        (
            "OPTIONS",
            {"Origin": f"http://127.0.0.1:{port}", "Access-Control-Request-Method": "POST"},
        ),
        (
            "GET",
            {"Origin": f"http://localhost:{port}", "Authorization": f"Bearer {local_api.token}"},
        ),
    ):
        conn.request(method, f"/v1/{PARENT}/endpoints", headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == (401 if method == "OPTIONS" else 200)
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)
    conn.close()


def test_oversized_body_is_413(local_api: Any) -> None:
    port = urllib.parse.urlparse(local_api.api_url).port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", f"/v1beta1/{PARENT}/tuningJobs")
    conn.putheader("Authorization", f"Bearer {local_api.token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(64 * 1024 * 1024))
    conn.endheaders()  # the body is never sent: the declared size alone is refused
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 413 and "exceeds the limit" in body["error"]["message"]
    conn.close()
    # A chunked body (no Content-Length) is counted while it streams.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {local_api.token}", "Content-Type": "application/json"}
    # The server may answer and close before the client has sent everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.request(
            "POST",
            f"/v1beta1/{PARENT}/tuningJobs",
            body=iter([b" " * (1 << 20)] * 9),
            headers=headers,
            encode_chunked=True,
        )
    resp = conn.getresponse()
    assert resp.status == 413, resp.read()
    conn.close()


def test_predict_honours_fields_and_caps_max_tokens(local_api: Any, endpoint: str) -> None:
    inst = {
        "prompt": "What is a car?",
        "max_tokens": 5.0,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 1.0,
    }
    status, resp = _call(local_api, "POST", f"/v1/{endpoint}:predict", {"instances": [inst]})
    assert status == 200, resp
    assert resp["predictions"][0].startswith("Prompt:\nWhat is a car?\nOutput:\n")
    assert resp["deployedModelId"] and resp["model"].endswith(resp["deployedModelId"])
    status, raw = _call(
        local_api,
        "POST",
        f"/v1/{endpoint}:predict",
        {"instances": [{**inst, "raw_response": True}]},
    )
    # top_k 1 is greedy: the raw output is exactly the text after "Output:\n" above.
    assert raw["predictions"][0] == resp["predictions"][0].split("Output:\n", 1)[1]
    status, err = _call(
        local_api,
        "POST",
        f"/v1/{endpoint}:predict",
        {"instances": [{**inst, "max_tokens": 100000}]},
    )
    assert status == 400 and "max_tokens" in err["error"]["message"]
    status, err = _call(
        local_api, "POST", f"/v1/{endpoint}:predict", {"instances": [{**inst, "max_tokens": 2.5}]}
    )
    assert status == 400


def test_over_the_concurrency_cap_is_429_promptly(local_api: Any, endpoint: str) -> None:
    _, info = _call(local_api, "GET", "/local/v1/status")
    cap = info["predict_concurrency"]
    clients = 4 * cap
    barrier = threading.Barrier(clients)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        start = time.monotonic()
        status, _ = _call(
            local_api,
            "POST",
            f"/v1/{endpoint}:predict",
            {"instances": [{"prompt": "hello", "max_tokens": 300, "top_k": 1}]},
        )
        with lock:
            results.append((status, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    statuses = [s for s, _ in results]
    assert len(results) == clients and set(statuses) <= {200, 429}
    assert statuses.count(200) >= 1 and statuses.count(429) >= clients - 2 * cap
    slowest_200 = max(d for s, d in results if s == 200)
    assert all(d < slowest_200 for s, d in results if s == 429)  # refused at once, not queued
