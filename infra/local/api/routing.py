"""From a Vertex method handler to a Starlette route: path segments, threads, rendering.

A handler is a plain function ``(ctx, call) -> (type name, JSON)`` run in a worker thread
(the state store and the GCS client block); :func:`route` wraps it into an endpoint that
renders the answer through the proto type for the client's API version.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local.api import deployments, model_deploys
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.wire import Rendered, render

#: ``projects/P/locations/L``, the parent of every collection.
PARENT = "/projects/{project:seg}/locations/{location:seg}"


@dataclass(frozen=True)
class Call:
    """One request, as a handler sees it.

    Attributes:
        params: Path parameters (``project``, ``location``, ``id``...).
        query: Query parameters.
        body: The raw request body.
    """

    params: dict[str, str]
    query: dict[str, str]
    body: bytes

    @property
    def parent(self) -> str:
        """``projects/P/locations/L`` of the request path."""
        return f"projects/{self.params['project']}/locations/{self.params['location']}"


Handler = Callable[[Context, Call], Rendered]


class _Segment(Convertor[str]):
    """One path segment without ``:`` (a custom method like ``:cancel`` follows the id)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _BareId(_Segment):
    """A model id without a version."""

    regex = "[^/:@]+"


class _ModelId(_Segment):
    """A model id with an optional ``@version``."""

    regex = "[^/:@]+(?:@[^/:]+)?"


class _Nested(_Segment):
    """Zero or more ``/collection/id`` pairs (operations of nested resources)."""

    regex = "(?:/[^/]+/[^/]+)*"


register_url_convertor("seg", _Segment())
register_url_convertor("bareid", _BareId())
register_url_convertor("modelid", _ModelId())
register_url_convertor("nested", _Nested())


def route(method: str, path: str, handler: Handler) -> Route:
    """A Vertex method at ``path`` (relative to the version mount)."""
    return Route(path, endpoint(handler), methods=[method])


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Runs ``handler`` in a worker thread and renders its answer for the caller's version."""

    async def serve(request: Request) -> Response:
        ctx: Context = request.app.state.ctx
        call = Call(dict(request.path_params), dict(request.query_params), await request.body())

        def run() -> Rendered:
            deployments.tick(ctx)
            model_deploys.tick(ctx)
            return handler(ctx, call)

        result = await anyio.to_thread.run_sync(run)
        ints = "enum-encoding=int" in request.query_params.get("$alt", "")
        return JSONResponse(render(result, ints, version(request)))

    return guarded(serve)


def guarded(
    serve: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers errors in Google's shape, a bug's included."""

    async def call(request: Request) -> Response:
        try:
            return await serve(request)
        except ApiError as e:
            return e.response()
        except Exception as e:  # a bug must still answer in Google's shape, and say what
            print(
                f"tunestack serve: {request.method} {request.url.path}: {e!r}",
                file=sys.stderr,
                flush=True,
            )
            return ApiError(
                500, f"internal error in the local API: {type(e).__name__}: {e}"
            ).response()

    return call


def version(request: Request) -> str:
    """The API version of the request path: ``v1``, ``v1beta1`` or ``ui``."""
    return request.url.path.lstrip("/").partition("/")[0]


async def not_implemented(request: Request) -> Response:
    """The answer outside the subset: 501 naming the method."""
    rest = request.url.path.lstrip("/").partition("/")[2]
    raise ApiError(
        501,
        f"{request.method} /{version(request)}/{rest} is not implemented by the local Vertex AI API (tunestack serve)",
    )
