"""``tunestack demo``: tune the smoke model on the bundled vehicles data, then show that it
learned: one training question answered by the base model and by the tuned model side by
side, with the training answer and the word overlap.

The question is asked as a chat (system + user message, the model's chat template), because
that is what the model was tuned on: the tuned endpoint through its chat completions route
(:func:`ask_tuned`), the base model in this process with the server's own code.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from infra.local import home
from infra.local.generate import Outcome, Sampling
from infra.local.predict import LoadedModel
from infra.vertex.target import Target

#: Seconds one answer may take.
TIMEOUT_S = 120.0
#: Tokens an answer may take (the longest training answer is about 40 tokens).
ANSWER_TOKENS = 64
#: The demo's question, whose training answer it should reproduce.
QUESTION = "What is a car?"
#: Share of the training answer's words the tuned answer must contain.
MIN_OVERLAP = 0.60
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Example:
    """One training conversation: the messages before the answer, and the answer."""

    messages: list[dict[str, str]]
    answer: str


def find_example(train_jsonl: Path, question: str = QUESTION) -> Example:
    """The training example whose last user message is ``question``.

    Raises:
        ValueError: no such example in the file.
    """
    for line in train_jsonl.read_text().splitlines():
        messages = json.loads(line)["messages"] if line.strip() else []
        if len(messages) >= 2 and messages[-2]["content"] == question:
            return Example(messages[:-1], messages[-1]["content"])
    raise ValueError(f"{train_jsonl}: no training example asks {question!r}")


def ask_tuned(target: Target, endpoint: str, messages: list[dict[str, str]]) -> str:
    """The tuned endpoint's greedy answer to ``messages``, through its OpenAI-compatible chat
    completions route (the server applies the chat template the trainer trained with)."""
    body = {"messages": messages, "max_tokens": ANSWER_TOKENS, "temperature": 0}
    req = urllib.request.Request(
        f"{target.api_endpoint}/v1beta1/{endpoint}/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {home.read_token()}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        doc = json.loads(resp.read())
    return str(doc["choices"][0]["message"]["content"])


def ask_base(model_dir: Path, messages: list[dict[str, str]]) -> str:
    """The greedy answer of the model in ``model_dir`` to ``messages``, generated in this
    process by the server's own code (the same chat template and decode loop)."""
    hf_logging.disable_progress_bar()  # the demo's own lines only
    model = LoadedModel(model_dir)
    sampling = Sampling(max_tokens=ANSWER_TOKENS, temperature=0.0)
    prepared = model.prepare(model.chat_prompt_ids(messages), sampling, None)
    return "".join(model.stream(prepared, sampling, Outcome(), threading.Event(), TIMEOUT_S))


def word_overlap(answer: str, reference: str) -> float:
    """Share of the reference's words (with repeats) that the answer contains."""
    ref = _WORD.findall(reference.lower())
    pool = _WORD.findall(answer.lower())
    hits = 0
    for w in ref:
        if w in pool:
            pool.remove(w)
            hits += 1
    return hits / len(ref) if ref else 0.0


def side_by_side(question: str, reference: str, base: str, tuned: str) -> list[str]:
    """The lines ``demo`` prints: question, training answer, then both answers with overlap."""
    return [
        f"asked: {question!r}",
        f"  training answer : {reference}",
        f"  base model      : {_one_line(base)}   (word overlap {word_overlap(base, reference):.0%})",
        f"  tuned model     : {_one_line(tuned)}   (word overlap {word_overlap(tuned, reference):.0%})",
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(empty)"


def demo_inputs(spec_dir: Path, spec: Any) -> Path:
    """The training file of the demo spec's first dataset."""
    return spec_dir / spec.datasets[0].train
