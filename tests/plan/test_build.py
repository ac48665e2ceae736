"""The pure plan layer: spec + report -> plan, its order and estimates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from infra.checks import validate
from infra.plan import build_plan
from infra.plan.keys import run_output_uri

ROW = {
    "messages": [
        {"role": "user", "content": "Hi there, how are you?"},
        {"role": "assistant", "content": "Fine, thanks for asking."},
    ]
}


def spec_file(tmp_path: Path, spec: dict[str, Any], rows: int = 4) -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(ROW) + "\n" for _ in range(rows)))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def base(jobs: int = 3, lanes: int = 1) -> dict[str, Any]:
    return {
        "project": {
            "id": "acme-plan-test",
            "region": "us-central1",
            "max_concurrent_tuning_jobs": lanes,
        },
        "buckets": [{"name": "acme-plan-data"}],
        "datasets": [{"name": "d", "train": "train.jsonl", "bucket": "acme-plan-data"}],
        "tuning_jobs": [
            {
                "name": f"job{i}",
                "base_model": "google/gemma3@gemma-3-1b-it",
                "tuning_mode": "FULL",
                "epochs": 3,
                "dataset": "d",
                "output_uri": f"gs://acme-plan-data/runs/job{i}",
            }
            for i in range(jobs)
        ],
    }


def plan_of(path: Path):
    report = validate(path)
    assert report.ok, [d.format() for d in report.diagnostics]
    assert report.spec is not None
    return build_plan(report.spec, report, path)


def test_plan_is_deterministic_and_ordered(tmp_path: Path) -> None:
    path = spec_file(tmp_path, base())
    first, second = plan_of(path), plan_of(path)
    assert first == second
    order = first.order()
    assert set(order) == set(first.registered_names())
    position = {n: i for i, n in enumerate(order)}
    for dep, node in first.edges():
        assert position[dep] < position[node], (dep, node)
    assert (
        order.index("job-job0-done")
        < order.index("job-job1")
        < order.index("job-job1-done")
        < order.index("job-job2")
    )


def test_lanes_and_estimates(tmp_path: Path) -> None:
    plan = plan_of(spec_file(tmp_path, base(jobs=5, lanes=2), rows=7))
    assert [j.after for j in plan.jobs] == [(), (), ("job0",), ("job1",), ("job2",)]
    job = plan.jobs[0]
    assert job.examples == 7 and job.epochs == 3 and job.checkpoints == 3
    assert job.tokens is not None and job.training_tokens == job.tokens * 3
    assert plan.training_tokens == 5 * job.training_tokens


def test_upload_names_follow_content(tmp_path: Path) -> None:
    path = spec_file(tmp_path, base(jobs=1))
    one = plan_of(path).uploads[0]
    (tmp_path / "train.jsonl").write_text(json.dumps(ROW) + "\n")
    two = plan_of(path).uploads[0]
    assert one.object_name != two.object_name
    assert two.object_name == f"tunestack/datasets/d/{two.sha256[:16]}/train.jsonl"
    assert plan_of(path).jobs[0].train_uri == two.uri


def test_continued_training_waits_for_the_source_job(tmp_path: Path) -> None:
    spec = base(jobs=2, lanes=5)
    spec["tuning_jobs"][1]["custom_base_model"] = (
        "gs://acme-plan-data/runs/job0/postprocess/node-0/checkpoints/final"
    )
    plan = plan_of(spec_file(tmp_path, spec))
    assert plan.jobs[1].after == ("job0",)
    assert "job-job0-done" in plan.jobs[1].depends_on


def test_endpoint_fit(tmp_path: Path) -> None:
    spec = base(jobs=1)
    spec["endpoints"] = [{"name": "e", "model": "job0", "machine_type": "g2-standard-8"}]
    plan = plan_of(spec_file(tmp_path, spec))
    e = plan.endpoints[0]
    assert e.weights_gb == 2.0 and e.fits is True
    assert e.depends_on == ("job-job0-done",)
    # Each job version owns its prefix: {output_uri}/{run key of its inputs}.
    job = plan.jobs[0]
    assert job.run_uri == run_output_uri(
        job.provider_inputs(plan.project.project_id, "us-central1")
    )
    assert (
        job.run_uri.startswith("gs://acme-plan-data/runs/job0/")
        and len(job.run_uri) == len("gs://acme-plan-data/runs/job0/") + 16
    )
    assert e.model_uri == f"{job.run_uri}/postprocess/node-0/checkpoints/final"


def test_created_project_is_first(tmp_path: Path) -> None:
    spec = base(jobs=1)
    spec["project"].update(create=True, billing_account="0A1B2C-3D4E5F-6A7B8C", org_id="42")
    plan = plan_of(spec_file(tmp_path, spec))
    assert plan.project.create and plan.project.org_id == "42"
    assert plan.order()[0] == "project"
    assert all(a.depends_on == ("project",) for a in plan.apis)


def test_unread_gs_dataset_has_unknown_counts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    spec = base(jobs=1)
    spec["buckets"].append({"name": "acme-plan-remote", "create": False})
    spec["datasets"] = [{"name": "d", "train": "gs://acme-plan-remote/train.jsonl"}]
    plan = plan_of(spec_file(tmp_path, spec))
    job = plan.jobs[0]
    assert (job.examples, job.tokens, job.training_tokens) == (None, None, None)
    assert plan.training_tokens is None
    assert job.train_uri == "gs://acme-plan-remote/train.jsonl" and plan.uploads == ()


def test_what_each_endpoint_serves(tmp_path: Path) -> None:
    spec = base(jobs=1)
    weights = "gs://acme-plan-data/weights/w"
    spec["endpoints"] = [
        {"name": f"e-{sel}", "model": "job0", "checkpoint": sel, "machine_type": "g2-standard-8"}
        for sel in ("final", "epoch-2", "checkpoint-7")
    ] + [
        {
            "name": "gs",
            "model": weights,
            "base_model": "google/gemma3@gemma-3-1b-it",
            "machine_type": "g2-standard-8",
            "canary_percent": 25,
        }
    ]
    plan = plan_of(spec_file(tmp_path, spec))
    ckpts = f"{plan.jobs[0].run_uri}/postprocess/node-0/checkpoints"
    got = {e.endpoint: (e.serves_uri, e.serves, e.canary_percent) for e in plan.endpoints}
    assert got == {
        "e-final": (f"{ckpts}/final", f"job job0, final: {ckpts}/final", None),
        "e-epoch-2": (
            None,
            "job job0, epoch-2: the checkpoint of epoch 2, its step resolved from the job's "
            "checkpoints after training",
            None,
        ),
        "e-checkpoint-7": (
            f"{ckpts}/checkpoint-7",
            f"job job0, checkpoint-7: {ckpts}/checkpoint-7 (that step must exist after training)",
            None,
        ),
        "gs": (weights, f"weights {weights}", 25),
    }
    gs = plan.endpoints[-1].provider_inputs("p", "us-central1", weights)
    assert gs["canary_percent"] == 25 and gs["gcs_uri"] == weights
