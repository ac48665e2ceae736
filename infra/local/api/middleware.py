"""The checks every request passes before any route: Host, Origin, bearer token, body size.

Host first (Starlette's ``TrustedHostMiddleware``, answered in Google's error shape): a
DNS-rebound page must be refused before it learns anything else. Then one middleware for the
rest, which also buffers the body so its size is known before a handler runs, reads it within
a deadline and refuses JSON that is non-finite, too deep or carries too many instances.
:class:`BoundedH11` closes connections whose request headers do not arrive in time.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Iterable
from typing import Any

import anyio
import h11
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from infra.local.api.errors import ApiError

#: Seconds a client has to send the whole request head (slow-header connections are closed).
HEADER_READ_TIMEOUT_S = 10.0
#: Seconds a client has to send the whole request body (408 and the connection is closed).
BODY_READ_TIMEOUT_S = 30.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_TIMEOUT_S = 5
#: Largest request head h11 buffers (bytes); beyond it the request is refused.
MAX_HEADER_BYTES = 64 * 1024
#: Deepest nesting of a JSON body (objects and arrays).
MAX_JSON_DEPTH = 64
#: Most ``instances`` of one predict call.
MAX_INSTANCES_PER_CALL = 64

_HOST_OK = "tunestack.host_allowed"
HOST_REFUSED = (
    "Host not allowed: the local API only answers localhost names (DNS rebinding protection)"
)
TOKEN_REFUSED = "Request had invalid or missing authentication credentials: send Authorization: Bearer <token from $TUNESTACK_HOME/local/token>"


class HostAllowlist:
    """``TrustedHostMiddleware`` decides; its refusal is answered 403 in Google's shape.

    Args:
        app: The wrapped application.
        hosts: Accepted host names (any port).
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.trusted = TrustedHostMiddleware(
            self._allowed, allowed_hosts=list(hosts), www_redirect=False
        )

    async def _allowed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_HOST_OK] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_or_refuse(message: Message) -> None:
            if scope.get(_HOST_OK):
                await send(message)
            elif message["type"] == "http.response.start":
                await ApiError(403, HOST_REFUSED).response()(scope, receive, send)
            # else: the body of Starlette's plain-text refusal, replaced by ours

        await self.trusted(scope, receive, send_or_refuse)


class Guard:
    """Origin allowlist, constant-time bearer token check and the body size cap (413).

    Args:
        app: The wrapped application.
        token: The bearer token.
        origins: Accepted ``Origin`` values (browsers send one; other clients none).
        body_limit: Largest request body in bytes.
    """

    def __init__(self, app: ASGIApp, token: str, origins: Iterable[str], body_limit: int) -> None:
        self.app = app
        self.token = token.encode()
        self.origins = frozenset(origins)
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers = Headers(scope=scope)
            check_credentials(headers, self.origins, self.token)
            with anyio.fail_after(BODY_READ_TIMEOUT_S):
                body = await self._read_body(headers, receive)
            check_json(body, headers.get("content-type"), scope.get("path", ""))
        except TimeoutError:
            message = f"Request body not received within {BODY_READ_TIMEOUT_S:.0f} s"
            response = ApiError(408, message).response()
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        except ApiError as e:
            await e.response()(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        limit = self.body_limit
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(
                413, f"Request body of {declared} bytes exceeds the limit of {limit} bytes"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"Request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


class BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every request head.

    uvicorn times out idle keep-alive connections, but a client that trickles a header byte
    now and then (or never sends a request at all) holds its connection forever; this closes
    any connection with no request in progress :data:`HEADER_READ_TIMEOUT_S` after it opened
    or after its last response.
    """

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in (h11.SEND_BODY, h11.DONE) and self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEADER_READ_TIMEOUT_S, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self.transport.close()


def check_credentials(headers: Headers, origins: frozenset[str], token: bytes) -> None:
    """The Origin allowlist and the constant-time bearer token check (API and storage door).

    Raises:
        ApiError: 403 for a foreign Origin, 401 for a missing or wrong token.
    """
    origin = headers.get("origin")
    if origin is not None and origin.lower() not in origins:
        raise ApiError(403, f"Origin not allowed: {origin[:200]}")
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token):
        raise ApiError(401, TOKEN_REFUSED)


def loads_strict(body: bytes | str) -> Any:
    """JSON without NaN/Infinity (nor numbers that overflow to them), at most
    :data:`MAX_JSON_DEPTH` deep.

    Raises:
        ApiError: 400 naming the problem.
    """
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ApiError(400, f"JSON payload nests deeper than {MAX_JSON_DEPTH} levels") from None
    except _NonFinite as e:
        raise ApiError(400, f"Invalid JSON payload received. {e}") from None
    except ValueError as e:
        raise ApiError(400, f"Invalid JSON payload received. {e}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, f"JSON payload nests deeper than {MAX_JSON_DEPTH} levels")
    return data


def check_json(body: bytes, content_type: str | None, path: str) -> None:
    """Strict JSON checks of a body that is (or claims to be) JSON; the instances cap.

    Raises:
        ApiError: 400 for non-finite numbers, nesting, too many instances, bad JSON.
    """
    if not body.strip():
        return
    if content_type is not None and "json" not in content_type.lower():
        return
    data = loads_strict(body)
    instances = data.get("instances") if isinstance(data, dict) else None
    count = len(instances) if isinstance(instances, list) else 0
    if path.endswith("predict") and count > MAX_INSTANCES_PER_CALL:
        raise ApiError(400, f"{count} instances in one call; the limit is {MAX_INSTANCES_PER_CALL}")


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a JSON number (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"{text[:50]} overflows to a non-finite number")
    return value


def _depth(data: Any) -> int:
    """Nesting depth, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            values = item.values() if isinstance(item, dict) else item
            stack.extend((v, level + 1) for v in values if isinstance(v, dict | list))
    return deepest
