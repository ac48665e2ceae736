"""``tunestack models``: the 14 seed models with the seed page's modes, lengths and modalities;
the README table and the schema's base_model enum are generated from the same catalog."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra import catalog
from infra.cli import main
from infra.cli.models import markdown_table, model_rows
from infra.cli.validate import schema_text

ROOT = Path(__file__).resolve().parents[2]
F, P = "FULL", "PEFT_ADAPTER"
#: The seed page ("Tuning open models"), copied by hand: id -> (modes, max length, modalities).
SEED = {
    "google/gemma3@gemma-3-1b-it": ([F], 8192, ["text"]),
    "google/gemma3@gemma-3-4b-it": ([F], 8192, ["text"]),
    "google/gemma3@gemma-3-12b-it": ([F], 8192, ["text"]),
    "google/gemma3@gemma-3-27b-it": ([P, F], 8192, ["text"]),
    "meta/llama3_1@llama-3.1-8b": ([P, F], 8192, ["text"]),
    "meta/llama3_1@llama-3.1-8b-instruct": ([P, F], 8192, ["text"]),
    "meta/llama3-2@llama-3.2-1b-instruct": ([F], 8192, ["text"]),
    "meta/llama3-2@llama-3.2-3b-instruct": ([F], 8192, ["text"]),
    "meta/llama3-3@llama-3.3-70b-instruct": ([P, F], 8192, ["text"]),
    "meta/llama4@llama-4-scout-17b-16e-instruct": ([P], 2048, ["text", "image"]),
    "qwen/qwen3@qwen3-4b": ([F], 8192, ["text"]),
    "qwen/qwen3@qwen3-8b": ([F], 8192, ["text"]),
    "qwen/qwen3@qwen3-14b": ([F], 8192, ["text"]),
    "qwen/qwen3@qwen3-32b": ([P, F], 8192, ["text"]),
}


def test_models_json_lists_the_14_seed_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert len(rows) == 14
    got = {r["id"]: (r["tuning_modes"], r["max_seq_length"], r["modalities"]) for r in rows}
    assert got == SEED
    by_id = {r["id"]: r for r in rows}
    assert by_id["meta/llama3_1@llama-3.1-8b-instruct"]["smallest_machine"] == "g2-standard-4"
    assert by_id["qwen/qwen3@qwen3-14b"]["accelerators"] == "2 x NVIDIA_L4"
    assert by_id["meta/llama3-3@llama-3.3-70b-instruct"]["smallest_machine"] == "g2-standard-96"
    # 218 GB of bf16 weights: more than the largest G2 machine's 8 x 24 GB.
    assert by_id["meta/llama4@llama-4-scout-17b-16e-instruct"]["smallest_machine"] is None
    assert all(r["parameters"] > 0 for r in rows)


def test_smallest_machine_really_is_the_smallest_that_fits() -> None:
    for m in catalog.MODELS.values():
        best = catalog.smallest_machine(m)
        fitting = [
            x for x in catalog.MACHINES.values() if catalog.fits_with_headroom(x, m.bf16_weights_gb)
        ]
        if best is None:
            assert not fitting
            continue
        assert best in fitting
        assert all(catalog.machine_memory_gb(best) <= catalog.machine_memory_gb(x) for x in fitting)


def test_models_text_has_a_line_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MODEL ID") and len(lines) == 15


def test_readme_models_table_is_current() -> None:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- models:begin -->\n(.*?)<!-- models:end -->", text, re.S)
    assert found, "README.md has no models table markers"
    assert found.group(1) == markdown_table(model_rows()), (
        "README models table is stale: paste `tunestack models --format markdown`"
    )


def test_schema_enum_of_base_model_is_the_catalog() -> None:
    schema = json.loads(schema_text())
    prop = schema["$defs"]["TuningJob"]["properties"]["base_model"]
    assert prop["enum"] == list(SEED) and prop["type"] == "string"
    shipped = json.loads((ROOT / "specs" / "schema.json").read_text())
    assert shipped["$defs"]["TuningJob"]["properties"]["base_model"]["enum"] == list(SEED)
