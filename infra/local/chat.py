"""OpenAI chat completions, as Model Garden's vLLM containers serve them: request and answer.

The request is OpenAI's (``messages``, ``max_tokens``/``max_completion_tokens``,
``temperature``, ``top_p``, ``stop``, ``n`` = 1, ``seed``, ``stream``, ``stream_options``,
penalties) plus vLLM's ``top_k``, ``ignore_eos`` and ``return_token_ids`` (the prompt's
token ids in the answer). Fields that would change the
answer in a way the local server cannot honour (tools, logprobs, ``n`` > 1, JSON mode) are a
400 naming them, never silently ignored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from infra.local.generate import Outcome, RequestError, Sampling, number

#: Most messages in one request.
MAX_MESSAGES = 1024
#: Most stop sequences (OpenAI's limit).
MAX_STOP_SEQUENCES = 4
#: Longest stop sequence, characters.
MAX_STOP_CHARS = 256
ROLES = ("system", "developer", "user", "assistant")

_KNOWN = {
    "messages",
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "n",
    "seed",
    "stream",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "return_token_ids",
    "ignore_eos",
    "@requestFormat",
}


@dataclass(frozen=True)
class ChatRequest:
    """A parsed chat completions request."""

    messages: list[dict[str, str]]
    sampling: Sampling
    stream: bool
    include_usage: bool
    return_token_ids: bool
    model: str


def parse_chat(raw: Any, where: str = "") -> ChatRequest:
    """Validates a chat completions body (or a ``chatCompletions`` predict instance).

    Raises:
        RequestError: on anything OpenAI or vLLM would refuse, or the local server cannot do.
    """
    if not isinstance(raw, dict):
        raise RequestError(f"{where or 'the body'} must be a JSON object")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise RequestError(f"{where}{unknown[0]}: unknown field of a chat completions request")
    messages = _messages(raw.get("messages"), where)
    n = number(raw, "n", 1, integer=True, where=where)
    if n != 1:
        raise RequestError(f"{where}n: only n=1 is supported (got {n})")
    if raw.get("logprobs") not in (None, False):
        raise RequestError(f"{where}logprobs: not supported by the local server")
    if raw.get("tools") or raw.get("tool_choice") not in (None, "none"):
        raise RequestError(f"{where}tools: tool calling is not supported by the local server")
    fmt = raw.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise RequestError(f"{where}response_format: only {{'type': 'text'}} is supported")
    key = "max_completion_tokens" if raw.get("max_completion_tokens") is not None else "max_tokens"
    sampling = Sampling(
        max_tokens=number(raw, key, None, integer=True, lo=1, where=where),
        temperature=number(raw, "temperature", 1.0, lo=0, hi=2, where=where),
        top_p=_top_p(raw, where),
        top_k=max(0, number(raw, "top_k", 0, integer=True, lo=-1, where=where)),
        stop=_stops(raw.get("stop"), where),
        seed=number(raw, "seed", None, integer=True, where=where),
        presence_penalty=number(raw, "presence_penalty", 0.0, lo=-2, hi=2, where=where),
        frequency_penalty=number(raw, "frequency_penalty", 0.0, lo=-2, hi=2, where=where),
        ignore_eos=_flag(raw, "ignore_eos", where),
    )
    _flag(raw, "return_token_ids", where)
    stream = raw.get("stream", False)
    options = raw.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise RequestError(f"{where}stream must be a boolean and stream_options an object")
    model = raw.get("model", "")
    if not isinstance(model, str):
        raise RequestError(f"{where}model must be a string")
    return ChatRequest(
        messages,
        sampling,
        stream,
        bool(options.get("include_usage")),
        bool(raw.get("return_token_ids")),
        model,
    )


def completion(
    request: ChatRequest,
    model: str,
    text: str,
    outcome: Outcome,
    prompt_ids: list[int] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    body: dict[str, Any] = {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": outcome.finish_reason,
            }
        ],
        "usage": usage(outcome),
    }
    if request.return_token_ids and prompt_ids is not None:
        body["prompt_token_ids"] = prompt_ids
    return body


def chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a stream."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage(outcome: Outcome) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


def new_id() -> str:
    """A completion id as OpenAI writes them."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def _messages(raw: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError(f"{where}messages must be a non-empty list")
    if len(raw) > MAX_MESSAGES:
        raise RequestError(f"{where}messages: at most {MAX_MESSAGES} messages (got {len(raw)})")
    out = []
    for i, m in enumerate(raw):
        at = f"{where}messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{at} must be an object with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"{at}.role must be one of {', '.join(ROLES)} (got {role!r})")
        extra = sorted(set(m) - {"role", "content", "name"})
        if extra:
            raise RequestError(f"{at}.{extra[0]}: not supported by the local server")
        # developer is OpenAI's newer name for system; templates know system.
        out.append({"role": "system" if role == "developer" else role, "content": _text(m, at)})
    return out


def _text(message: dict[str, Any], at: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RequestError(
                    f"{at}.content[{j}]: only text parts are supported by the local server"
                )
            if not isinstance(part.get("text"), str):
                raise RequestError(f"{at}.content[{j}].text must be a string")
            parts.append(part["text"])
        # Parts are joined with newlines, as the trainer joins a turn's parts.
        return "\n".join(parts)
    raise RequestError(f"{at}.content must be a string or a list of text parts")


def _flag(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(f"{where}{key} must be a boolean")
    return value


def _top_p(raw: dict[str, Any], where: str) -> float:
    value = float(number(raw, "top_p", 1.0, lo=0, hi=1, where=where))
    if value <= 0:
        raise RequestError(f"{where}top_p must be in (0, 1] (got {value})")
    return value


def _stops(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"{where}stop must be a non-empty string or a list of them")
    if len(stops) > MAX_STOP_SEQUENCES or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise RequestError(
            f"{where}stop: at most {MAX_STOP_SEQUENCES} sequences of at most {MAX_STOP_CHARS} characters"
        )
    return tuple(stops)
