"""``POST {endpoint}:predict``, ``:rawPredict`` and ``:streamRawPredict``: generation on the
deployed checkpoint, 429 beyond the cap.

``:predict`` answers as Model Garden's vLLM containers answer (prompt instances, and
``"@requestFormat": "chatCompletions"`` instances predicting a ``chat.completion``).
``:rawPredict`` passes its body to the container as-is: ``{"instances": ...}`` predicts, a
chat completions body completes; ``:streamRawPredict`` streams a chat completion.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local import chat
from infra.local.api import chat as chat_api
from infra.local.api import serving
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, guarded
from infra.local.api.wire import json_body
from infra.local.generate import Outcome, RequestError
from infra.local.predict import Instance, LoadedModel, Prepared, parse_instance

#: Most instances in one predict request.
MAX_INSTANCES = 64


def routes() -> list[Route]:
    """Predict, rawPredict and streamRawPredict."""
    base = f"{PARENT}/endpoints/{{id:seg}}"
    return [
        Route(f"{base}:predict", guarded(predict), methods=["POST"]),
        Route(f"{base}:rawPredict", guarded(raw_predict), methods=["POST"]),
        Route(f"{base}:streamRawPredict", guarded(stream_raw_predict), methods=["POST"]),
    ]


async def predict(request: Request) -> Response:
    """``POST {endpoint}:predict``: 429 at once when ``predict_concurrency`` calls run.

    Raises:
        ApiError: 400 on a bad body (before any generation) or an endpoint without a model,
            404 without the endpoint.
    """
    return await _predict(request, json_body(await request.body()))


async def raw_predict(request: Request) -> Response:
    """``POST {endpoint}:rawPredict``: the body goes to the container unchanged.

    GAPIC REST clients wrap it in a ``RawPredictRequest`` (``{"httpBody": {"contentType",
    "data"}}``, data base64) and read an ``HttpBody`` back; both forms are answered.
    """
    body = json_body(await request.body())
    wrapped = isinstance(body, dict) and set(body) == {"httpBody"}
    if wrapped:
        body = _unwrap(body["httpBody"])
    if isinstance(body, dict) and "instances" in body:
        response = await _predict(request, body)
    elif isinstance(body, dict) and body.get("stream"):
        raise ApiError(400, "stream: use :streamRawPredict to stream")
    else:
        response = await chat_api.respond(request, body)
    if not wrapped or response.status_code != 200:
        return response
    data = base64.b64encode(bytes(response.body)).decode()
    return JSONResponse({"contentType": "application/json", "data": data})


def _unwrap(http_body: Any) -> Any:
    if not isinstance(http_body, dict) or not isinstance(http_body.get("data", ""), str):
        raise ApiError(400, "httpBody must be an object with base64 data", field="httpBody")
    try:
        raw = base64.b64decode(http_body.get("data", ""), validate=True)
    except ValueError:
        raise ApiError(400, "httpBody.data is not base64", field="httpBody.data") from None
    return json_body(raw)


async def stream_raw_predict(request: Request) -> Response:
    """``POST {endpoint}:streamRawPredict``: a streamed chat completion (server-sent events)."""
    body = json_body(await request.body())
    if not isinstance(body, dict) or "messages" not in body:
        raise ApiError(400, ":streamRawPredict needs a chat completions body with messages")
    return await chat_api.respond(request, {**body, "stream": True})


async def _predict(request: Request, body: Any) -> Response:
    ctx: Context = request.app.state.ctx
    instances = _instances(body)
    t = serving.target(ctx, request)
    serving.acquire(ctx)
    try:
        loaded, prepared = await serving.load(ctx, t, lambda m: (m, _prepare(ctx, m, instances)))
    except BaseException:
        ctx.limiter.release()
        raise
    model = t.deployed["model"]
    timeout = ctx.settings.generation_timeout_s

    def work(cancel: threading.Event) -> Iterator[Any]:
        for inst, prep in zip(instances, prepared, strict=True):
            if isinstance(inst, chat.ChatRequest):
                yield chat_api.complete(ctx, loaded, inst, model, cancel)
                continue
            assert isinstance(prep, Prepared)
            text = "".join(loaded.stream(prep, inst.sampling, Outcome(), cancel, timeout))
            yield text if inst.raw_response else f"Prompt:\n{inst.prompt}\nOutput:\n{text}"

    d = t.deployed
    return await serving.answer(
        request,
        serving.Run(work, ctx.limiter.release),
        lambda predictions: {
            "predictions": predictions,
            "deployedModelId": d["id"],
            "model": d["model"],
            "modelDisplayName": d.get("displayName", ""),
            "modelVersionId": d.get("modelVersionId", "1"),
        },
    )


def _prepare(
    ctx: Context, loaded: LoadedModel, instances: list[Instance | chat.ChatRequest]
) -> list[Prepared | None]:
    """Every instance checked against the context before any generation."""
    out: list[Prepared | None] = []
    for i, inst in enumerate(instances):
        try:
            if isinstance(inst, chat.ChatRequest):
                chat_api.prepare(ctx, loaded, inst)
                out.append(None)
            else:
                ids = loaded.text_prompt_ids(inst.prompt)
                out.append(loaded.prepare(ids, inst.sampling, ctx.settings.max_tokens))
        except RequestError as e:
            raise RequestError(f"instances[{i}]: {e}") from None
    return out


def _instances(body: Any) -> list[Instance | chat.ChatRequest]:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("instances"), list)
        or not body["instances"]
    ):
        raise ApiError(400, "predict needs a non-empty instances list")
    unknown = set(body) - {"instances", "parameters"}
    if unknown:
        raise ApiError(400, f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}")
    if len(body["instances"]) > MAX_INSTANCES:
        raise ApiError(
            400, f"at most {MAX_INSTANCES} instances per request (got {len(body['instances'])})"
        )
    try:
        return [parse_instance(i) for i in body["instances"]]
    except RequestError as e:
        raise ApiError(400, str(e)) from None
