"""The storage door: token, Host, Origin, CORS and object names (issue 14, finding 1)."""

from __future__ import annotations

import http.client as httpc
import json
import os
import urllib.parse
from pathlib import Path

import pytest

from infra.gcs import client as gcs_client
from infra.local import storage_door
from tests.local.conftest import Server, http


def raw(
    server: Server,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the exact target bytes (no client-side normalisation)."""
    url = urllib.parse.urlparse(server.storage_url)
    conn = httpc.HTTPConnection(url.hostname, url.port, timeout=30)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {server.token}"
    skip_host = any(k.lower() == "host" for k in sent)
    conn.putrequest(method, target, skip_host=skip_host, skip_accept_encoding=True)
    for k, v in sent.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


@pytest.fixture(scope="module")
def bucket(server: Server) -> str:
    gcs_client(endpoint=server.storage_url, token=server.token).create_bucket("door-test")
    return "door-test"


def test_sdk_with_the_token_round_trips(server: Server, bucket: str) -> None:
    client = gcs_client(endpoint=server.storage_url, token=server.token)
    blob = client.bucket(bucket).blob("dir/a.txt")
    blob.upload_from_string(b"hello")
    assert blob.download_as_bytes() == b"hello"
    big = client.bucket(bucket).blob("dir/big.bin")
    big.chunk_size = 256 * 1024  # a resumable upload through the door
    payload = os.urandom(600 * 1024)
    big.upload_from_string(payload)
    assert big.download_as_bytes() == payload
    assert [b.name for b in client.list_blobs(bucket, prefix="dir/")] == [
        "dir/a.txt",
        "dir/big.bin",
    ]


def test_no_token_is_401(server: Server, bucket: str) -> None:
    status, _, _ = raw(server, "GET", "/storage/v1/b", token=False)
    assert status == 401
    anonymous = gcs_client(endpoint=server.storage_url, token=None)
    with pytest.raises(Exception, match="401|Anonymous credentials"):
        list(anonymous.list_buckets())
    status, _, _ = raw(
        server, "GET", "/storage/v1/b", headers={"Authorization": "Bearer wrong"}, token=False
    )
    assert status == 401


def test_foreign_host_and_origin_are_refused_and_no_cors(server: Server, bucket: str) -> None:
    status, _, _ = raw(server, "GET", "/storage/v1/b", headers={"Host": "evil.example:80"})
    assert status == 403
    status, headers, _ = raw(
        server, "GET", "/storage/v1/b", headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = raw(server, "GET", "/storage/v1/b")
    assert status == 200 and "access-control-allow-origin" not in headers
    status, headers, _ = raw(
        server, "OPTIONS", "/storage/v1/b", headers={"Origin": "http://evil.example"}, token=False
    )
    assert status in (401, 403) and "access-control-allow-origin" not in headers


ESCAPES = [
    "..%2F..%2F..%2Ftmp%2Fpwned.txt",  # the exact name
    "a%2F..%2F..%2Fx",
    "..",
    ".",
    "a%2F.%2Fb",
    "a%00b",
    "a%0Ab",
    "%252e%252e%252fx",
    "..%5C..%5Cx",
]


@pytest.mark.parametrize("name", ESCAPES)
def test_escaping_names_are_400_on_every_route(
    server: Server, bucket: str, name: str, tmp_path: Path
) -> None:
    targets = [
        ("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"),
        ("GET", f"/storage/v1/b/{bucket}/o?name={name}"),
        ("GET", f"/storage/v1/b/{bucket}/o/{name}"),
        ("GET", f"/download/storage/v1/b/{bucket}/o/{name}?alt=media"),
        ("DELETE", f"/storage/v1/b/{bucket}/o/{name}"),
        ("PUT", f"/{bucket}/{name}"),  # XML-style paths fake-gcs-server serves
        ("GET", f"/{bucket}/{name}"),
        ("GET", f"/storage/v1/b/{bucket}/o?prefix={name}"),
    ]
    for method, target in targets:
        status, _, body = raw(server, method, target, b"pwned")
        assert status == 400, (method, target, status, body[:200])
    assert not Path("/tmp/pwned.txt").exists() or Path("/tmp/pwned.txt").read_bytes() != b"pwned"


@pytest.mark.parametrize("name", ["../../../tmp/pwned.txt", "a/./b", "x\u0000y", ".."])
def test_escaping_names_in_upload_metadata_are_400(server: Server, bucket: str, name: str) -> None:
    meta = json.dumps({"name": name}).encode()
    status, _, _ = raw(
        server,
        "POST",
        f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable",
        meta,
        {"Content-Type": "application/json"},
    )
    assert status == 400
    boundary = "BOUNDARY"
    multipart = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
        + meta
        + f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\npwned\r\n--{boundary}--\r\n".encode()
    )
    status, _, _ = raw(
        server,
        "POST",
        f"/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
        multipart,
        {"Content-Type": f'multipart/related; boundary="{boundary}"'},
    )
    assert status == 400
    compose = json.dumps({"sourceObjects": [{"name": name}]}).encode()
    status, _, _ = raw(
        server,
        "POST",
        f"/storage/v1/b/{bucket}/o/ok/compose",
        compose,
        {"Content-Type": "application/json"},
    )
    assert status == 400


def test_emulator_root_untouched_by_escape_attempts(server: Server, bucket: str) -> None:
    root = server.home / "local" / "gcs"
    outside = {p for p in server.home.rglob("*") if root not in p.parents and p != root}
    for name in ESCAPES:
        raw(server, "POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}", b"x")
    after = {p for p in server.home.rglob("*") if root not in p.parents and p != root}
    assert {p for p in after - outside if "pwned" in p.name} == set()


def test_emulator_itself_is_not_the_published_url(server: Server) -> None:
    api = json.loads((server.home / "local" / "api.json").read_text())
    status, _ = http("GET", api["storage_url"] + "/storage/v1/b")
    assert status == 401  # the published storage URL is the door


@pytest.mark.parametrize(
    "name",
    ["a/b/c.txt", "with space", "ünïcode/ok", "dots.in.name", "..hidden", "a..b", "trailing/"],
)
def test_good_names_pass_the_checks(name: str) -> None:
    storage_door.check_name(name)


@pytest.mark.parametrize("name", ["..", "a/../b", "./a", "a/.", "a\x00", "a\x1fb", "a\\..\\b"])
def test_bad_names_fail_the_checks(name: str) -> None:
    with pytest.raises(storage_door.NameRefused):
        storage_door.check_name(name)


def test_object_and_prefix_collision_is_409_not_500(server: Server, bucket: str) -> None:
    """Found by the fuzzer: fake-gcs-server's filesystem backend answered 500 (with its paths)."""
    for first, second in (("col/a/b", "col/a"), ("col/c", "col/c/d")):
        assert (
            raw(
                server,
                "POST",
                f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={first}",
                b"x",
            )[0]
            == 200
        )
        status, _, body = raw(
            server, "POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={second}", b"x"
        )
        assert status == 409 and b"/tmp" not in body and str(server.home).encode() not in body


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_every_link_the_emulator_returns_leads_back_to_the_door(
    server: Server, bucket: str, host: str
) -> None:
    """The emulator builds upload answers' selfLink/mediaLink from the Host it is sent: they
    once named its own private address, so the SDK's download after an upload went around
    the door (no token needed). Every link, for every upload type, must name the door."""
    door = server.storage_url.replace("127.0.0.1", host)
    client = gcs_client(endpoint=door, token=server.token)
    links: list[str] = []
    small = client.bucket(bucket).blob("links/multipart.txt")
    small.upload_from_string(b"m")  # multipart
    big = client.bucket(bucket).blob("links/resumable.bin")
    big.chunk_size = 256 * 1024
    big.upload_from_string(os.urandom(300 * 1024))  # resumable
    for blob in (small, big):
        links += [blob.self_link, blob.media_link]
    status, _, body = raw(
        server,
        "POST",
        f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=links/media.txt",
        b"x",
        {"Host": door.partition("://")[2]},
    )
    assert status == 200
    media = json.loads(body)
    links += [media["selfLink"], media["mediaLink"]]
    for blob in client.list_blobs(bucket, prefix="links/"):
        links += [blob.self_link, blob.media_link]
    assert len(links) == 12
    assert [link for link in links if not link.startswith(door + "/")] == []
    assert small.download_as_bytes() == b"m"  # the SDK follows mediaLink: through the door
