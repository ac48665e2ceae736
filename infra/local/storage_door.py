"""The door in front of the GCS emulator: token, Host, Origin and object-name checks.

fake-gcs-server takes no credentials, answers any Host, sends ``Access-Control-Allow-Origin:
*`` and maps object names onto its filesystem root, so ``..`` segments write outside it. It
therefore runs where only this door reaches it (its own network namespace, behind a private
Unix socket: :mod:`infra.local.storage_netns`; a private 127.0.0.1 port where namespaces are
unavailable), and clients reach it only through this streaming reverse proxy, which checks
what the API checks (Host allowlist, Origin, constant-time bearer token) and refuses any object or bucket name with ``.``/``..`` segments, NUL or control
characters (400) wherever it appears: the path (percent-decoded, twice), the ``name``/``prefix``
query parameters and the JSON metadata of uploads, copies and composes. CORS headers of the
emulator never reach a browser.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from infra.local.api.errors import ApiError
from infra.local.api.middleware import (
    BODY_READ_TIMEOUT_S,
    KEEP_ALIVE_TIMEOUT_S,
    MAX_HEADER_BYTES,
    BoundedH11,
    HostAllowlist,
    check_credentials,
    loads_strict,
)

#: Largest upload metadata (resumable start, JSON API bodies) read to check names (bytes).
MAX_METADATA_BYTES = 1024 * 1024
#: Largest multipart upload (metadata + media in one body), which is buffered to check the
#: name in its metadata part. google-cloud-storage switches to resumable uploads at 8 MiB.
MAX_MULTIPART_BYTES = 64 * 1024 * 1024
#: Query parameters that carry object names or prefixes.
NAME_PARAMS = frozenset(
    {"name", "prefix", "startOffset", "endOffset", "destinationObject", "sourceObject"}
)
#: Headers not forwarded either way (hop-by-hop, and the emulator's CORS answers).
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NameRefused(ValueError):
    """An object or bucket name that could escape the emulator's root."""


def check_name(name: str, what: str = "object name") -> None:
    """Refuses names with ``.``/``..`` segments, backslashes, NUL or control characters.

    Raises:
        NameRefused: with a message naming the problem.
    """
    if _CONTROL.search(name):
        raise NameRefused(f"{what} contains NUL or control characters")
    if "\\" in name:  # a path separator to some filesystems; the emulator answers 500
        raise NameRefused(f"{what} contains a backslash")
    for segment in name.split("/"):
        if segment in (".", ".."):
            raise NameRefused(f"{what} has a '{segment}' segment: {name[:200]!r}")


def check_path(raw_path: str) -> None:
    """Checks every segment of a request path, decoded once and twice (``%252e%252e``)."""
    once = unquote(raw_path, errors="strict")
    check_name(once, "path")
    check_name(unquote(once, errors="strict"), "path")


def check_query(query: str) -> None:
    """Checks the name-like query parameters and refuses control characters in any."""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if _CONTROL.search(key) or _CONTROL.search(value):
            raise NameRefused(f"query parameter {key[:50]!r} contains control characters")
        if key in NAME_PARAMS:  # decoded once by parse_qsl, and once more (%252e)
            check_name(value, f"{key} parameter")
            check_name(unquote(value), f"{key} parameter")


def check_metadata(data: Any) -> None:
    """Checks every ``name``/``bucket``/``destination``-like string in upload or API metadata."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str) and key in ("name", "bucket", "destination"):
                    check_name(value, f"{key} in the body")
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


class StorageDoor:
    """The ASGI app of the door: checks, then streams the call to the emulator.

    Args:
        upstream: The emulator's private URL (``http://127.0.0.1:PORT``).
        token: The bearer token.
        origins: Accepted ``Origin`` values (none by default: browsers are refused).
        transport: How to reach ``upstream`` (the emulator's Unix socket when it is isolated,
            :meth:`infra.local.storage.StorageEmulator.transport`); default: TCP.
    """

    def __init__(
        self,
        upstream: str,
        token: str,
        origins: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token.encode()
        self.origins = frozenset(origins)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=10.0), transport=transport
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            check_credentials(Headers(scope=scope), self.origins, self.token)
            raw_path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            check_path(raw_path.partition("?")[0])
            check_query(query)
            content = await self._body(request, query)
        except NameRefused as e:
            await ApiError(400, f"Invalid object name: {e}").response()(scope, receive, send)
            return
        except UnicodeDecodeError:
            await ApiError(400, "Invalid percent-encoding in the path").response()(
                scope, receive, send
            )
            return
        except ApiError as e:
            await e.response()(scope, receive, send)
            return
        response = await self._forward(request, raw_path, query, content)
        await response(scope, receive, send)

    async def _body(self, request: Request, query: str) -> bytes | AsyncIterator[bytes]:
        """Bodies that carry names are read (bounded) and checked; media streams through.

        Names travel in the JSON API's bodies (``/storage/v1``: rewrites, copies, composes,
        patches), in resumable upload starts and in the first part of multipart uploads; the
        XML-style ``PUT /bucket/object`` and resumable chunks carry media only (the name is in
        the path or fixed at the start).
        """
        params = dict(parse_qsl(query))
        path = request.url.path
        if path.startswith("/upload/"):
            kind = params.get("uploadType")
            if kind == "multipart":
                body = await _read(request, MAX_MULTIPART_BYTES)
                _check_multipart(body, request.headers.get("content-type", ""))
                return body
            if kind == "resumable" and "upload_id" not in params:
                return _check_json_metadata(await _read(request, MAX_METADATA_BYTES))
            return request.stream()
        if path.startswith("/storage/v1") and request.method in ("POST", "PATCH", "PUT"):
            return _check_json_metadata(await _read(request, MAX_METADATA_BYTES))
        return request.stream()

    async def _forward(self, request: Request, raw_path: str, query: str, content: Any) -> Response:
        url = self.upstream + raw_path + (f"?{query}" if query else "")
        headers = [
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _HOP and k.lower() not in ("authorization", "origin")
        ]
        # The Host the client used (checked by the allowlist): the emulator builds the
        # selfLink/mediaLink of upload answers from it, which must lead back to this door,
        # never to the emulator's own address.
        if "host" in request.headers:
            headers.append(("host", request.headers["host"]))
        upstream = self.client.build_request(
            request.method, httpx.URL(url), headers=headers, content=content
        )
        try:
            answer = await self.client.send(upstream, stream=True)
        except httpx.HTTPError as e:
            return ApiError(503, f"storage emulator unavailable: {type(e).__name__}").response()
        if answer.status_code >= 500:
            return await _upstream_error(answer)
        out = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in _HOP
            and not k.lower().startswith("access-control-")
            and k.lower() != "content-length"
        }
        if "content-length" in answer.headers and "content-encoding" not in answer.headers:
            out["content-length"] = answer.headers["content-length"]
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=out,
            background=BackgroundTask(answer.aclose),
        )


class DoorServer:
    """The door on its own port, served by uvicorn in a thread (the API keeps the main one).

    Args:
        sock: A bound socket (127.0.0.1 unless the user binds otherwise).
        upstream: The emulator's private URL.
        token: The bearer token.
        hosts: Accepted Host names.
        transport: How to reach ``upstream`` (see :class:`StorageDoor`).
    """

    def __init__(
        self,
        sock: Any,
        upstream: str,
        token: str,
        hosts: Iterable[str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sock = sock
        app = HostAllowlist(StorageDoor(upstream, token, transport=transport), hosts=hosts)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            http=BoundedH11,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="storage-door", daemon=True)

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 10.0) -> None:
        """Serves in the background; returns once uvicorn has started."""
        self.thread.start()
        self.thread.join(0)
        for _ in range(int(timeout / 0.05)):
            if self.server.started:
                return
            self.thread.join(0.05)
        raise RuntimeError("the storage door did not start")

    def stop(self) -> None:
        """Asks uvicorn to exit and waits for the thread (5 s at most)."""
        self.server.should_exit = True
        self.thread.join(5)


#: What fake-gcs-server's filesystem backend says when an object ``a`` and objects under
#: ``a/`` collide (Cloud Storage allows both; a filesystem cannot).
_COLLISION = ("file exists", "not a directory", "is a directory")


async def _upstream_error(answer: httpx.Response) -> Response:
    """An emulator failure as a clear answer: a name collision is 409, anything else 502."""
    try:
        await answer.aread()
        message = str(answer.json().get("error", {}).get("message", ""))
    except (httpx.HTTPError, ValueError, AttributeError):
        message = ""
    finally:
        await answer.aclose()
    if any(words in message for words in _COLLISION):
        return ApiError(
            409,
            "the local storage emulator cannot hold both an object and objects under it as a "
            "prefix (its filesystem backend); choose another name",
        ).response()
    return ApiError(502, f"storage emulator error {answer.status_code}").response()


async def _read(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413), within the body deadline (408)."""
    chunks, size = [], 0
    try:
        with anyio.fail_after(BODY_READ_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"Request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, f"Request body not received within {BODY_READ_TIMEOUT_S:.0f} s"
        ) from None
    return b"".join(chunks)


def _check_json_metadata(body: bytes) -> bytes:
    if not body.strip():
        return body
    try:
        data = loads_strict(body)
    except ApiError:
        raise ApiError(400, "Invalid JSON metadata (not JSON, non-finite or too deep)") from None
    check_metadata(data)
    return body


def _check_multipart(body: bytes, ctype: str) -> None:
    """Checks the JSON metadata part (the first part) of a multipart/related upload."""
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    if not match:
        raise ApiError(400, "multipart upload without a boundary")
    boundary = b"--" + match.group(1).encode()
    parts = body.split(boundary)
    for part in parts[1:]:
        head, _, payload = part.partition(b"\r\n\r\n")
        if b"application/json" in head.lower():
            _check_json_metadata(payload.strip())
            return
