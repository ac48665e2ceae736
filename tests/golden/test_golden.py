"""Golden plans of the shipped example specs, and every spec in specs/ plans.

``tests/golden/<case>/`` holds a copy of ``specs/<case>.yaml`` with its dataset files and the
expected ``plan.json`` (``tunestack plan --format json``). After an intended change, refresh
them with ``TUNESTACK_UPDATE_GOLDEN=1 pytest tests/golden`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from infra.checks import validate
from infra.emit.offline import run_offline

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml"))
GOLDEN = Path(__file__).resolve().parent
CASES = [p.stem for p in SPECS]
UPDATE = os.environ.get("TUNESTACK_UPDATE_GOLDEN") == "1"


def plan_json(spec: Path) -> dict:
    report = validate(spec)
    assert report.ok, [d.format() for d in report.diagnostics]
    return run_offline(spec, report).to_json()


def refresh(case: str) -> None:
    """Copies specs/<case>.yaml and its local dataset files into the golden case folder."""
    source = ROOT / "specs" / f"{case}.yaml"
    target = GOLDEN / case
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copyfile(source, target / "spec.yaml")
    spec = yaml.safe_load(source.read_text())
    for ds in spec.get("datasets", []):
        for key in ("train", "validation"):
            ref = ds.get(key)
            if ref and "://" not in ref:
                (target / ref).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source.parent / ref, target / ref)


@pytest.mark.parametrize("case", CASES)
def test_golden_plan(case: str) -> None:
    folder = GOLDEN / case
    if UPDATE:
        refresh(case)
    assert (folder / "spec.yaml").exists(), (
        f"no golden for specs/{case}.yaml: run with TUNESTACK_UPDATE_GOLDEN=1"
    )
    assert (folder / "spec.yaml").read_text() == (ROOT / "specs" / f"{case}.yaml").read_text(), (
        f"specs/{case}.yaml changed since its golden plan: rerun with TUNESTACK_UPDATE_GOLDEN=1 and review"
    )
    got = plan_json(folder / "spec.yaml")
    if UPDATE:
        (folder / "plan.json").write_text(json.dumps(got, indent=2) + "\n")
    expected = json.loads((folder / "plan.json").read_text())
    assert got == expected


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_every_spec_plans(spec: Path) -> None:
    doc = plan_json(spec)
    data = yaml.safe_load(spec.read_text())
    names = {r["name"] for r in doc["resources"]}
    assert {j["name"] for j in doc["jobs"]} == {j["name"] for j in data.get("tuning_jobs", [])}
    assert {e["name"] for e in doc["endpoints"]} == {e["name"] for e in data.get("endpoints", [])}
    for job in data.get("tuning_jobs", []):
        assert {f"job-{job['name']}", f"job-{job['name']}-done"} <= names
    for bucket in data.get("buckets", []):
        assert (f"bucket-{bucket['name']}" in names) == bucket.get("create", True)
    # Deterministic: a second run is byte-identical.
    assert json.dumps(plan_json(spec)) == json.dumps(doc)
