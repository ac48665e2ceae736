"""The real program under Pulumi's mocks: what it registers, with which inputs and edges."""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra import catalog
from infra.emit.offline import RecordingMonitor, Registration
from infra.emit.program import build

AGENT_DOMAINS = catalog.SERVICE_AGENT_DOMAINS


def run(spec: Path, check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Runs the program; ``check`` gets the resolved stack outputs inside the Pulumi run."""
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        built = build(spec)
        seen["plan"] = built.plan

        def resolved(outputs: dict[str, Any]) -> None:
            seen["outputs"] = outputs
            if check:
                check(outputs)

        return pulumi.Output.from_input(built.outputs).apply(resolved)

    program()
    return seen


def by_name(monitor: RecordingMonitor) -> dict[str, Registration]:
    names = [r.name for r in monitor.registrations]
    assert len(names) == len(set(names)), "logical names must be unique across the stack"
    return {r.name: r for r in monitor.registrations}


def of_type(monitor: RecordingMonitor, suffix: str) -> list[Registration]:
    return [r for r in monitor.registrations if r.type.endswith(suffix)]


def ancestors(regs: dict[str, Registration], name: str) -> set[str]:
    """Every resource ``name`` waits for, directly or transitively."""
    out: set[str] = set()
    todo = list(regs[name].depends_on)
    while todo:
        d = todo.pop()
        if d not in out:
            out.add(d)
            todo += regs[d].depends_on
    return out


def test_both_agents_get_object_user_on_every_derived_bucket(mocks, write_spec, base_spec) -> None:
    run(write_spec(base_spec))
    grants = of_type(mocks, ":BucketIAMMember")
    pairs = {(g.inputs["bucket"], g.inputs["member"], g.inputs["role"]) for g in grants}
    # data (uploads), out (outputs), weights (existing: custom_base_model), served (endpoint).
    for bucket in ("acme-test-data", "acme-test-out", "acme-test-weights", "acme-test-served"):
        for domain in AGENT_DOMAINS:
            member = catalog.service_agent("PROJECT_NUMBER", domain)
            assert (bucket, member, "roles/storage.objectUser") in pairs, (bucket, domain)
    assert len(grants) == 4 * len(AGENT_DOMAINS)


def test_no_authoritative_project_level_or_public_iam(mocks, write_spec, base_spec) -> None:
    base_spec["iam"] = [
        {
            "bucket": "acme-test-out",
            "member": "group:ml@example.com",
            "role": "roles/storage.objectViewer",
        }
    ]
    run(write_spec(base_spec))
    iam = [r for r in mocks.registrations if "iam" in r.type.lower()]
    assert iam and all(r.type == "gcp:storage/bucketIAMMember:BucketIAMMember" for r in iam)
    assert not [r for r in mocks.registrations if "Binding" in r.type or "Policy" in r.type]
    assert not [r for r in mocks.registrations if r.type.startswith("gcp:projects/iAM")]
    members = {r.inputs["member"] for r in iam}
    assert "group:ml@example.com" in members
    assert not members & {"allUsers", "allAuthenticatedUsers"}


def test_buckets_are_private_versioned_for_outputs_and_protected_on_request(
    mocks, write_spec, base_spec
) -> None:
    run(write_spec(base_spec))
    regs = by_name(mocks)
    buckets = {r.inputs["name"]: r for r in of_type(mocks, ":Bucket")}
    # Existing buckets are referenced, never managed.
    assert set(buckets) == {"acme-test-data", "acme-test-out"}
    for b in buckets.values():
        assert b.inputs["uniformBucketLevelAccess"] is True
        assert b.inputs["publicAccessPrevention"] == "enforced"
        assert b.inputs["softDeletePolicy"] == {"retentionDurationSeconds": 604800}
        assert b.inputs["labels"] == {"managed-by": "tunestack", "team": "ml"}
        assert b.inputs["location"] == "US-CENTRAL1"
        assert b.inputs["forceDestroy"] is False
    assert buckets["acme-test-out"].inputs["versioning"] == {"enabled": True}
    assert "versioning" not in buckets["acme-test-data"].inputs
    assert buckets["acme-test-data"].protect and buckets["acme-test-data"].retain_on_delete
    assert not buckets["acme-test-out"].protect and not buckets["acme-test-out"].retain_on_delete
    # Objects in a protected bucket survive destroy too.
    assert regs["dataset-chat-train"].retain_on_delete


def test_grants_and_uploads_before_jobs_and_jobs_before_endpoints(
    mocks, write_spec, base_spec
) -> None:
    run(write_spec(base_spec))
    regs = by_name(mocks)
    first = set(regs["job-first"].depends_on)
    assert {"dataset-chat-train", "dataset-chat-validation"} <= first
    assert {
        f"grant-acme-test-{b}-{d.removeprefix('gcp-sa-')}"
        for b in ("data", "out")
        for d in AGENT_DOMAINS
    } <= first
    assert {f"grant-acme-test-weights-{d.removeprefix('gcp-sa-')}" for d in AGENT_DOMAINS} <= set(
        regs["job-second"].depends_on
    )
    assert regs["job-first-done"].depends_on == ["job-first"]
    assert regs["job-first-done"].inputs["job_name"].endswith("/tuningJobs/job-first")
    endpoint = regs["endpoint-serve-first"]
    assert "job-first-done" in endpoint.depends_on
    run_uri = endpoint.inputs["gcs_uri"].removesuffix("/postprocess/node-0/checkpoints/final")
    assert re.fullmatch(r"gs://acme-test-out/runs/first/[0-9a-f]{16}", run_uri), run_uri
    # Grants wait for the agents and the APIs.
    for grant in of_type(mocks, ":BucketIAMMember"):
        assert {"agent-aiplatform", "agent-vertex-moss-ft", "api-aiplatform", "api-storage"} <= set(
            grant.depends_on
        )
    assert regs["agent-aiplatform"].inputs == {
        "project": "acme-test-proj",
        "service": "aiplatform.googleapis.com",
    }
    # Uploads are content-addressed, and the job reads exactly the uploaded object.
    upload = regs["dataset-chat-train"]
    assert upload.inputs["name"].startswith("tunestack/datasets/chat/") and upload.inputs[
        "name"
    ].endswith("/train.jsonl")
    assert (
        regs["job-first"].inputs["train_dataset_uri"]
        == f"gs://acme-test-data/{upload.inputs['name']}"
    )


def test_jobs_run_one_after_another_by_default(mocks, write_spec, base_spec) -> None:
    base_spec["tuning_jobs"] += [
        dict(
            base_spec["tuning_jobs"][0],
            name=f"extra{i}",
            output_uri=f"gs://acme-test-out/runs/e{i}",
        )
        for i in range(2)
    ]
    seen = run(write_spec(base_spec))
    regs = by_name(mocks)
    order = ["first", "second", "extra0", "extra1"]
    for before, after in zip(order, order[1:], strict=False):
        assert f"job-{before}-done" in regs[f"job-{after}"].depends_on
    assert [j.after for j in seen["plan"].jobs] == [(), ("first",), ("second",), ("extra0",)]
    assert "job-extra1-done" not in regs["job-first"].depends_on


def test_max_concurrent_jobs_runs_lanes(mocks, write_spec, base_spec) -> None:
    base_spec["project"]["max_concurrent_tuning_jobs"] = 2
    base_spec["tuning_jobs"] = [
        dict(base_spec["tuning_jobs"][0], name=f"j{i}", output_uri=f"gs://acme-test-out/runs/j{i}")
        for i in range(5)
    ]
    base_spec["endpoints"] = []
    run(write_spec(base_spec))
    regs = by_name(mocks)
    chained = {
        n: [d for d in r.depends_on if d.endswith("-done")]
        for n, r in regs.items()
        if n.startswith("job-j") and not n.endswith("-done")
    }
    assert chained == {
        "job-j0": [],
        "job-j1": [],
        "job-j2": ["job-j0-done"],
        "job-j3": ["job-j1-done"],
        "job-j4": ["job-j2-done"],
    }


def test_project_create_bootstraps_and_everything_waits_for_it(
    mocks, write_spec, base_spec
) -> None:
    base_spec["project"].update(
        create=True, billing_account="0A1B2C-3D4E5F-6A7B8C", folder_id="123456789012"
    )
    run(write_spec(base_spec))
    regs = by_name(mocks)
    project = regs["project"]
    assert project.type == "gcp:organizations/project:Project"
    assert project.inputs["projectId"] == "acme-test-proj"
    assert project.inputs["billingAccount"] == "0A1B2C-3D4E5F-6A7B8C"
    assert project.inputs["folderId"] == "123456789012"
    assert "orgId" not in project.inputs
    assert project.inputs["autoCreateNetwork"] is False
    assert project.inputs["deletionPolicy"] == "PREVENT"
    assert project.protect and project.retain_on_delete
    for api in of_type(mocks, ":Service"):
        assert "project" in api.depends_on
        assert api.inputs["disableOnDestroy"] is False
    for r in mocks.registrations:
        if r.custom and r.name != "project":
            assert "project" in ancestors(regs, r.name), r.name
    # The new project's number is an output of the Project: no lookup.
    assert not [c for c in mocks.calls if c[0].endswith("getProject")]


def test_adopted_project_number_is_looked_up_only_when_missing(
    mocks, write_spec, base_spec
) -> None:
    run(write_spec(base_spec))
    assert (
        "gcp:organizations/getProject:getProject",
        {"projectId": "acme-test-proj"},
    ) in mocks.calls
    assert not [r for r in mocks.registrations if r.type == "gcp:organizations/project:Project"]


def test_adopted_project_with_number_uses_it(mocks, write_spec, base_spec) -> None:
    base_spec["project"]["number"] = "987654321098"
    run(write_spec(base_spec))
    assert not [c for c in mocks.calls if c[0].endswith("getProject")]
    members = {g.inputs["member"] for g in of_type(mocks, ":BucketIAMMember")}
    assert catalog.service_agent("987654321098", "gcp-sa-vertex-moss-ft") in members


def test_stack_outputs(mocks, write_spec, base_spec) -> None:
    def check(outputs: dict[str, Any]) -> None:
        assert outputs["buckets"] == {
            "acme-test-data": "gs://acme-test-data",
            "acme-test-out": "gs://acme-test-out",
            "acme-test-served": "gs://acme-test-served",
            "acme-test-weights": "gs://acme-test-weights",
        }
        assert outputs["datasets"]["chat"]["train"].startswith(
            "gs://acme-test-data/tunestack/datasets/chat/"
        )
        first = outputs["jobs"]["first"]
        assert re.fullmatch(r"gs://acme-test-out/runs/first/[0-9a-f]{16}", first["run_uri"])
        assert first == {
            "name": "projects/acme-test-proj/locations/us-central1/tuningJobs/job-first",
            "run_uri": first["run_uri"],
            "final_checkpoint_uri": f"{first['run_uri']}/postprocess/node-0/checkpoints/final",
            "checkpoint_uris": [],
        }
        assert outputs["endpoints"]["serve-custom"].endswith("/endpoints/endpoint-serve-custom")

    seen = run(write_spec(base_spec), check)
    assert "outputs" in seen, "the check inside apply must have run (preview=False)"


def test_components_parent_every_resource(mocks, write_spec, base_spec) -> None:
    run(write_spec(base_spec))
    components = {r.name: r.type for r in mocks.registrations if not r.custom}
    assert components == {
        "foundation": "tunestack:project:Foundation",
        "storage": "tunestack:storage:Storage",
        "tuning": "tunestack:tuning:Tuning",
        "serving": "tunestack:serving:Serving",
    }
    assert all(r.parent in components for r in mocks.registrations if r.custom)


def test_trainer_image_engine(mocks, write_spec, base_spec) -> None:
    base_spec["tuning_jobs"][0].update(
        engine="trainer_image", machine_type="a2-highgpu-1g", replicas=2
    )
    base_spec["trainer_image"] = {"repository": "trainers"}
    run(write_spec(base_spec))
    regs = by_name(mocks)
    repo = regs["trainer-repository"]
    assert repo.type == "gcp:artifactregistry/repository:Repository"
    assert repo.inputs["format"] == "DOCKER" and repo.inputs["repositoryId"] == "trainers"
    assert {"api-artifactregistry", "api-cloudbuild"} <= set(repo.depends_on)
    job = regs["job-first"]
    assert job.type.endswith("tunestack:CustomTrainingJob")
    assert "trainer-image" in job.depends_on
    assert job.inputs["image_uri"].startswith(
        "us-central1-docker.pkg.dev/acme-test-proj/trainers/trainer:"
    )
    assert job.inputs["replicas"] == 2 and job.inputs["machine_type"] == "a2-highgpu-1g"
    assert regs["job-first-done"].inputs["job_name"].endswith("/customJobs/job-first")
    assert regs["job-second"].type.endswith("tunestack:TuningJob")


def test_changed_dataset_is_a_new_object(mocks, write_spec, base_spec, tmp_path) -> None:
    run(write_spec(base_spec))
    before = by_name(mocks)["dataset-chat-train"].inputs["name"]
    mocks.registrations.clear()
    (tmp_path / "data" / "train.jsonl").write_text(
        (tmp_path / "data" / "train.jsonl").read_text().replace("widgets", "gadgets")
    )
    seen = run(tmp_path / "spec.yaml")
    after = by_name(mocks)["dataset-chat-train"].inputs["name"]
    assert before != after
    assert seen["plan"].uploads[0].object_name == after


def test_invalid_spec_registers_and_uploads_nothing(mocks, write_spec, base_spec) -> None:
    base_spec["tuning_jobs"][0]["adapter_size"] = 3
    spec = write_spec(base_spec)
    with pytest.raises(Exception, match="error"):
        run(spec)
    assert [r for r in mocks.registrations if r.custom] == []


MAIN = Path(__file__).resolve().parents[2] / "infra" / "__main__.py"


def run_main() -> None:
    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")

    program()


def test_main_reads_the_stack_config_and_builds(mocks, write_spec, base_spec, monkeypatch) -> None:
    # The engine hands stack config to the program in PULUMI_CONFIG, as here.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"tunestack:spec": str(write_spec(base_spec))}))
    run_main()
    names = {r.name for r in mocks.registrations}
    assert {
        "job-first",
        "job-second-done",
        "endpoint-serve-first",
        "bucket-acme-test-data",
    } <= names


def test_main_fails_with_the_diagnostics_on_an_invalid_spec(
    mocks, write_spec, base_spec, monkeypatch, caplog
) -> None:
    base_spec["buckets"][0]["name"] = "Bad_Bucket"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"tunestack:spec": str(write_spec(base_spec))}))
    with pytest.raises(pulumi.RunError, match="nothing was created or uploaded"):
        run_main()
    assert "error[invalid-bucket-name]: buckets[0].name" in caplog.text
    assert [r for r in mocks.registrations if r.custom] == []
