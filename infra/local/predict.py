"""Online prediction for deployed checkpoints: transformers generation, bounded concurrency.

Instances follow Model Garden's vLLM containers: ``prompt``, ``max_tokens``, ``temperature``,
``top_p``, ``top_k``, ``raw_response`` (numbers may arrive as floats). Without
``raw_response`` the prediction is ``"Prompt:\\n{prompt}\\nOutput:\\n{output}"`` as those
containers return it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

#: Default cap on ``max_tokens`` per instance (a request asking for more gets 400).
MAX_TOKENS_CAP = 1024
DEFAULT_MAX_TOKENS = 16


class InstanceError(ValueError):
    """An instance the server refuses (400 INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Instance:
    """One parsed prediction instance."""

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    raw_response: bool


def parse_instance(raw: Any, max_tokens_cap: int = MAX_TOKENS_CAP) -> Instance:
    """Validates one instance of a predict request.

    Raises:
        InstanceError: on a missing prompt, wrong types or ``max_tokens`` over the cap.
    """
    if not isinstance(raw, dict):
        raise InstanceError("each instance must be an object with a prompt")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str):
        raise InstanceError("instance.prompt must be a string")
    unknown = set(raw) - {"prompt", "max_tokens", "temperature", "top_p", "top_k", "raw_response"}
    if unknown:
        raise InstanceError(f"unknown instance fields: {', '.join(sorted(unknown))}")
    max_tokens = _number(raw, "max_tokens", DEFAULT_MAX_TOKENS, integer=True)
    if not 1 <= max_tokens <= max_tokens_cap:
        raise InstanceError(f"max_tokens must be between 1 and {max_tokens_cap} (got {max_tokens})")
    temperature = _number(raw, "temperature", 1.0)
    top_p = _number(raw, "top_p", 1.0)
    top_k = _number(raw, "top_k", 0, integer=True)
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise InstanceError("need temperature >= 0, 0 < top_p <= 1, top_k >= 0")
    return Instance(
        prompt,
        int(max_tokens),
        float(temperature),
        float(top_p),
        int(top_k),
        bool(raw.get("raw_response", False)),
    )


def _number(raw: dict[str, Any], key: str, default: float, integer: bool = False) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InstanceError(f"instance.{key} must be a number")
    if integer:
        if value != int(value):
            raise InstanceError(f"instance.{key} must be a whole number")
        return int(value)
    return float(value)


class LoadedModel:
    """A checkpoint loaded once and shared by all requests to its endpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(path)
        self.model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32
        )
        self.model.eval()

    def generate(self, inst: Instance) -> str:
        """Generates a completion of ``inst.prompt`` and returns it in the container's shape."""
        enc = self.tokenizer(inst.prompt, return_tensors="pt")
        # temperature 0 or top_k 1 mean greedy, as in vLLM.
        sample = inst.temperature > 0 and inst.top_k != 1
        kwargs: dict[str, Any] = {"max_new_tokens": inst.max_tokens, "do_sample": sample}
        if sample:
            kwargs.update(temperature=inst.temperature, top_p=inst.top_p, top_k=inst.top_k or None)
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        with torch.inference_mode():
            out = self.model.generate(**enc, pad_token_id=pad, **kwargs)  # type: ignore[operator]
        text = str(
            self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        )
        # Byte-level tokenizers decode byte runs that are not UTF-8 as U+FFFD: drop them, so
        # the text is what the bytes spell (a random model emits such runs all the time).
        text = text.replace("\ufffd", "")
        return text if inst.raw_response else f"Prompt:\n{inst.prompt}\nOutput:\n{text}"


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
