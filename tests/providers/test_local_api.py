"""The providers against the real local API (`tunestack serve --smoke` + GCS emulator).

A small forwarding proxy sits between the provider host and the API so the test can kill the
host at exact points (right after the API accepted a create or a deploy, before the answer
reaches the provider), which is what the engine sees when a machine dies mid-``up``.
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from fake_google import send_json
from google.cloud import aiplatform_v1beta1 as aip
from provider_host import ProviderHost

from infra.plan.keys import DISPLAY_KEY_LENGTH, label_filter
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider, TuningJobProvider
from infra.vertex.deployments import find_models, get_endpoint, model_exists
from infra.vertex.jobs import get_job, state_name
from infra.vertex.target import Target, client

CHAT = b"".join(
    b'{"messages": [{"role": "user", "content": "say %d"}, {"role": "assistant", "content": "%d"}]}\n'
    % (i, i)
    for i in range(8)
)
POLL = {
    "TUNESTACK_POLL_INITIAL_SECONDS": "0.2",
    "TUNESTACK_POLL_MAX_SECONDS": "1",
    "TUNESTACK_CANCEL_DEADLINE_SECONDS": "120",
    "TUNESTACK_UNDEPLOY_DEADLINE_SECONDS": "120",
}


class Proxy:
    """Forwards to the local API; ``hook(method, path)`` runs after the upstream answered."""

    def __init__(self, upstream: str) -> None:
        self.hook: Callable[[str, str], None] | None = None
        self.calls: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                headers = {
                    k: val
                    for k, val in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                req = urllib.request.Request(
                    upstream + self.path, data=body, method=self.command, headers=headers
                )
                try:
                    with urllib.request.urlopen(req, timeout=120) as resp:
                        status, data = resp.status, resp.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                proxy.calls.append((self.command, self.path))
                if proxy.hook is not None:
                    proxy.hook(self.command, self.path)
                send_json(self, status, data)

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(local_api) -> Iterator[Proxy]:
    p = Proxy(local_api.api_url)
    yield p
    p.close()


@pytest.mark.slow
def test_train_deploy_destroy_with_crashes_against_the_local_api(
    local_api, proxy, tmp_path, monkeypatch
):
    monkeypatch.setenv("TUNESTACK_HOME", str(local_api.home))
    gcs = local_api.storage_client()
    bucket = gcs.lookup_bucket("providers-it") or gcs.create_bucket("providers-it")
    bucket.blob("train.jsonl").upload_from_string(CHAT)
    env = {"TUNESTACK_HOME": str(local_api.home), **POLL}
    hosts: list[ProviderHost] = []

    def host(provider: object) -> ProviderHost:
        h = ProviderHost(provider, env, log=tmp_path / f"host-{len(hosts)}.log")  # type: ignore[arg-type]
        hosts.append(h)
        return h

    def kill_on(h: ProviderHost, method: str, suffix: str) -> None:
        def hook(m: str, path: str) -> None:
            if m == method and path.split("?")[0].endswith(suffix):
                proxy.hook = None
                h.kill()

        proxy.hook = hook

    job = {
        "project": "test-project",
        "location": "us-central1",
        "base_model": "qwen/qwen3@qwen3-4b",
        "custom_base_model": None,
        "tuning_mode": "FULL",
        "epochs": 1,
        "learning_rate": None,
        "learning_rate_multiplier": None,
        "adapter_size": None,
        "train_dataset_uri": "gs://providers-it/train.jsonl",
        "validation_dataset_uri": None,
        "output_uri": "gs://providers-it/out",
        "display_name": "providers-it",
        "labels": {},
        "dataset_identity": f"gen={bucket.get_blob('train.jsonl').generation}",
        "api_endpoint": proxy.url,
    }
    try:
        # 1. Killed after the API accepted the job, before create returned: nothing recorded.
        first = host(TuningJobProvider())
        kill_on(first, "POST", "/tuningJobs")
        with pytest.raises(grpc.RpcError):
            first.create(job)
        # 2. The re-run adopts it.
        second = host(TuningJobProvider())
        job_name, outs = second.create(job)
        assert outs["adopted"] is True
        target = Target("test-project", "us-central1", local_api.api_url)
        listed = client(aip.GenAiTuningServiceClient, target).list_tuning_jobs(
            request={"parent": target.parent, "filter": label_filter(outs["key"])}
        )
        assert [j.name for j in listed] == [job_name]
        # 3. Wait for the real trainer.
        done = {
            "project": "test-project", "location": "us-central1", "job_name": job_name,
            "output_uri": outs["run_uri"], "deadline_seconds": 600, "api_endpoint": proxy.url,
        }  # fmt: skip
        _, completion = second.using(JobCompletionProvider()).create(done)
        assert completion["state"] == "JOB_STATE_SUCCEEDED"
        final = completion["final_checkpoint_uri"]
        # This job version's own prefix under output_uri.
        assert re.fullmatch(r"gs://providers-it/out/[0-9a-f]{16}", outs["run_uri"])
        assert final == f"{outs['run_uri']}/postprocess/node-0/checkpoints/final"
        # One epoch: exactly one intermediate checkpoint, named by its step number.
        (ckpt,) = completion["checkpoint_uris"]
        assert re.fullmatch(
            re.escape(outs["run_uri"]) + r"/postprocess/node-0/checkpoints/checkpoint-\d+", ckpt
        )
        # The recorded checkpoints say which epoch each is (what epoch-N resolves from).
        assert [(c["epoch"], c["uri"]) for c in completion["checkpoints"]] == [
            (1, ckpt),
            (1, final),
        ]
        # 4. Deploy, killed right after :deploy was accepted; the re-run adopts, no orphans.
        dep = {
            "project": "test-project", "location": "us-central1", "gcs_uri": final,
            "machine_type": "g2-standard-12", "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1, "min_replicas": 1, "max_replicas": 1,
            "endpoint_display_name": "providers-it", "model_display_name": "providers-it",
            "deadline_seconds": 600, "api_endpoint": proxy.url,
        }  # fmt: skip
        third = host(ModelDeploymentProvider())
        kill_on(third, "POST", ":deploy")
        with pytest.raises(grpc.RpcError):
            third.create(dep)
        fourth = host(ModelDeploymentProvider())
        endpoint, deployed = fourth.create(dep)
        assert deployed["adopted"] is True and model_exists(target, deployed["model"])
        assert (
            sum(1 for m, p in proxy.calls if m == "POST" and p.split("?")[0].endswith(":deploy"))
            == 1
        )
        tag = f"[ts-{deployed['key'][:DISPLAY_KEY_LENGTH]}]"
        eps = client(aip.EndpointServiceClient, target).list_endpoints(
            request={"parent": target.parent}
        )
        assert [e.name for e in eps if e.display_name.endswith(tag)] == [endpoint]
        assert find_models(target, deployed["key"]) in ([deployed["model"]], [])
        # 5. Refresh sees it; destroy removes endpoint AND model; the job is already terminal.
        assert fourth.read(endpoint, deployed)[0] == endpoint
        fourth.delete(endpoint, deployed)
        assert get_endpoint(target, endpoint) is None and not model_exists(
            target, deployed["model"]
        )
        assert fourth.read(endpoint, deployed)[0] == ""
        second.delete(job_name, outs)
        assert state_name(get_job(target, job_name)) == "JOB_STATE_SUCCEEDED"
    finally:
        proxy.hook = None
        for h in hosts:
            h.close()


@pytest.mark.slow
def test_custom_training_job_runs_the_trainer_through_the_local_api(
    local_api, tmp_path, monkeypatch
):
    """engine trainer_image: our CustomJob's worker pool args drive the real (native) trainer."""
    monkeypatch.setenv("TUNESTACK_HOME", str(local_api.home))
    gcs = local_api.storage_client()
    bucket = gcs.lookup_bucket("providers-custom") or gcs.create_bucket("providers-custom")
    bucket.blob("train.jsonl").upload_from_string(CHAT)
    job = {
        "project": "test-project", "location": "us-central1", "base_model": "qwen/qwen3@qwen3-4b",
        "tuning_mode": "PEFT_ADAPTER", "epochs": 1, "adapter_size": 4,
        "train_dataset_uri": "gs://providers-custom/train.jsonl",
        "output_uri": "gs://providers-custom/out", "display_name": "providers-custom",
        "labels": {}, "dataset_identity": "gen=1", "api_endpoint": local_api.api_url,
        "image_uri": "us-central1-docker.pkg.dev/test-project/tunestack/trainer:abc",
        "replicas": 1, "machine_type": None,
    }  # fmt: skip
    env = {"TUNESTACK_HOME": str(local_api.home), **POLL}
    with ProviderHost(CustomTrainingJobProvider(), env, log=tmp_path / "host.log") as host:
        name, outs = host.create(job)
        assert "/customJobs/" in name and outs["adopted"] is False
        assert host.create(job)[1]["adopted"] is True
        done = {
            "project": "test-project", "location": "us-central1", "job_name": name,
            "output_uri": outs["run_uri"], "deadline_seconds": 600,
            "api_endpoint": local_api.api_url,
        }  # fmt: skip
        _, completion = host.using(JobCompletionProvider()).create(done)
    assert completion["state"] == "JOB_STATE_SUCCEEDED"
    assert completion["final_checkpoint_uri"] == (
        f"{outs['run_uri']}/postprocess/node-0/checkpoints/final"
    )
    assert outs["run_uri"].startswith("gs://providers-custom/out/")
    assert len(completion["checkpoint_uris"]) == 1
