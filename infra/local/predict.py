"""Online prediction for deployed checkpoints: transformers generation, bounded concurrency.

Instances follow Model Garden's vLLM containers: ``prompt``, ``max_tokens``, ``temperature``,
``top_p``, ``top_k``, ``raw_response`` (numbers may arrive as floats; NaN and Infinity are
refused). Without ``raw_response`` the prediction is ``"Prompt:\\n{prompt}\\nOutput:\\n{output}"``
as those containers return it. An instance with ``"@requestFormat": "chatCompletions"``
holds a chat completions request (:mod:`infra.local.chat`) and predicts a ``chat.completion``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from trainer.encoding import Encoder, render
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from infra.local.chat import ChatRequest, parse_chat
from infra.local.generate import (
    Outcome,
    RequestError,
    Sampling,
    budget,
    check_prompt_chars,
    context_length,
    decode_loop,
    number,
    stop_token_ids,
)

#: Default ``max_tokens`` of a prompt instance (Model Garden's vLLM default).
DEFAULT_MAX_TOKENS = 16
#: The request format of a predict instance that holds a chat completions request.
CHAT_FORMAT = "chatCompletions"


class InstanceError(RequestError):
    """An instance the server refuses (400 INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Instance:
    """One parsed prompt instance."""

    prompt: str
    sampling: Sampling
    raw_response: bool


def parse_instance(raw: Any) -> Instance | ChatRequest:
    """Validates one instance of a predict request: a prompt, or a chat completions request
    (``"@requestFormat": "chatCompletions"`` with ``messages``).

    Raises:
        RequestError: on a missing prompt, wrong types, non-finite numbers or bad ranges.
    """
    if not isinstance(raw, dict):
        raise InstanceError("each instance must be an object with a prompt")
    fmt = raw.get("@requestFormat")
    if fmt is not None:
        if fmt != CHAT_FORMAT:
            raise InstanceError(f"instance.@requestFormat must be {CHAT_FORMAT!r} (got {fmt!r})")
        req = parse_chat(raw, where="instance.")
        if req.stream:
            raise InstanceError(
                "instance.stream: use :streamRawPredict or chat/completions to stream"
            )
        return req
    prompt = raw.get("prompt")
    if not isinstance(prompt, str):
        raise InstanceError("instance.prompt must be a string")
    unknown = set(raw) - {"prompt", "max_tokens", "temperature", "top_p", "top_k", "raw_response"}
    if unknown:
        raise InstanceError(f"unknown instance fields: {', '.join(sorted(unknown))}")
    w = "instance."
    sampling = Sampling(
        max_tokens=number(raw, "max_tokens", DEFAULT_MAX_TOKENS, integer=True, lo=1, where=w),
        temperature=number(raw, "temperature", 1.0, lo=0, where=w),
        top_p=number(raw, "top_p", 1.0, lo=0, hi=1, where=w),
        top_k=max(0, number(raw, "top_k", 0, integer=True, lo=-1, where=w)),
    )
    if sampling.top_p <= 0:
        raise InstanceError("instance.top_p must be in (0, 1]")
    return Instance(prompt, sampling, bool(raw.get("raw_response", False)))


@dataclass
class Prepared:
    """A request checked against the model: prompt ids and how many tokens to generate."""

    prompt_ids: list[int]
    new_tokens: int
    stop_ids: set[int]


class LoadedModel:
    """A checkpoint loaded once and shared by all requests to its endpoint.

    Chat prompts are rendered exactly as the trainer renders them (the checkpoint's chat
    template, or the trainer's fallback template, generation prompt added, a doubled BOS
    collapsed), so a tuned model sees at serving time the shape it was trained on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32
        )
        self.model.eval()
        self.context = context_length(self.model)
        # The trainer's encoder: fallback template when the tokenizer has none, end of turn.
        self._eot = Encoder(self.tokenizer, self.context).eot_id
        self._lock = threading.Lock()

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids of a conversation with the generation prompt, as the trainer builds
        the prefix of an assistant turn.

        Raises:
            RequestError: when the rendered prompt cannot fit the context.
        """
        for m in messages:
            check_prompt_chars(m["content"], self.context)
        with self._lock:  # tokenizers are not safe to share across threads
            text = render(self.tokenizer, messages, generation_prompt=True)
            check_prompt_chars(text, self.context)
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token_id
        while bos is not None and len(ids) >= 2 and ids[0] == bos == ids[1]:
            ids = ids[1:]
        return ids

    def text_prompt_ids(self, prompt: str) -> list[int]:
        """The token ids of a raw prompt (special tokens added, as vLLM does)."""
        check_prompt_chars(prompt, self.context)
        with self._lock:
            return list(self.tokenizer(prompt)["input_ids"])

    def prepare(self, prompt_ids: list[int], sampling: Sampling, cap: int | None) -> Prepared:
        """Checks the prompt and ``max_tokens`` against the context (before any generation).

        Raises:
            RequestError: with both numbers when they do not fit.
        """
        new = budget(len(prompt_ids), sampling.max_tokens, self.context, cap)
        stops = (
            set() if sampling.ignore_eos else stop_token_ids(self.model, self.tokenizer, self._eot)
        )
        return Prepared(prompt_ids, new, stops)

    def stream(
        self,
        prepared: Prepared,
        sampling: Sampling,
        outcome: Outcome,
        cancel: threading.Event,
        timeout_s: float,
    ) -> Iterator[str]:
        """The generated text, piece by piece (see :func:`infra.local.generate.decode_loop`)."""
        return decode_loop(
            self.model,
            self.tokenizer,
            prepared.prompt_ids,
            sampling,
            prepared.new_tokens,
            prepared.stop_ids,
            outcome,
            cancel,
            timeout_s,
        )


class ModelCache:
    """Loaded models by directory: each is loaded once (concurrent first calls wait for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[Path, LoadedModel] = {}
        self._loading: dict[Path, threading.Lock] = {}

    def get(self, path: Path) -> LoadedModel:
        """The loaded model of ``path``, loading it on first use."""
        with self._lock:
            if path in self._models:
                return self._models[path]
            gate = self._loading.setdefault(path, threading.Lock())
        with gate:
            with self._lock:
                if path in self._models:
                    return self._models[path]
            loaded = LoadedModel(path)
            with self._lock:
                self._models[path] = loaded
            return loaded

    def drop(self, path: Path) -> None:
        """Forgets a model (its endpoint was undeployed)."""
        with self._lock:
            self._models.pop(path, None)


class Limiter:
    """At most ``cap`` predictions at once; beyond that callers are refused, never queued."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self.active = 0

    def try_acquire(self) -> bool:
        """Takes a slot if one is free; False (answer 429) otherwise."""
        with self._lock:
            if self.active >= self.cap:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Frees a slot."""
        with self._lock:
            self.active -= 1
