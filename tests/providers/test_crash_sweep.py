"""Kill the provider host at every step of a whole train -> wait -> deploy run, and re-run.

A kill lands right after the API processed a request, before the answer reaches the provider
(SIGKILL, like a machine losing power). The engine's state only keeps what a create returned.
After the re-run there must be exactly one job for the key, one endpoint and one model, and
destroy must leave nothing behind, whatever the kill point was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import LocalVertex
from provider_host import ProviderHost
from test_deployment import deploy_inputs
from test_tuning_job import completion_inputs, job_inputs

from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.jobs import JobCompletionProvider, TuningJobProvider

State = dict[str, tuple[str, dict[str, Any]]]


def up(host: ProviderHost, url: str, state: State) -> None:
    """One `pulumi up`: create what the state does not hold yet, in dependency order."""
    if "job" not in state:
        state["job"] = host.using(TuningJobProvider()).create(job_inputs(url))
    if "done" not in state:
        done = completion_inputs(url, state["job"][0])
        state["done"] = host.using(JobCompletionProvider()).create(done)
    if "deploy" not in state:
        deploy = deploy_inputs(url, gcs_uri=state["done"][1]["final_checkpoint_uri"])
        state["deploy"] = host.using(ModelDeploymentProvider()).create(deploy)


def new_fake(start_vertex: Callable[[], LocalVertex]) -> tuple[LocalVertex, str]:
    fake = start_vertex()
    fake.script = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    fake.deploy_polls = 3
    return fake, fake.url


def kill_at(fake: LocalVertex, host: ProviderHost, n: int) -> None:
    seen = {"n": 0}

    def hook(_kind: str, _path: str) -> None:
        seen["n"] += 1
        if seen["n"] == n:
            fake.hook = None
            host.kill()

    fake.hook = hook


def assert_one_of_each_then_destroy(fake: LocalVertex, state: State, host: ProviderHost) -> None:
    key = state["job"][1]["key"]
    assert len(fake.jobs_with_key(key)) == 1 and len(fake.jobs) == 1
    assert fake.count("POST", "tuningJobs.create") == 1 and fake.count("POST", "deploy") == 1
    endpoint, outs = state["deploy"]
    assert list(fake.endpoints) == [endpoint] and list(fake.models) == [outs["model"]]
    host.using(ModelDeploymentProvider()).delete(endpoint, outs)
    host.using(TuningJobProvider()).delete(*state["job"])
    assert fake.endpoints == {} and fake.models == {}


@pytest.mark.slow
def test_a_kill_at_each_request_of_a_clean_run_then_rerun_converges(
    start_vertex, make_host, shared_host
):
    # How many requests a clean run makes: one kill point per request.
    fake, url = new_fake(start_vertex)
    clean: State = {}
    up(shared_host, url, clean)
    points = len(fake.calls)
    assert points >= 8
    for n in range(1, points + 1):
        fake, url = new_fake(start_vertex)
        state: State = {}
        victim = make_host(TuningJobProvider(), fresh=True)
        kill_at(fake, victim, n)
        with pytest.raises(grpc.RpcError):
            up(victim, url, state)
        victim.close()
        up(shared_host, url, state)  # the re-run
        assert_one_of_each_then_destroy(fake, state, shared_host)


@pytest.mark.slow
def test_killed_again_and_again_each_time_a_step_further(vertex, make_host, shared_host):
    """Attempt i dies at its i-th request; state accumulates like the engine's."""
    fake, url = vertex
    state: State = {}
    kills = 0
    for attempt in range(1, 40):
        host = make_host(TuningJobProvider(), fresh=True)
        kill_at(fake, host, attempt)
        try:
            up(host, url, state)
        except grpc.RpcError:
            kills += 1
            continue
        finally:
            fake.hook = None
            host.close()
        break
    assert kills >= 3
    print(f"sequential kills before convergence: {kills}")
    assert_one_of_each_then_destroy(fake, state, shared_host)
