"""Token-by-token generation with the limits of real serving: context, stop sequences, EOS,
a wall clock and cancellation.

One decode loop serves ``:predict``, chat completions and their streaming forms, so every
door has the same bounds: the prompt plus ``max_tokens`` must fit the model's maximum
sequence length (checked before any generation), each generation stops at an end-of-turn
or EOS token, a stop sequence, ``max_tokens``, its wall-clock deadline, or when its caller
sets the cancel event (the client disconnected).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: A prompt longer than this many characters per context token cannot fit; it is refused
#: before tokenisation (tokenising 1 MB costs a second; natural text averages ~4 per token).
MAX_CHARS_PER_TOKEN = 32


class RequestError(ValueError):
    """A request the server refuses (400 INVALID_ARGUMENT)."""


class Cancelled(Exception):
    """The caller went away; the generation stopped and freed its slot."""


class DeadlineExceeded(Exception):
    """The generation ran past its wall-clock limit."""


@dataclass(frozen=True)
class Sampling:
    """How to generate.

    Attributes:
        max_tokens: Tokens to generate at most (None: up to the end of the context).
        temperature: 0 is greedy.
        top_p: Nucleus mass in (0, 1].
        top_k: Candidates kept (0 or -1: all; 1: greedy).
        stop: Stop sequences (not part of the output).
        seed: Seed of the sampler (None: a fresh one).
        presence_penalty: OpenAI's presence penalty in [-2, 2].
        frequency_penalty: OpenAI's frequency penalty in [-2, 2].
        ignore_eos: Keep generating past EOS/end of turn (vLLM's ``ignore_eos``).
    """

    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False


@dataclass
class Outcome:
    """What a finished generation reports (filled in as it runs)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""


def number(
    raw: dict[str, Any],
    key: str,
    default: Any,
    *,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
    where: str = "",
) -> Any:
    """A finite number field of a request, range-checked.

    Raises:
        RequestError: on a non-number, NaN/Infinity, a fractional integer or out of range.
    """
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    name = f"{where}{key}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{name} must be a number (got {type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number (got {value})")
    if integer:
        if value != int(value):
            raise RequestError(f"{name} must be a whole number (got {value})")
        value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else ""
        bounds = bounds or (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
        raise RequestError(f"{name} must be {bounds} (got {value})")
    return value if integer else float(value)


def check_prompt_chars(text: str, context: int) -> None:
    """Refuses a prompt that cannot fit ``context`` tokens without tokenising it.

    Raises:
        RequestError: when it has more than ``context * MAX_CHARS_PER_TOKEN`` characters.
    """
    if len(text) > context * MAX_CHARS_PER_TOKEN:
        raise RequestError(
            f"the prompt has {len(text)} characters, far more than the model's maximum "
            f"sequence length of {context} tokens can hold"
        )


def budget(prompt_tokens: int, max_tokens: int | None, context: int, cap: int | None) -> int:
    """Tokens to generate: ``max_tokens`` (default: the rest of the context), checked.

    Args:
        prompt_tokens: Length of the prompt.
        max_tokens: What the request asked for (None: up to the end of the context).
        context: The model's maximum sequence length.
        cap: The server-wide cap (``--max-tokens``), None when off.

    Raises:
        RequestError: when the prompt or prompt + max_tokens exceed the context, or max_tokens
            exceeds the cap.
    """
    if prompt_tokens >= context:
        raise RequestError(
            f"the prompt has {prompt_tokens} tokens; the model's maximum sequence length is "
            f"{context} tokens, leaving no room to generate"
        )
    room = context - prompt_tokens
    if cap is not None and max_tokens is not None and max_tokens > cap:
        raise RequestError(f"max_tokens {max_tokens} exceeds this server's cap of {cap}")
    if max_tokens is not None and max_tokens > room:
        raise RequestError(
            f"max_tokens {max_tokens} is too large: the model's maximum sequence length is "
            f"{context} tokens and the prompt has {prompt_tokens}, so at most {room} can be "
            "generated"
        )
    wanted = room if max_tokens is None else max_tokens
    return min(wanted, cap) if cap is not None else wanted


def decode_loop(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    sampling: Sampling,
    new_tokens: int,
    stop_ids: set[int],
    outcome: Outcome,
    cancel: threading.Event,
    timeout_s: float,
) -> Iterator[str]:
    """Generates up to ``new_tokens`` tokens and yields the text as it becomes final.

    Text that might be the start of a stop sequence, or an incomplete UTF-8 character, is
    held back until it is decided. ``outcome`` gets the counts and the finish reason
    (``stop``: EOS/end of turn or a stop sequence; ``length``: ``new_tokens`` reached).

    Raises:
        Cancelled: when ``cancel`` is set.
        DeadlineExceeded: past ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    gen = torch.Generator().manual_seed(
        sampling.seed if sampling.seed is not None else int(torch.seed() % 2**63)
    )
    outcome.prompt_tokens = len(prompt_ids)
    out: list[int] = []
    counts: dict[int, int] = {}
    emitted = 0
    text = ""
    past: Any = None
    step_ids = torch.tensor([prompt_ids], dtype=torch.long)
    with torch.inference_mode():
        for _ in range(new_tokens):
            if cancel.is_set():
                raise Cancelled
            if time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"generation exceeded its wall-clock limit of {timeout_s:g} s"
                )
            # transformers 5 names the KV cache ``cache``; only the last position's logits.
            result = model(input_ids=step_ids, cache=past, use_cache=True, logits_to_keep=1)
            past = result.cache
            next_id = _pick(result.logits[0, -1].float(), sampling, counts, gen)
            if next_id in stop_ids:
                outcome.finish_reason = "stop"
                break
            out.append(next_id)
            counts[next_id] = counts.get(next_id, 0) + 1
            outcome.completion_tokens = len(out)
            step_ids = torch.tensor([[next_id]], dtype=torch.long)
            text = str(tokenizer.decode(out, skip_special_tokens=True))
            cut = _first_stop(text, sampling.stop)
            if cut is not None:
                text = text[:cut]
                outcome.finish_reason = "stop"
                break
            safe = len(text) - _held_back(text, sampling.stop)
            if safe > emitted:
                # Bytes that no character completes (a byte-level model emits such runs) decode
                # as U+FFFD: what is sent is the valid text only.
                yield text[emitted:safe].replace("\ufffd", "")
                emitted = safe
        else:
            outcome.finish_reason = "length"
    if len(text) > emitted:
        yield text[emitted:].replace("\ufffd", "")


def stop_token_ids(model: Any, tokenizer: Any, extra: int | None = None) -> set[int]:
    """EOS of the tokenizer and generation config, plus ``extra`` (the template's end of turn)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    if extra is not None:
        ids.add(extra)
    return ids


def context_length(model: Any) -> int:
    """The model's maximum sequence length (its position embeddings)."""
    config = model.config
    text = getattr(config, "text_config", None) or config
    value = getattr(text, "max_position_embeddings", None) or getattr(
        config, "max_position_embeddings", None
    )
    return int(value or 2048)


def _pick(logits: torch.Tensor, s: Sampling, counts: dict[int, int], gen: torch.Generator) -> int:
    if counts and (s.presence_penalty or s.frequency_penalty):
        idx = torch.tensor(list(counts), dtype=torch.long)
        seen = torch.tensor(list(counts.values()), dtype=logits.dtype)
        logits[idx] -= s.frequency_penalty * seen + s.presence_penalty
    # temperature 0 or top_k 1 mean greedy, as in vLLM.
    if s.temperature == 0 or s.top_k == 1:
        return int(torch.argmax(logits))
    logits = logits / s.temperature
    if s.top_k > 0 and s.top_k < logits.numel():
        kth = torch.topk(logits, s.top_k).values[-1]
        logits[logits < kth] = -math.inf
    if s.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= s.top_p
        logits[order[drop]] = -math.inf
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` not final yet (a stop's prefix, a partial char)."""
    if text.endswith("\ufffd"):
        return len(text) - len(text.rstrip("\ufffd"))
    held = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held
