"""Semantic spec rules: one bad input per code, the diagnostic's line asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.checks import validate
from infra.checks.spec import check_spec
from infra.diagnostics import Diagnostic
from infra.load import load_spec

BASE = """\
project:
  id: acme-ml-dev
  region: us-central1
buckets:
  - name: acme-ml-dev-tuning
  - name: acme-ml-dev-images
    create: false
datasets:
  - name: chat
    train: data/train.jsonl
    bucket: acme-ml-dev-tuning
tuning_jobs:
  - name: job-a
    base_model: meta/llama3_1@llama-3.1-8b-instruct
    tuning_mode: PEFT_ADAPTER
    epochs: 3
    adapter_size: 16
    dataset: chat
    output_uri: gs://acme-ml-dev-tuning/runs/job-a
endpoints:
  - name: ep
    model: job-a
    machine_type: g2-standard-12
    accelerator_count: 1
"""

TRAIN = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
)


def run(tmp_path: Path, text: str, **kw: object):  # noqa: ANN201 - a Report
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "train.jsonl").write_text(TRAIN)
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return validate(spec, **kw)  # type: ignore[arg-type]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_base_spec_is_valid(tmp_path: Path) -> None:
    r = run(tmp_path, BASE)
    assert r.ok, [d.format() for d in r.diagnostics]
    assert r.diagnostics == []
    (job,) = r.jobs
    assert (job.examples, job.epochs, job.checkpoints) == (1, 3, 3)
    assert job.training_tokens == job.tokens * 3 and job.tokens > 0


CASES = [
    # (code, old, new, line needle)
    ("invalid-project-id", "id: acme-ml-dev", "id: Acme_ML", "id: Acme_ML"),
    ("invalid-project-id", "id: acme-ml-dev", "id: acme-", "id: acme-"),
    ("unsupported-region", "region: us-central1", "region: us-east1", "region: us-east1"),
    ("invalid-bucket-name", "- name: acme-ml-dev-images", "- name: goog-images", "goog-images"),
    ("invalid-bucket-name", "- name: acme-ml-dev-images", "- name: 192.168.1.1", "192.168.1.1"),
    (
        "invalid-bucket-name",
        "- name: acme-ml-dev-images",
        "- name: my-google-bucket",
        "my-google-bucket",
    ),
    (
        "duplicate-name",
        "- name: acme-ml-dev-images",
        "- name: acme-ml-dev-tuning",
        "- name: acme-ml-dev-tuning\n    create",
    ),
    ("unknown-reference", "    dataset: chat", "    dataset: chats", "dataset: chats"),
    ("unknown-reference", "bucket: acme-ml-dev-tuning", "bucket: acme-ml-dev-tunning", "tunning"),
    ("unknown-reference", "model: job-a", "model: job-b", "model: job-b"),
    ("unknown-reference", "gs://acme-ml-dev-tuning/runs", "gs://other-bucket/runs", "other-bucket"),
    (
        "unsupported-model",
        "meta/llama3_1@llama-3.1-8b-instruct",
        "meta/llama3-1@llama-3.1-8b-instruct",
        "base_model",
    ),
    (
        "unsupported-tuning-mode",
        "meta/llama3_1@llama-3.1-8b-instruct",
        "qwen/qwen3@qwen3-4b",
        "tuning_mode",
    ),
    ("invalid-adapter-size", "adapter_size: 16", "adapter_size: 3", "adapter_size"),
    (
        "learning-rate-conflict",
        "epochs: 3",
        "epochs: 3\n    learning_rate: 0.0001\n    learning_rate_multiplier: 2",
        "learning_rate:",
    ),
    ("accelerator-mismatch", "accelerator_count: 1", "accelerator_count: 2", "accelerator_count"),
    (
        "accelerator-mismatch",
        "machine_type: g2-standard-12",
        "machine_type: a2-highgpu-1g",
        "machine_type",
    ),
    (
        "invalid-uri",
        "output_uri: gs://acme-ml-dev-tuning/runs/job-a",
        "output_uri: s3://acme/runs",
        "output_uri",
    ),
    ("invalid-uri", "train: data/train.jsonl", "train: https://example.com/train.jsonl", "train:"),
    ("file-not-found", "train: data/train.jsonl", "train: data/missing.jsonl", "train:"),
    ("missing-field", "    bucket: acme-ml-dev-tuning\n", "", "- name: chat"),
    (
        "public-member",
        "endpoints:",
        "iam:\n  - bucket: acme-ml-dev-images\n    member: allUsers\nendpoints:",
        "member: allUsers",
    ),
    (
        "invalid-checkpoint",
        "model: job-a",
        "model: job-a\n    checkpoint: last",
        "checkpoint: last",
    ),
    ("invalid-value", "region: us-central1", "region: us-central1\n  folder_id: abc", "folder_id"),
    (
        "invalid-value",
        "region: us-central1",
        "region: us-central1\n  create: true\n  billing_account: 0A1B2C-3D4E5F-6A7B8C\n  org_id: acme",
        "org_id",
    ),
    (
        "missing-field",
        "output_uri: gs://acme-ml-dev-tuning/runs/job-a",
        "output_uri: gs://acme-ml-dev-tuning/runs/job-a\n    engine: trainer_image",
        "engine:",
    ),
]


@pytest.mark.parametrize(("code", "old", "new", "needle"), CASES)
def test_rule(tmp_path: Path, code: str, old: str, new: str, needle: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    r = run(tmp_path, text)
    assert not r.ok
    want = (
        line_of(text, needle.split("\n")[0])
        if "\n" not in needle
        else text[: text.index(needle)].count("\n") + 1
    )
    hits = [d for d in r.diagnostics if d.code == code]
    assert hits, [d.format() for d in r.diagnostics]
    assert want in {d.line for d in hits}, [d.format() for d in r.diagnostics]
    assert all(d.file == str(tmp_path / "spec.yaml") for d in hits)


def test_did_you_mean_for_references_and_models(tmp_path: Path) -> None:
    text = BASE.replace("    dataset: chat", "    dataset: chta").replace(
        "region: us-central1", "region: us-centrl1"
    )
    r = run(tmp_path, text)
    msgs = {d.code: d.message for d in r.diagnostics}
    assert "did you mean 'chat'?" in msgs["unknown-reference"]
    assert "did you mean 'us-central1'?" in msgs["unsupported-region"]


def test_endpoint_too_small(tmp_path: Path) -> None:
    big = BASE.replace(
        "meta/llama3_1@llama-3.1-8b-instruct", "meta/llama3-3@llama-3.3-70b-instruct"
    )
    r = run(tmp_path, big)  # 141.2 GB of bf16 weights on one 24 GB L4
    (d,) = [d for d in r.diagnostics if d.code == "endpoint-too-small"]
    assert d.line == line_of(big, "machine_type") and d.severity == "error"
    assert "141.2 GB" in d.message and "24 GB" in d.message and "g2-standard-96" in d.message
    gemma = (
        BASE.replace("meta/llama3_1@llama-3.1-8b-instruct", "google/gemma3@gemma-3-12b-it")
        .replace("tuning_mode: PEFT_ADAPTER", "tuning_mode: FULL")
        .replace("    adapter_size: 16\n", "")
    )
    r = run(tmp_path, gemma)  # 24.4 GB on 24 GB
    assert [d.code for d in r.diagnostics] == ["endpoint-too-small"]
    two = gemma.replace("g2-standard-12", "g2-standard-24").replace(
        "accelerator_count: 1", "accelerator_count: 2"
    )
    assert run(tmp_path, two).ok  # 24.4 GB on 48 GB


def test_kv_cache_headroom_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No catalog model lands at 80-100% of a G2 machine's memory, so add one: 10.5B
    # parameters = 21 GB of bf16 weights on one 24 GB L4 leaves 12.5%.
    from infra import catalog

    odd = catalog.Model(
        "x/y@z", "Z 10B", "llama", ("FULL",), 8192, ("text",), 10.5e9, "LlamaForCausalLM"
    )
    monkeypatch.setitem(catalog.MODELS, odd.id, odd)
    text = BASE.replace(
        "  - name: ep\n    model: job-a\n",
        "  - name: ep\n    model: gs://acme-ml-dev-tuning/weights/final\n    base_model: x/y@z\n",
    )
    r = run(tmp_path, text)
    (d,) = r.diagnostics
    assert (d.code, d.severity, d.line) == (
        "kv-cache-headroom",
        "warning",
        line_of(text, "machine_type"),
    )
    assert "12%" in d.message or "13%" in d.message
    assert r.ok  # warnings do not block...
    strict = run(tmp_path, text, strict=True)
    assert not strict.ok and strict.diagnostics[0].severity == "error"  # ...unless --strict


def test_images_bucket_must_be_declared(tmp_path: Path) -> None:
    mm = (
        '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": '
        '"gs://acme-ml-dev-images/a.jpg"}}, {"type": "text", "text": "?"}]}, {"role": "assistant", "content": "a mug"}]}\n'
    )
    text = BASE.replace(
        "meta/llama3_1@llama-3.1-8b-instruct", "meta/llama4@llama-4-scout-17b-16e-instruct"
    ).replace(
        "endpoints:\n  - name: ep\n    model: job-a\n    machine_type: g2-standard-12\n    accelerator_count: 1\n",
        "",
    )
    (tmp_path / "data").mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    (tmp_path / "data" / "train.jsonl").write_text(mm)
    r = validate(spec)
    assert r.ok, [d.format() for d in r.diagnostics]
    assert r.files["data/train.jsonl"].image_buckets == ["acme-ml-dev-images"]
    undeclared = text.replace("  - name: acme-ml-dev-images\n    create: false\n", "")
    spec.write_text(undeclared)
    r = validate(spec)
    (d,) = [d for d in r.diagnostics if d.code == "unknown-reference"]
    assert "acme-ml-dev-images" in d.message and d.line == line_of(undeclared, "train:")


def test_all_problems_at_once(tmp_path: Path) -> None:
    text = (
        BASE.replace("region: us-central1", "region: mars-north1")
        .replace("adapter_size: 16", "adapter_size: 7")
        .replace("    dataset: chat", "    dataset: nope")
        .replace("accelerator_count: 1", "accelerator_count: 4")
    )
    r = run(tmp_path, text)
    codes = [d.code for d in r.diagnostics]
    for code in (
        "unsupported-region",
        "invalid-adapter-size",
        "unknown-reference",
        "accelerator-mismatch",
    ):
        assert code in codes
    assert [d.line for d in r.diagnostics] == sorted(d.line for d in r.diagnostics)


def test_check_datasets_false_skips_files(tmp_path: Path) -> None:
    text = BASE.replace("train: data/train.jsonl", "train: data/missing.jsonl")
    assert run(tmp_path, text, check_datasets=False).ok
    assert not run(tmp_path, text).ok


def test_gs_dataset_is_skipped_without_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    text = BASE.replace(
        "train: data/train.jsonl", "train: gs://acme-ml-dev-tuning/data/train.jsonl"
    )
    r = run(tmp_path, text)
    assert r.ok, [d.format() for d in r.diagnostics]
    assert not r.files["gs://acme-ml-dev-tuning/data/train.jsonl"].checked
    bad = BASE.replace("train: data/train.jsonl", "train: gs://acme-ml-dev-tuning/")
    r = run(tmp_path, bad)
    assert [d.code for d in r.diagnostics] == ["invalid-uri"]


def _project_diagnostics(tmp_path: Path, project: dict[str, Any]) -> list[Diagnostic]:
    spec = yaml.safe_load(BASE)
    spec["project"].update(project)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    loaded = load_spec(path)
    assert loaded.spec is not None
    return check_spec(loaded.spec, loaded.positions, "spec.yaml")


def test_bootstrap_settings_need_create(tmp_path: Path) -> None:
    found = _project_diagnostics(
        tmp_path, {"billing_account": "0A1B2C-3D4E5F-6A7B8C", "org_id": "1234"}
    )
    assert [(d.code, d.field) for d in found] == [
        ("invalid-value", "project.billing_account"),
        ("invalid-value", "project.org_id"),
    ]
    text = (tmp_path / "spec.yaml").read_text().splitlines()
    assert all(text[d.line - 1].strip().startswith(d.field.split(".")[-1]) for d in found)
    assert found[0].format().startswith(f"spec.yaml:{found[0].line}:")


def test_bootstrap_ids_are_numeric(tmp_path: Path) -> None:
    found = _project_diagnostics(
        tmp_path,
        {"create": True, "billing_account": "0A1B2C-3D4E5F-6A7B8C", "folder_id": "engineering"},
    )
    assert [(d.code, d.field) for d in found] == [("invalid-value", "project.folder_id")]
    ok = _project_diagnostics(
        tmp_path,
        {"create": True, "billing_account": "0A1B2C-3D4E5F-6A7B8C", "folder_id": "folders/42"},
    )
    assert ok == []
