"""``tunestack plan NEW --diff-against OLD`` on day-2 edits of the dev spec.

Each test edits a copy of ``tests/golden/dev`` the way a PR would and asserts what the plan
says ``pulumi up`` will do: the action of every changed resource, the fields causing it, the
effects (billed jobs, endpoints swapping models) and the token figures.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli import main

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "golden" / "dev"

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def specs(tmp_path: Path) -> tuple[Path, Path]:
    """(old, new): two private copies of the dev golden case."""
    for name in ("old", "new"):
        shutil.copytree(CASE, tmp_path / name, ignore=shutil.ignore_patterns("plan.json"))
    return tmp_path / "old" / "spec.yaml", tmp_path / "new" / "spec.yaml"


def edit(path: Path, change: Edit) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def diff(capsys: pytest.CaptureFixture[str], old: Path, new: Path, fmt: str = "json") -> Any:
    code = main(["plan", str(new), "--diff-against", str(old), "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out) if fmt == "json" else out


def by_name(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in d["changes"]}


def endpoint(i: int, **values: Any) -> Edit:
    return lambda data: data["endpoints"][i].update(values)


def test_json_contract(capsys, specs) -> None:
    old, new = specs
    edit(new, lambda d: d["tuning_jobs"][0].update(epochs=4))
    d = diff(capsys, old, new)
    assert list(d)[:2] == ["changes", "training_tokens_delta"]
    assert isinstance(d["training_tokens_delta"], int)
    for c in d["changes"]:
        assert list(c) == ["name", "type", "action", "fields", "effects"]
        assert c["action"] in ("create", "update", "replace", "delete")
        assert all(isinstance(x, str) for x in c["fields"] + c["effects"])


def test_epochs_change_is_a_new_billed_job_and_the_endpoint_swaps_weights(capsys, specs) -> None:
    old, new = specs
    edit(new, lambda d: d["tuning_jobs"][0].update(epochs=4))
    d = diff(capsys, old, new)
    got = by_name(d)
    assert [(n, c["action"]) for n, c in got.items()] == [
        ("job-support-llama", "replace"),
        ("job-support-llama-done", "replace"),
        ("endpoint-support", "update"),
    ]
    assert got["job-support-llama"]["fields"] == ["inputs.epochs"]
    assert "NEW BILLED job" in got["job-support-llama"]["effects"][0]
    ep = got["endpoint-support"]
    assert ep["fields"] == ["inputs.gcs_uri"]
    assert ep["effects"][0] == "because job-support-llama is replaced"
    assert (
        "redeploys blue/green on the same endpoint to serve the new job's weights"
        in (ep["effects"][1])
    )
    old_plan = json.loads(_plan(capsys, old))
    tokens = next(j["tokens"] for j in old_plan["jobs"] if j["name"] == "support-llama")
    assert d["training_tokens_delta"] == tokens  # one more epoch
    assert d["billed_jobs"] == ["job-support-llama"]
    assert d["billed_training_tokens"] == 4 * tokens  # the whole new job is billed
    # The job that waits in the quota chain is untouched: only its order depends on it.
    assert "job-support-gemma" not in got

    text = diff(capsys, old, new, "text")
    assert "-/+ job-support-llama: pulumi-python:dynamic/tunestack:TuningJob replace" in text
    assert "<- REPLACED" in text and "billed: 1 job(s) to submit" in text


def test_replicas_change_updates_in_place(capsys, specs) -> None:
    old, new = specs
    edit(new, endpoint(0, min_replicas=1, max_replicas=3))
    d = diff(capsys, old, new)
    assert d["changes"] == [
        {
            "name": "endpoint-support",
            "type": "pulumi-python:dynamic/tunestack:ModelDeployment",
            "action": "update",
            "fields": ["inputs.max_replicas"],
            "effects": ["scales in place, no redeploy (replicas 1..1 -> 1..3)"],
        }
    ]
    assert d["training_tokens_delta"] == 0 and d["billed_jobs"] == []


def test_machine_type_change_redeploys_blue_green_on_the_same_endpoint(capsys, specs) -> None:
    old, new = specs
    edit(new, endpoint(0, machine_type="g2-standard-16"))
    (c,) = diff(capsys, old, new)["changes"]
    assert (c["name"], c["action"], c["fields"]) == (
        "endpoint-support",
        "update",
        ["inputs.machine_type"],
    )
    assert c["effects"] == ["redeploys blue/green on the same endpoint (machine_type)"]
    md = diff(capsys, old, new, "markdown")
    assert "| ~ | update | `endpoint-support` |" in md and "replace**" not in md


def test_checkpoint_final_then_epoch_then_best(capsys, specs) -> None:
    old, new = specs
    edit(new, endpoint(0, checkpoint="epoch-1"))
    (c,) = diff(capsys, old, new)["changes"]
    assert (c["action"], c["fields"]) == ("update", ["inputs.gcs_uri"])
    assert c["effects"] == [
        "redeploys blue/green on the same endpoint to serve job support-llama, epoch-1: the "
        "checkpoint of epoch 1, its step resolved from the job's checkpoints after training "
        "(gcs_uri)"
    ]
    shutil.copyfile(new, old)
    edit(new, endpoint(0, checkpoint="best"))
    (c,) = diff(capsys, old, new)["changes"]
    assert (c["name"], c["action"]) == ("endpoint-support", "update")
    assert "lowest validation loss, resolved after training" in c["effects"][0]
    plan = json.loads(_plan(capsys, new))
    (ep,) = plan["endpoints"]
    assert (ep["checkpoint"], ep["uri"]) == ("best", None)


def test_canary_added_then_removed(capsys, specs) -> None:
    old, new = specs
    edit(new, endpoint(0, canary_percent=10))
    (c,) = diff(capsys, old, new)["changes"]
    assert (c["action"], c["fields"]) == ("update", ["inputs.canary_percent"])
    assert c["effects"] == ["canary: the new model gets 10%, the previous one stays with 90%"]
    assert "canary 10% for a new model" in _plan(capsys, new, "text")
    (c,) = diff(capsys, new, old)["changes"]
    assert (c["action"], c["fields"]) == ("update", ["inputs.canary_percent"])
    assert c["effects"] == ["canary ends: the new model takes 100%, the previous one is undeployed"]


def test_added_and_removed_job_and_endpoint(capsys, specs) -> None:
    old, new = specs

    def add(d: dict[str, Any]) -> None:
        d["tuning_jobs"].append({**d["tuning_jobs"][1], "name": "support-gemma-2"})
        d["endpoints"].append(
            {"name": "gemma", "model": "support-gemma-2", "machine_type": "g2-standard-8"}
        )

    edit(new, add)
    d = diff(capsys, old, new)
    got = by_name(d)
    assert got["job-support-gemma-2"]["action"] == "create"
    assert got["job-support-gemma-2"]["effects"][0].startswith("submits a billed job (")
    assert got["endpoint-gemma"]["action"] == "create"
    assert (
        "creates the endpoint and deploys job support-gemma-2, final"
        in (got["endpoint-gemma"]["effects"][0])
    )
    assert d["billed_jobs"] == ["job-support-gemma-2"]
    back = diff(capsys, new, old)
    assert {c["name"]: c["action"] for c in back["changes"]} == {
        "job-support-gemma-2": "delete",
        "job-support-gemma-2-done": "delete",
        "endpoint-gemma": "delete",
    }
    assert back["billed_jobs"] == [] and back["training_tokens_delta"] < 0


def test_a_plan_saved_before_the_endpoint_fields_still_diffs(capsys, specs, tmp_path) -> None:
    old, new = specs
    saved = json.loads(_plan(capsys, old))
    for e in saved["endpoints"]:
        for key in ("job", "checkpoint", "uri", "serves", "min_replicas", "max_replicas"):
            e.pop(key)
        e.pop("canary_percent")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(saved))
    edit(new, endpoint(0, max_replicas=2))
    (c,) = diff(capsys, path, new)["changes"]
    assert (c["action"], c["effects"]) == (
        "update",
        ["scales in place, no redeploy (replicas 1..1 -> 1..2)"],
    )


def test_markdown_escapes_table_cells(capsys, specs) -> None:
    old, new = specs
    edit(new, endpoint(0, checkpoint="epoch-2"))
    md = diff(capsys, old, new, "markdown")
    row = next(line for line in md.splitlines() if "`endpoint-support`" in line)
    assert row.count(" | ") == 5  # six cells, none broken by the effect text


def _plan(capsys: pytest.CaptureFixture[str], spec: Path, fmt: str = "json") -> str:
    code = main(["plan", str(spec), "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out
