"""Fixtures for the program tests: spec files in a temp folder, and Pulumi's mocks set up the
official way (fresh event loop, ``preview=False``, ``reset_options`` in teardown)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.emit.offline import RecordingMonitor, mocked

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You answer questions about Acme products."},
            {"role": "user", "content": f"What does product {i} do?"},
            {"role": "assistant", "content": f"Product {i} makes widgets faster."},
        ]
    }
    for i in range(5)
]

#: A spec touching every kind of bucket use: datasets (local upload), a separate output bucket,
#: an existing bucket with starting weights, and an endpoint serving gs:// weights elsewhere.
BASE: dict[str, Any] = {
    "project": {"id": "acme-test-proj", "region": "us-central1", "labels": {"team": "ml"}},
    "buckets": [
        {"name": "acme-test-data", "protect": True},
        {"name": "acme-test-out"},
        {"name": "acme-test-weights", "create": False},
        {"name": "acme-test-served", "create": False},
    ],
    "datasets": [
        {
            "name": "chat",
            "train": "data/train.jsonl",
            "validation": "data/val.jsonl",
            "bucket": "acme-test-data",
        }
    ],
    "tuning_jobs": [
        {
            "name": "first",
            "base_model": "meta/llama3_1@llama-3.1-8b-instruct",
            "tuning_mode": "PEFT_ADAPTER",
            "epochs": 2,
            "adapter_size": 8,
            "dataset": "chat",
            "output_uri": "gs://acme-test-out/runs/first",
        },
        {
            "name": "second",
            "base_model": "meta/llama3_1@llama-3.1-8b-instruct",
            "custom_base_model": "gs://acme-test-weights/llama-custom",
            "tuning_mode": "FULL",
            "dataset": "chat",
            "output_uri": "gs://acme-test-out/runs/second",
        },
    ],
    "endpoints": [
        {"name": "serve-first", "model": "first", "machine_type": "g2-standard-12"},
        {
            "name": "serve-custom",
            "model": "gs://acme-test-served/llama",
            "base_model": "meta/llama3_1@llama-3.1-8b-instruct",
            "machine_type": "g2-standard-12",
        },
    ],
}


@pytest.fixture
def base_spec() -> dict[str, Any]:
    """A deep copy of :data:`BASE` to modify."""
    return copy.deepcopy(BASE)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Writes a spec dict (and its chat datasets) under tmp_path; returns the spec path."""

    def write(spec: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> Path:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        for name in ("train.jsonl", "val.jsonl"):
            (data / name).write_text("".join(json.dumps(r) + "\n" for r in rows or CHAT))
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture
def mocks() -> Iterator[RecordingMonitor]:
    """Pulumi mocks for one test; yields the recording monitor."""
    with mocked("test") as monitor:
        yield monitor
