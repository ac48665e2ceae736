"""``tunestack plan``: the JSON contract, text and Markdown views, diffs, invalid specs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "golden" / "dev"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    """A private copy of the dev golden case (spec + data) to edit."""
    shutil.copytree(CASE, tmp_path / "dev", ignore=shutil.ignore_patterns("plan.json"))
    return tmp_path / "dev" / "spec.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_contract(capsys, spec: Path) -> None:
    code, out, _ = run(capsys, "plan", str(spec), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == ["resources", "jobs", "endpoints", "cost"]
    for r in doc["resources"]:
        assert list(r) == ["type", "name", "parent", "inputs", "depends_on", "protect"]
        assert "__provider" not in r["inputs"]
        assert r["depends_on"] == sorted(r["depends_on"])
    assert [r["name"] for r in doc["resources"]] == sorted(r["name"] for r in doc["resources"])
    bucket = next(r for r in doc["resources"] if r["type"] == "gcp:storage/bucket:Bucket")
    assert bucket["inputs"]["uniformBucketLevelAccess"] is True and bucket["protect"] is True
    jobs = {j["name"]: j for j in doc["jobs"]}
    assert list(jobs["support-llama"]) == [
        "name",
        "examples",
        "tokens",
        "tokens_exact",
        "epochs",
        "training_tokens",
        "checkpoints",
        "after",
        "run_uri",
        "final_checkpoint_uri",
    ]
    # The exact URIs: this job version's own prefix and its final checkpoint.
    llama = jobs["support-llama"]
    assert (
        llama["final_checkpoint_uri"] == f"{llama['run_uri']}/postprocess/node-0/checkpoints/final"
    )
    assert jobs["support-gemma"]["after"] == ["support-llama"]
    assert jobs["support-llama"]["training_tokens"] == jobs["support-llama"]["tokens"] * 3
    assert doc["endpoints"] == [
        {
            "name": "support",
            "machine_type": "g2-standard-12",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1,
            "weights_gb": 16.06,
            "fits": True,
            "job": "support-llama",
            "checkpoint": "final",
            "uri": llama["final_checkpoint_uri"],
            "serves": f"job support-llama, final: {llama['final_checkpoint_uri']}",
            "min_replicas": 1,
            "max_replicas": 1,
            "canary_percent": None,
            "model_uri": llama["final_checkpoint_uri"],
        }
    ]
    # Deterministic output.
    assert run(capsys, "plan", str(spec), "--format", "json")[1] == out


def test_text_and_markdown(capsys, spec: Path) -> None:
    code, text, _ = run(capsys, "plan", str(spec))
    assert code == 0
    assert "bucket-acme-ml-dev-tuning: gcp:storage/bucket:Bucket [protected]" in text
    assert "support-gemma: " in text and "after support-llama" in text
    code, md, _ = run(capsys, "plan", str(spec), "--format", "markdown")
    assert code == 0
    assert "| Resource | Type | Component | Depends on | Protected |" in md
    assert "```mermaid" in md and "job_support_llama_done --> endpoint_support" in md
    assert "Total training tokens" in md


def test_diff_against_old_spec_and_saved_plan(capsys, spec: Path, tmp_path: Path) -> None:
    code, saved, _ = run(capsys, "plan", str(spec), "--format", "json")
    old_plan = tmp_path / "old.json"
    old_plan.write_text(saved)
    old_spec = tmp_path / "old"
    shutil.copytree(spec.parent, old_spec)
    data = yaml.safe_load(spec.read_text())
    data["tuning_jobs"][0]["epochs"] = 4
    data["endpoints"] = []
    spec.write_text(yaml.safe_dump(data, sort_keys=False))

    code, out, _ = run(
        capsys, "plan", str(spec), "--diff-against", str(old_plan), "--format", "json"
    )
    assert code == 0
    diff = json.loads(out)
    actions = {c["name"]: (c["action"], c["fields"]) for c in diff["changes"]}
    assert actions == {
        "job-support-llama": ("replace", ["inputs.epochs"]),
        "job-support-llama-done": ("replace", ["inputs.job_name", "inputs.output_uri"]),
        "endpoint-support": ("delete", []),
    }
    old_job = next(j for j in json.loads(saved)["jobs"] if j["name"] == "support-llama")
    delta = old_job["tokens"]  # one more epoch
    assert diff["training_tokens_delta"] == delta == diff["training_tokens"]["delta"]
    assert diff["billed_jobs"] == ["job-support-llama"]
    assert diff["billed_training_tokens"] == old_job["tokens"] * 4
    assert diff["jobs"] == [
        {
            "name": "support-llama",
            "old": old_job["training_tokens"],
            "new": old_job["training_tokens"] + delta,
            "delta": delta,
        }
    ]

    code, md, _ = run(
        capsys,
        "plan",
        str(spec),
        "--diff-against",
        str(old_spec / "spec.yaml"),
        "--format",
        "markdown",
    )
    assert code == 0
    assert "**0** to create, **0** to update in place, **2** to replace, **1** to delete." in md
    assert "| -/+ | ⚠️ **replace** | `job-support-llama` |" in md and "`inputs.epochs`" in md
    assert "| - | **delete** | `endpoint-support` |" in md
    assert "NEW BILLED job" in md and "**Billed:** 1 tuning job(s)" in md
    assert f"(**+{delta:,}**)" in md
    # Unchanged resources are not listed.
    assert "bucket-acme-ml-dev-tuning" not in md


def test_invalid_spec_fails_with_validate_diagnostics(capsys, spec: Path) -> None:
    data = yaml.safe_load(spec.read_text())
    data["tuning_jobs"][0]["adapter_size"] = 3
    data["project"]["billing_account"] = "0A1B2C-3D4E5F-6A7B8C"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out, err = run(capsys, "plan", str(spec), "--format", "json")
    assert code == 1 and out == ""
    assert "Traceback" not in err
    assert f"{spec}:" in err and "error[invalid-adapter-size]: tuning_jobs[0].adapter_size" in err
    assert (
        "error[invalid-value]: project.billing_account: billing_account only applies with create: true"
        in err
    )
    _, validate_out, _ = run(capsys, "validate", str(spec))
    adapter = next(line for line in validate_out.splitlines() if "invalid-adapter-size" in line)
    assert adapter in err


def test_bad_diff_target(capsys, spec: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run(capsys, "plan", str(spec), "--diff-against", str(bad))
    assert code == 1 and "error[invalid-value]" in err and "Traceback" not in err


def test_diff_against_itself_is_empty(capsys, spec: Path) -> None:
    code, md, _ = run(
        capsys, "plan", str(spec), "--diff-against", str(spec), "--format", "markdown"
    )
    assert code == 0
    assert "**0** to create, **0** to update in place, **0** to replace, **0** to delete." in md
    assert "No resource changes." in md and "(**+0**)" in md and "Billed" not in md
