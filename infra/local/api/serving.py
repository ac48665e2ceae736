"""What every generation door shares: the endpoint's model, the slot, the generation thread,
cancellation when the client leaves, and server-sent events.

A slot (``predict_concurrency``) is taken before any work and freed only when the
generation thread has stopped, so a client that disconnects frees its slot as soon as the
decode loop sees the cancel event (one token), and a client beyond the cap gets 429 at once:
there is no queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from infra.local.api import deployments
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.generate import Cancelled, DeadlineExceeded, RequestError
from infra.local.predict import LoadedModel

#: What nginx logs when the client closed the connection first (nobody reads the answer).
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class Target:
    """The model an endpoint serves."""

    endpoint: str
    deployed: dict[str, Any]
    gcs_uri: str
    local_dir: Path


def target(ctx: Context, request: Request) -> Target:
    """The deployed model of the endpoint in the request path.

    Raises:
        ApiError: 404 without the endpoint (or in another project/location), 400 without a
            deployed model.
    """
    p = request.path_params
    parent = f"projects/{p['project']}/locations/{p['location']}"
    name = f"{parent}/endpoints/{p['id']}"
    entry = ctx.store.get("endpoints", p["id"])
    if entry is None or entry["resource"]["name"] != name:
        raise ApiError(404, f"Endpoint {name} not found")
    deployed = entry["resource"].get("deployedModels", [])
    if not deployed:
        raise ApiError(400, f"Endpoint {name} has no deployed model", "FAILED_PRECONDITION")
    model = ctx.store.get("models", deployed[0]["id"])
    if model is None:
        raise ApiError(400, f"Model of {name} was deleted", "FAILED_PRECONDITION")
    internal = model["internal"]
    return Target(name, deployed[0], internal["gcsUri"], Path(internal["localDir"]))


def acquire(ctx: Context) -> None:
    """Takes a generation slot.

    Raises:
        ApiError: 429 RESOURCE_EXHAUSTED when all are taken.
    """
    if not ctx.limiter.try_acquire():
        raise ApiError(429, f"Too many concurrent predictions (cap {ctx.limiter.cap}); retry later")


async def load(ctx: Context, t: Target, check: Callable[[LoadedModel], Any]) -> Any:
    """Loads the model (copying it after a restart) and runs ``check`` on it in a thread.

    Raises:
        ApiError: 400 when ``check`` refuses the request.
    """

    def run() -> Any:
        deployments.materialise(ctx, t.gcs_uri, t.local_dir)
        return check(ctx.models.get(t.local_dir))

    try:
        return await anyio.to_thread.run_sync(run)
    except RequestError as e:
        raise ApiError(400, str(e)) from None


class Run:
    """A generation on its own thread; what it yields reaches the event loop through a queue.

    Args:
        work: The generation, given the cancel event; its items are handed over in order.
        on_end: Called on the thread once the generation stopped (frees the slot).
    """

    def __init__(
        self, work: Callable[[threading.Event], Iterator[Any]], on_end: Callable[[], None]
    ) -> None:
        self.cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._on_end = on_end
        threading.Thread(target=self._produce, args=(work,), name="generate", daemon=True).start()

    async def items(self) -> AsyncIterator[Any]:
        """The items, then the end; the thread's error is raised here. Leaving early cancels."""
        try:
            while True:
                kind, value = await self._queue.get()
                if kind == "item":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            self.cancel.set()

    async def collect(self, request: Request) -> list[Any]:
        """All items, cancelling the generation if the client disconnects meanwhile.

        Raises:
            Cancelled: when the client went away.
        """
        out: list[Any] = []

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            self.cancel.set()

        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                async for item in self.items():
                    out.append(item)
            except Exception as e:  # raised below, outside the group (not as a group)
                failure = e
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return out

    def _produce(self, work: Callable[[threading.Event], Iterator[Any]]) -> None:
        last: tuple[str, Any] = ("end", None)
        try:
            for item in work(self.cancel):
                self._put(("item", item))
        except BaseException as e:  # handed to the request, which answers it
            last = ("error", e)
        finally:
            # The slot is free before the client sees the end: its next request is not a 429.
            self._on_end()
            self._put(last)

    def _put(self, entry: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
            self._loop.call_soon_threadsafe(self._queue.put_nowait, entry)


async def answer(request: Request, run: Run, render: Callable[[list[Any]], Any]) -> Response:
    """The JSON answer of a non-streaming generation (``render`` of all items)."""
    try:
        items = await run.collect(request)
    except Cancelled:
        return Response(status_code=CLIENT_CLOSED)
    except DeadlineExceeded as e:
        raise ApiError(504, str(e), "DEADLINE_EXCEEDED") from None
    body = json.dumps(render(items), allow_nan=False)
    return Response(body, media_type="application/json")


def sse(
    run: Run, events: Callable[[AsyncIterator[Any]], AsyncIterator[dict[str, Any]]]
) -> Response:
    """A server-sent event stream of ``events`` over the run's items, ending ``data: [DONE]``.

    A generation that runs past its wall clock ends the stream with an error event in
    Google's shape (the status line is already sent).
    """

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events(run.items()):
                yield f"data: {json.dumps(event, allow_nan=False)}\n\n".encode()
        except DeadlineExceeded as e:
            err = {"error": {"code": 504, "message": str(e), "status": "DEADLINE_EXCEEDED"}}
            yield f"data: {json.dumps(err)}\n\n".encode()
        except Cancelled:
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
