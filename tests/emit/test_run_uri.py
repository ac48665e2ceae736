"""The plan's run URIs are the ones the providers compute from the inputs they receive."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.checks import validate
from infra.emit.offline import run_offline
from infra.plan.keys import run_output_uri

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_completion_and_endpoint_follow_the_providers_run_uri(spec: Path) -> None:
    report = validate(spec)
    assert report.ok
    doc = run_offline(spec, report).to_json()
    by_name = {r["name"]: r for r in doc["resources"]}
    jobs = {j["name"]: j for j in doc["jobs"]}
    for r in doc["resources"]:
        if not r["type"].endswith((":TuningJob", ":CustomTrainingJob")):
            continue
        # What the provider computes from its inputs (labels and the API endpoint aside).
        run_uri = run_output_uri(r["inputs"])
        assert run_uri.startswith(r["inputs"]["output_uri"].rstrip("/") + "/")
        assert by_name[f"{r['name']}-done"]["inputs"]["output_uri"] == run_uri
        assert jobs[r["inputs"]["display_name"]]["run_uri"] == run_uri
    for e in doc["endpoints"]:
        deployment = by_name[f"endpoint-{e['name']}"]
        assert deployment["inputs"]["gcs_uri"] == e["model_uri"]
