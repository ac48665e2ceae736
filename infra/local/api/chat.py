"""``POST {endpoint}/chat/completions``: OpenAI chat completions on every deployed endpoint.

The OpenAI client works with only ``base_url`` (``.../v1beta1/projects/P/locations/L/
endpoints/ID``) and ``api_key`` (the local token) set; ``"stream": true`` answers server-sent
events ending ``data: [DONE]``. The prompt is the model's own chat template, applied as the
trainer applied it (:meth:`infra.local.predict.LoadedModel.chat_prompt_ids`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from infra.local import chat
from infra.local.api import serving
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, guarded
from infra.local.api.wire import json_body
from infra.local.generate import Outcome, RequestError
from infra.local.predict import LoadedModel, Prepared


def routes() -> list[Route]:
    """Chat completions (v1 and v1beta1, as every version mount gets them)."""
    return [
        Route(
            f"{PARENT}/endpoints/{{id:seg}}/chat/completions",
            guarded(completions),
            methods=["POST"],
        )
    ]


async def completions(request: Request) -> Response:
    """``POST {endpoint}/chat/completions``.

    Raises:
        ApiError: 400 on a bad request (before any generation), 404/400 on the endpoint,
            429 beyond the concurrency cap.
    """
    return await respond(request, json_body(await request.body()))


async def respond(request: Request, body: Any) -> Response:
    """Answers one chat completions body (also ``:rawPredict`` / ``:streamRawPredict``)."""
    ctx: Context = request.app.state.ctx
    try:
        req = chat.parse_chat(body)
    except RequestError as e:
        raise ApiError(400, str(e)) from None
    t = serving.target(ctx, request)
    serving.acquire(ctx)
    try:
        loaded, prepared = await serving.load(ctx, t, lambda m: prepare(ctx, m, req))
    except BaseException:
        ctx.limiter.release()
        raise
    outcome = Outcome()
    timeout = ctx.settings.generation_timeout_s

    def work(cancel: threading.Event) -> Iterator[str]:
        return loaded.stream(prepared, req.sampling, outcome, cancel, timeout)

    run = serving.Run(work, ctx.limiter.release)
    model = t.deployed["model"]
    if not req.stream:
        return await serving.answer(
            request,
            run,
            lambda pieces: chat.completion(
                req, model, "".join(pieces), outcome, prepared.prompt_ids
            ),
        )

    async def events(pieces: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
        cid, created, name = chat.new_id(), int(time.time()), req.model or model
        yield chat.chunk(cid, created, name, {"role": "assistant", "content": ""})
        async for piece in pieces:
            yield chat.chunk(cid, created, name, {"content": piece})
        yield chat.chunk(cid, created, name, {}, outcome.finish_reason)
        if req.include_usage:
            yield {
                **chat.chunk(cid, created, name, {}),
                "choices": [],
                "usage": chat.usage(outcome),
            }

    return serving.sse(run, events)


def prepare(
    ctx: Context, loaded: LoadedModel, req: chat.ChatRequest
) -> tuple[LoadedModel, Prepared]:
    """The prompt ids and token budget of a chat request (400 before any generation)."""
    ids = loaded.chat_prompt_ids(req.messages)
    return loaded, loaded.prepare(ids, req.sampling, ctx.settings.max_tokens)


def complete(
    ctx: Context, loaded: LoadedModel, req: chat.ChatRequest, model: str, cancel: threading.Event
) -> dict[str, Any]:
    """One non-streaming chat completion on the caller's thread (a predict instance)."""
    _, prepared = prepare(ctx, loaded, req)
    outcome = Outcome()
    text = "".join(
        loaded.stream(prepared, req.sampling, outcome, cancel, ctx.settings.generation_timeout_s)
    )
    return chat.completion(req, model, text, outcome, prepared.prompt_ids)
