"""The checks every request passes before any route: Host, Origin, bearer token, body size.

Host first (Starlette's ``TrustedHostMiddleware``, answered in Google's error shape): a
DNS-rebound page must be refused before it learns anything else. Then one middleware for the
rest, which also buffers the body so its size is known before a handler runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infra.local.api.errors import ApiError

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
            self._check(Headers(scope=scope))
            body = await self._read_body(Headers(scope=scope), receive)
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

    def _check(self, headers: Headers) -> None:
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            raise ApiError(403, f"Origin not allowed: {origin}")
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), self.token
        ):
            raise ApiError(401, TOKEN_REFUSED)

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
