"""Shared fixtures: tiny checkpoints (built once per session) and synthetic Vertex datasets."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainer.config import TrainConfig, from_dict
from trainer.tiny import build_tiny_checkpoint

WORDS = [
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "black",
    "white",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny("llama")`` -> path of a tiny checkpoint of that family (built once)."""
    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str, vision: bool = False) -> Path:
        key = family + ("-vision" if vision else "")
        if key not in built:
            built[key] = build_tiny_checkpoint(family, root / key, vision=vision)
        return built[key]

    return get


def copy_conversations(n: int, seed: int = 0, length: int = 6) -> list[tuple[str, str]]:
    """(prompt, answer) pairs where the answer copies words from the prompt (learnable)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w = " ".join(rng.choice(WORDS) for _ in range(length))
        out.append((f"copy: {w}", w))
    return out


def chat_line(prompt: str, answer: str, system: str | None = None) -> dict[str, Any]:
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": msgs}


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture
def copy_data(tmp_path: Path) -> Callable[..., Path]:
    """``copy_data(n)`` -> a chat JSONL of n copy conversations."""

    def make(n: int = 8, seed: int = 0, name: str = "train.jsonl") -> Path:
        pairs = copy_conversations(n, seed)
        return write_jsonl(tmp_path / name, [chat_line(p, a) for p, a in pairs])

    return make


def config(**kw: Any) -> TrainConfig:
    """A quiet, fast configuration for tests (override anything)."""
    # One thread: the CI box is shared, and tiny matmuls only lose from more threads.
    base: dict[str, Any] = {"progress": False, "warmup_ratio": 0.0, "seed": 0, "num_threads": 1}
    base.update(kw)
    return from_dict({k: str(v) if isinstance(v, Path) else v for k, v in base.items()})


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Tiny models on a shared 2-core box: one torch thread is ~4x faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
