"""Preview (unknown inputs) through the provider host, and the resource classes under mocks."""

from __future__ import annotations

import asyncio

import pulumi
import pytest
from pulumi.runtime.proto import provider_pb2
from test_deployment import deploy_inputs
from test_tuning_job import job_inputs

from infra.providers import resources as r
from infra.providers.base import UNKNOWN
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.jobs import TuningJobProvider


def test_check_and_diff_tolerate_unknown_preview_values(vertex, make_host):
    _, url = vertex
    host = make_host(TuningJobProvider())
    id_, outs = host.create(job_inputs(url))
    news = job_inputs(url, adapter_size=UNKNOWN, output_uri=UNKNOWN, epochs=UNKNOWN)
    _, failures = host.check(news, outs)
    assert failures == []
    diff = host.diff(id_, outs, news)
    assert set(diff.replaces) == {"adapter_size", "output_uri", "epochs"}
    dep = make_host(ModelDeploymentProvider())
    _, failures = dep.check(deploy_inputs(url, machine_type=UNKNOWN, gcs_uri=UNKNOWN))
    assert failures == []


def test_a_new_provider_pickle_alone_is_not_a_change(vertex, make_host):
    """pulumi/pulumi#12401: __provider differing between runs must not cause updates."""
    _, url = vertex
    host = make_host(TuningJobProvider())
    id_, outs = host.create(job_inputs(url))
    outs["__provider"] = "c29tZXRoaW5nIGVsc2U="  # a different pickle in the old state
    assert host.diff(id_, outs, job_inputs(url)).changes == provider_pb2.DiffResponse.DIFF_NONE


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.registered.append(args)
        outs = dict(args.inputs)
        outs.update(job_name=f"projects/p/locations/l/tuningJobs/{len(self.registered)}", key="k")
        return f"id-{len(self.registered)}", outs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


@pytest.fixture
def mocks():
    m = _Mocks()
    loop = asyncio.new_event_loop()  # set_mocks is process-global: a fresh loop per test
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(m, project="tunestack", stack="test", preview=False)
    yield m
    pulumi.runtime.reset_options()
    asyncio.set_event_loop(None)
    loop.close()


@pulumi.runtime.test
def test_resources_register_their_declared_inputs_with_the_provider(mocks):
    job = r.TuningJob(
        "job",
        r.TuningJobArgs(
            project="p", location="us-central1", base_model="qwen/qwen3@qwen3-4b",
            tuning_mode="FULL", train_dataset_uri="gs://b/t.jsonl", output_uri="gs://b/o",
        ),
    )  # fmt: skip
    done = r.TuningJobCompletion(
        "done",
        r.TuningJobCompletionArgs(
            project="p", location="us-central1", job_name=job.job_name, output_uri="gs://b/o"
        ),
    )

    def check(values):
        job_name, _ = values
        types = [a.typ for a in mocks.registered]
        assert types == [
            "pulumi-python:dynamic/tunestack:TuningJob",
            "pulumi-python:dynamic/tunestack:TuningJobCompletion",
        ]
        inputs = mocks.registered[0].inputs
        # Set inputs (defaults included) are registered with the pickled provider; None ones are
        # not sent at all, which is why providers read every optional input with .get().
        assert {"project", "location", "base_model", "tuning_mode", "train_dataset_uri",
                "output_uri", "epochs", "labels", "__provider"} <= set(inputs)  # fmt: skip
        assert set(inputs) - {"__provider"} <= set(TuningJobProvider.INPUTS)
        assert inputs["epochs"] == 1 and inputs["labels"] == {}
        # The completion received the job's output as its input.
        assert mocks.registered[1].inputs["job_name"] == job_name

    return pulumi.Output.all(job.job_name, done.urn).apply(check)
