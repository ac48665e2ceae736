"""TuningJob and TuningJobCompletion through Pulumi's provider host, against the local API."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import grpc
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1beta1 as aip
from google.cloud import storage
from pulumi.runtime.proto import provider_pb2
from starlette.testclient import TestClient

from infra.local.api import app
from infra.local.api.context import Context
from infra.local.api.settings import Settings
from infra.providers.jobs import JobCompletionProvider, TuningJobProvider
from infra.vertex import jobs as v


def job_inputs(url: str, **over: object) -> dict:
    inputs = {
        "project": "proj",
        "location": "us-central1",
        "base_model": "meta/llama3_1@llama-3.1-8b-instruct",
        "custom_base_model": None,
        "tuning_mode": "PEFT_ADAPTER",
        "epochs": 2,
        "learning_rate": None,
        "learning_rate_multiplier": 1.0,
        "adapter_size": 16,
        "train_dataset_uri": "gs://data/train.jsonl",
        "validation_dataset_uri": None,
        "output_uri": "gs://out/job1",
        "display_name": "job1",
        "labels": {"team": "ml"},
        "dataset_identity": "train:gen=17",
        "api_endpoint": url,
    }
    inputs.update(over)
    return inputs


def completion_inputs(url: str, job_name: str, **over: object) -> dict:
    return {
        "project": "proj",
        "location": "us-central1",
        "job_name": job_name,
        "output_uri": "gs://out/job1",
        "deadline_seconds": 30,
        "api_endpoint": url,
        **over,
    }


def test_create_submits_a_labelled_job_with_the_real_wire_shape(vertex, make_host):
    fake, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    id_, outs = host.create(job_inputs(url))
    assert id_.startswith("projects/proj/locations/us-central1/tuningJobs/")
    assert outs["job_name"] == id_ and outs["adopted"] is False
    job = fake.jobs[id_].message
    assert job.base_model == "meta/llama3_1@llama-3.1-8b-instruct"
    assert (
        job.supervised_tuning_spec.tuning_mode
        == aip.SupervisedTuningSpec.TuningMode.TUNING_MODE_PEFT_ADAPTER
    )
    assert job.supervised_tuning_spec.hyper_parameters.epoch_count == 2
    assert (
        job.supervised_tuning_spec.hyper_parameters.adapter_size
        == aip.SupervisedHyperParameters.AdapterSize.ADAPTER_SIZE_SIXTEEN
    )
    # This job version's own prefix: {output_uri}/{first 16 of the key} (a managed job's run
    # key is its job key), reported as run_uri.
    assert job.output_uri == f"gs://out/job1/{outs['key'][:16]}" == outs["run_uri"]
    assert job.labels["tunestack-key"] == outs["key"] and job.labels["team"] == "ml"
    assert len(outs["key"]) == 40 and outs["key"] == outs["key"].lower()
    # Outputs carry every input, so diff has both sides; nothing undeclared leaks in.
    assert outs["train_dataset_uri"] == "gs://data/train.jsonl"


def test_create_twice_adopts_the_same_job(vertex, make_host):
    fake, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    first, _ = host.create(job_inputs(url))
    second, outs = host.create(job_inputs(url, labels={"other": "x"}))  # labels are not the key
    assert second == first and outs["adopted"] is True
    assert len(fake.jobs) == 1 and fake.count("POST", "tuningJobs.create") == 1


def test_adoption_rechecks_labels_when_the_server_ignores_the_filter(vertex, make_host):
    fake, url = vertex
    fake.honour_filter = False
    host = make_host(TuningJobProvider(), fresh=True)
    a, _ = host.create(job_inputs(url))
    b, _ = host.create(job_inputs(url, epochs=3))
    assert a != b and len(fake.jobs) == 2
    c, outs = host.create(job_inputs(url, epochs=3))
    assert c == b and outs["adopted"] is True


@pytest.mark.parametrize("state", ["JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"])
def test_a_dead_job_with_the_key_is_not_adopted(vertex, make_host, state):
    fake, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    first, _ = host.create(job_inputs(url))
    fake.set_state(first, state, "boom")
    second, outs = host.create(job_inputs(url))
    assert second != first and outs["adopted"] is False


def test_check_reports_invalid_inputs(vertex, make_host):
    _, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    _, failures = host.check(
        job_inputs(
            url, tuning_mode="LORA", learning_rate=1e-4, adapter_size=3, train_dataset_uri=None
        )
    )
    props = {p for p, _ in failures}
    assert props == {"tuning_mode", "learning_rate", "adapter_size", "train_dataset_uri"}
    _, failures = host.check(job_inputs(url))
    assert failures == []


def test_diff_replaces_on_training_inputs_and_updates_labels_in_place(vertex, make_host):
    _, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    id_, outs = host.create(job_inputs(url))
    same = host.diff(id_, outs, job_inputs(url))
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
    labels = host.diff(id_, outs, job_inputs(url, labels={"team": "ml", "cost": "a"}))
    assert labels.changes == provider_pb2.DiffResponse.DIFF_SOME and list(labels.replaces) == []
    for field, value in [
        ("epochs", 3),
        ("learning_rate_multiplier", 2.0),
        ("dataset_identity", "gen=18"),
        ("train_dataset_uri", "gs://data/b.jsonl"),
        ("base_model", "qwen/qwen3@qwen3-32b"),
    ]:
        d = host.diff(id_, outs, job_inputs(url, **{field: value}))
        assert list(d.replaces) == [field], field
    new = host.update(id_, outs, job_inputs(url, labels={"cost": "a"}))
    assert new["labels"] == {"cost": "a"}
    assert new["job_name"] == id_ and new["key"] == outs["key"] and new["state"] == outs["state"]


def test_read_reports_state_and_drops_a_job_cancelled_outside_pulumi(vertex, make_host):
    fake, url = vertex
    host = make_host(TuningJobProvider(), fresh=True)
    id_, outs = host.create(job_inputs(url))
    rid, routs = host.read(id_, outs)
    assert rid == id_ and routs["state"].startswith("JOB_STATE_")
    fake.set_state(id_, "JOB_STATE_CANCELLED", "cancelled in the console")
    rid, _ = host.read(id_, outs)
    assert rid == ""  # gone from state: the next up submits it again
    del fake.jobs[id_]
    assert host.read(id_, outs)[0] == ""


def test_delete_cancels_and_waits_for_a_terminal_state(vertex, make_host):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING",) * 100
    host = make_host(TuningJobProvider(), fresh=True)
    id_, outs = host.create(job_inputs(url))
    host.delete(id_, outs)
    assert aip.JobState(fake.jobs[id_].message.state).name == "JOB_STATE_CANCELLED"
    assert fake.count("POST", "tuningJobs.cancel") == 1
    host.delete(id_, outs)  # idempotent: an ended job is not cancelled again
    assert fake.count("POST", "tuningJobs.cancel") == 1


def test_completion_waits_and_outputs_checkpoints(vertex, make_host, gcs):
    fake, url = vertex
    client = storage.Client(
        project="proj", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs}
    )
    bucket = client.bucket("out")
    if not bucket.exists():
        client.create_bucket("out")
    for ckpt in ("checkpoint-1", "checkpoint-10", "checkpoint-3", "final"):
        bucket.blob(
            f"job1/postprocess/node-0/checkpoints/{ckpt}/model-00001-of-00001.safetensors"
        ).upload_from_string(b"w")
    host = make_host(TuningJobProvider(), fresh=True)
    id_, _ = host.create(job_inputs(url))
    cid, outs = host.using(JobCompletionProvider()).create(completion_inputs(url, id_))
    base = "gs://out/job1/postprocess/node-0/checkpoints"
    assert outs["state"] == "JOB_STATE_SUCCEEDED"
    assert outs["final_checkpoint_uri"] == f"{base}/final"
    assert outs["checkpoint_uris"] == [f"{base}/checkpoint-{n}" for n in (1, 3, 10)]
    assert outs["tuned_model"].endswith("/models/" + id_.rsplit("/", 1)[1])
    assert cid == f"{id_}/completion"


@pytest.mark.parametrize(
    "state",
    [
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    ],
)
def test_completion_fails_on_every_unsuccessful_terminal_state_with_the_jobs_message(
    vertex, make_host, state
):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING", state)
    fake.final_error = f"the job's own words for {state}"
    host = make_host(TuningJobProvider(), fresh=True)
    id_, _ = host.create(job_inputs(url))
    with pytest.raises(grpc.RpcError) as err:
        host.using(JobCompletionProvider()).create(completion_inputs(url, id_))
    assert (
        state in err.value.details() and f"the job's own words for {state}" in err.value.details()
    )


def test_completion_deadline_is_bounded_and_says_the_job_keeps_running(vertex, make_host):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING",) * 10_000
    host = make_host(TuningJobProvider(), fresh=True)
    id_, _ = host.create(job_inputs(url))
    with pytest.raises(grpc.RpcError) as err:
        host.using(JobCompletionProvider()).create(
            completion_inputs(url, id_, deadline_seconds=0.5)
        )
    assert (
        "still JOB_STATE_RUNNING" in err.value.details() and "re-run resumes" in err.value.details()
    )


@pytest.mark.slow
def test_crash_after_submit_before_return_then_rerun_adopts(vertex, make_host):
    """Kill the host at three points of create; every re-run converges on one job."""
    fake, url = vertex
    kills = {"n": 0}
    points = ["tuningJobs.create", "tuningJobs.list", "tuningJobs.get"]
    for point in points:
        host = make_host(TuningJobProvider(), fresh=True)

        def hook(kind: str, _path: str, host=host, point=point) -> None:
            if kind == point:
                kills["n"] += 1
                fake.hook = None
                host.kill()

        fake.hook = hook
        with pytest.raises(grpc.RpcError):
            host.create(job_inputs(url))
    id_, outs = make_host(TuningJobProvider()).create(job_inputs(url))
    assert kills["n"] == 3
    assert len(fake.jobs_with_key(outs["key"])) == 1 and len(fake.jobs) == 1
    assert outs["adopted"] is True and fake.count("POST", "tuningJobs.create") == 1


@pytest.mark.slow
def test_crash_while_waiting_resumes_waiting_on_the_same_job(vertex, make_host):
    fake, url = vertex
    fake.script = ("JOB_STATE_PENDING",) + ("JOB_STATE_RUNNING",) * 8 + ("JOB_STATE_SUCCEEDED",)
    id_, _ = make_host(TuningJobProvider()).create(job_inputs(url))
    waiting = make_host(JobCompletionProvider(), fresh=True)
    gets = threading.Event()

    def hook(kind: str, _path: str) -> None:
        if kind == "tuningJobs.get" and fake.jobs[id_].gets >= 3:
            fake.hook = None
            gets.set()
            waiting.kill()

    fake.hook = hook
    with pytest.raises(grpc.RpcError) as err:
        waiting.create(completion_inputs(url, id_))
    assert gets.is_set(), err.value.details()
    # The re-run of `up`: TuningJob is in state (unchanged, no create); completion waits again.
    _, outs = make_host(JobCompletionProvider()).create(completion_inputs(url, id_))
    assert outs["state"] == "JOB_STATE_SUCCEEDED"
    assert len(fake.jobs) == 1 and fake.count("POST", "tuningJobs.create") == 1


def test_no_token_in_payloads_or_outputs(vertex, make_host, home):
    fake, url = vertex
    token = (home / "local" / "token").read_text()
    host = make_host(TuningJobProvider(), fresh=True)
    id_, outs = host.create(job_inputs(url))
    host.read(id_, outs)
    comp = host.using(JobCompletionProvider())
    comp.create(completion_inputs(url, id_))
    for h in (host, comp):
        assert token.encode() not in h.serialized.encode()
        for payload in h.last_payloads:
            assert token.encode() not in payload
    assert token not in repr(outs)
    # The provider pickles by reference: nothing but module and class names.
    assert len(host.serialized) < 200
    # The token did reach the server (the credentials object works) and nowhere else.
    assert fake.count("POST", "tuningJobs.create") == 1
    assert all(token.encode() not in b for b in fake.bodies)


def test_client_layer_key_is_stable_across_wire_number_types():
    a = v.job_key({"epochs": 2, "learning_rate": 0.5, "labels": {"a": "b"}, "x": None})
    b = v.job_key({"epochs": 2.0, "learning_rate": 0.5, "labels": {}})
    c = v.job_key({"epochs": 3, "learning_rate": 0.5})
    assert a == b != c


def test_local_target_reads_api_json_and_token(vertex, home):
    fake, url = vertex
    target = v.Target.local("proj", "us-central1")
    assert target.api_endpoint == url and target.storage_endpoint
    name, adopted = v.ensure_tuning_job(
        target, {k: val for k, val in job_inputs(url).items() if k != "api_endpoint"}
    )
    assert not adopted and v.ensure_tuning_job(
        target, {k: val for k, val in job_inputs(url).items() if k != "api_endpoint"}
    ) == (name, True)
    token = (home / "local" / "token").read_text()
    (home / "local" / "token").write_text("wrong")
    try:
        with pytest.raises(Exception, match="401|bearer"):
            v.get_job(target, name)
    finally:
        (home / "local" / "token").write_text(token)


def test_wait_for_job_reports_progress_and_treats_expired_as_terminal(vertex, home):
    fake, url = vertex
    fake.script = ("JOB_STATE_RUNNING", "JOB_STATE_EXPIRED")
    target = v.Target("proj", "us-central1", url)
    name, _ = v.ensure_tuning_job(target, job_inputs(url))
    seen: list[str] = []
    job = v.wait_for_job(
        target, name, 10, lambda j: seen.append(v.state_name(j)), initial_delay=0.01
    )
    assert seen[-1] == "JOB_STATE_EXPIRED" and "JOB_STATE_RUNNING" in seen
    with pytest.raises(v.JobFailed) as err:
        v.raise_for_job(job)
    assert err.value.state == "JOB_STATE_EXPIRED"


def test_the_api_rejects_unknown_fields_like_vertex(vertex):
    fake, _ = vertex
    status, payload = fake.request(
        "POST", "/v1beta1/projects/p/locations/l/tuningJobs", b'{"baseModel": "x", "nope": 1}'
    )
    assert status == 400 and "nope" in payload


def test_fault_injection_needs_the_token(vertex):
    fake, _ = vertex
    req = urllib.request.Request(f"{fake.api_url}/v1/tunestack:faults", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401


def test_fault_injection_is_off_by_default(gcs, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    assert Settings().faults is False
    client = TestClient(app.build(Context(Settings(), gcs, "t")), base_url="http://127.0.0.1:8470")
    answer = client.post("/v1/tunestack:faults", json={}, headers={"Authorization": "Bearer t"})
    assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"
