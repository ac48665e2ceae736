"""CustomTrainingJob (engine trainer_image) through Pulumi's provider host."""

from __future__ import annotations

import grpc
import pytest
from google.cloud import aiplatform_v1beta1 as aip
from pulumi.runtime.proto import provider_pb2
from test_tuning_job import completion_inputs, job_inputs

from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider
from infra.vertex.jobs import DEFAULT_CUSTOM_MACHINE

IMAGE = "us-central1-docker.pkg.dev/proj/tunestack/trainer:abc123"


def custom_inputs(url: str, **over: object) -> dict:
    return job_inputs(url, **{"image_uri": IMAGE, "replicas": 1, "machine_type": None, **over})


def test_single_replica_runs_the_trainer_with_the_jobs_arguments(vertex, make_host):
    fake, url = vertex
    host = make_host(CustomTrainingJobProvider())
    id_, outs = host.create(custom_inputs(url))
    assert "/customJobs/" in id_ and outs["adopted"] is False
    job: aip.CustomJob = fake.jobs[id_].message
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1 and pool.container_spec.image_uri == IMAGE
    # The image's entrypoint (trainer.launch) starts torchrun; we only pass trainer flags.
    assert list(pool.container_spec.command) == []
    args = list(pool.container_spec.args)
    assert args[args.index("--train-data") + 1] == "gs://data/train.jsonl"
    # The run key: the training inputs only, so a new image or machine is a new job on the
    # same run dir (its trainer finds its own run config there), never another job's.
    assert args[args.index("--output-dir") + 1] == outs["run_uri"]
    assert (
        outs["run_uri"].startswith("gs://out/job1/")
        and outs["run_uri"] != f"gs://out/job1/{outs['key'][:16]}"
    )
    assert args[args.index("--tuning-mode") + 1] == "PEFT_ADAPTER"
    assert args[args.index("--adapter-size") + 1] == "16"
    assert pool.machine_spec.machine_type == DEFAULT_CUSTOM_MACHINE
    assert job.labels["tunestack-key"] == outs["key"]
    _, again = host.create(custom_inputs(url))
    assert again["adopted"] is True and len(fake.jobs) == 1
    _, other_image = make_host(CustomTrainingJobProvider()).create(
        {**custom_inputs(url), "image_uri": IMAGE + "-v2"}
    )
    assert other_image["key"] != outs["key"] and other_image["run_uri"] == outs["run_uri"]


def test_multi_replica_is_a_primary_pool_and_a_worker_pool_of_the_same_container(vertex, make_host):
    """Vertex then sets CLUSTER_SPEC (workerpool0 = primary, workerpool1 = workers), which the
    image's entrypoint turns into torchrun --nnodes/--node_rank/--master_addr."""
    fake, url = vertex
    host = make_host(CustomTrainingJobProvider())
    id_, _ = host.create(custom_inputs(url, replicas=3, machine_type="a3-highgpu-8g"))
    chief, workers = fake.jobs[id_].message.job_spec.worker_pool_specs
    assert chief.replica_count == 1 and workers.replica_count == 2
    assert chief.container_spec == workers.container_spec
    assert chief.machine_spec == workers.machine_spec
    assert chief.machine_spec.accelerator_type == aip.AcceleratorType.NVIDIA_H100_80GB
    assert chief.machine_spec.accelerator_count == 8


def test_image_and_replicas_replace_labels_do_not(vertex, make_host):
    _, url = vertex
    host = make_host(CustomTrainingJobProvider())
    id_, outs = host.create(custom_inputs(url))
    assert list(host.diff(id_, outs, custom_inputs(url, image_uri=IMAGE + "x")).replaces) == [
        "image_uri"
    ]
    assert list(host.diff(id_, outs, custom_inputs(url, replicas=2)).replaces) == ["replicas"]
    d = host.diff(id_, outs, custom_inputs(url, labels={"a": "b"}))
    assert d.changes == provider_pb2.DiffResponse.DIFF_SOME and list(d.replaces) == []


def test_completion_of_a_failed_custom_job_fails_with_its_message(vertex, make_host):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING", "JOB_STATE_FAILED")
    fake.final_error = "trainer exited 1: CUDA out of memory"
    host = make_host(CustomTrainingJobProvider())
    id_, _ = host.create(custom_inputs(url))
    with pytest.raises(grpc.RpcError) as err:
        host.using(JobCompletionProvider()).create(completion_inputs(url, id_))
    assert "JOB_STATE_FAILED" in err.value.details() and "CUDA out of memory" in err.value.details()


def test_delete_cancels_a_running_custom_job(vertex, make_host):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING",) * 100
    host = make_host(CustomTrainingJobProvider())
    id_, outs = host.create(custom_inputs(url))
    host.delete(id_, outs)
    assert aip.JobState(fake.jobs[id_].message.state).name == "JOB_STATE_CANCELLED"


@pytest.mark.slow
def test_crash_after_submit_adopts_the_custom_job(vertex, make_host):
    fake, url = vertex
    host = make_host(CustomTrainingJobProvider(), fresh=True)

    def hook(kind: str, _path: str) -> None:
        if kind == "customJobs.create":
            fake.hook = None
            host.kill()

    fake.hook = hook
    with pytest.raises(grpc.RpcError):
        host.create(custom_inputs(url))
    _, outs = make_host(CustomTrainingJobProvider(), fresh=True).create(custom_inputs(url))
    assert outs["adopted"] is True and len(fake.jobs_with_key(outs["key"])) == 1


def test_our_pools_drive_the_images_torchrun_launcher(vertex, make_host):
    """The CLUSTER_SPEC Vertex derives from our pools makes the entrypoint start 3 nodes."""
    import json

    from trainer.launch import torchrun_argv

    fake, url = vertex
    id_, _ = make_host(CustomTrainingJobProvider()).create(custom_inputs(url, replicas=3))
    chief, workers = fake.jobs[id_].message.job_spec.worker_pool_specs
    cluster = {
        "workerpool0": ["primary:2222"] * chief.replica_count,
        "workerpool1": [f"w{i}:2222" for i in range(workers.replica_count)],
    }
    spec = {"cluster": cluster, "task": {"type": "workerpool1", "index": 1}}
    argv = torchrun_argv({"CLUSTER_SPEC": json.dumps(spec)}, 1, list(workers.container_spec.args))
    assert "--nnodes=3" in argv and "--node_rank=2" in argv and "--master_addr=primary" in argv
    assert argv[-len(workers.container_spec.args) :] == list(workers.container_spec.args)
