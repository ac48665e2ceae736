"""``tunestack demo``: tune the smoke model on the bundled vehicles data, then show that it
learned: one training question answered by the base model and by the tuned model side by
side, with the training answer and the word overlap.

The question is asked as a chat (system + user message, the model's chat template), because
that is what the model was tuned on. :func:`ask_tuned` is the one place the tuned endpoint is
asked: today through ``:predict`` with the template applied here; with chat completions it
becomes one ``chat.completions`` call that sends ``messages``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import aiplatform_v1beta1 as aip
from google.protobuf import json_format, struct_pb2
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from infra.local.predict import Instance, LoadedModel
from infra.vertex.target import Target, client

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


def chat_prompt(tokenizer_dir: Path, messages: list[dict[str, str]]) -> str:
    """The messages rendered with the model's chat template, ready for the assistant's turn.

    The template's leading BOS is dropped: the server's tokenizer adds it, as in training.
    """
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return text.removeprefix(tok.bos_token) if tok.bos_token else text


def ask_tuned(target: Target, endpoint: str, prompt: str) -> str:
    """The tuned endpoint's greedy answer to ``prompt`` (through ``:predict``)."""
    instance = json_format.ParseDict(
        {"prompt": prompt, "max_tokens": ANSWER_TOKENS, "temperature": 0, "raw_response": True},
        struct_pb2.Value(),
    )
    svc = client(aip.PredictionServiceClient, target)
    response = svc.predict(endpoint=endpoint, instances=[instance])
    return str(response.predictions[0]) if response.predictions else ""


def ask_base(model_dir: Path, prompt: str) -> str:
    """The base model's greedy answer, generated in this process by the server's own code."""
    hf_logging.disable_progress_bar()  # the demo's own lines only
    return LoadedModel(model_dir).generate(
        Instance(prompt, ANSWER_TOKENS, 0.0, 1.0, 0, raw_response=True)
    )


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
