"""The plan's change classification agrees with the providers' ``diff``, field by field.

One source: ``infra/plan/inputs.py`` declares each input ``replaces``/``updates``/``redeploys``;
the providers' ``diff`` (what ``pulumi up`` does) and ``plan --diff-against`` both read it.
These tests change every declared input of every ``Args`` type, one at a time, and assert the
two give the same action, so a new input classifies itself correctly in both places.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from infra.plan import changes, inputs
from infra.providers import resources
from infra.providers.agents import ServiceAgentsProvider
from infra.providers.base import TunestackProvider
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.image import TrainerImageProvider
from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider, TuningJobProvider

#: Each resource kind's provider (what the engine's diff calls).
PROVIDERS: dict[str, TunestackProvider] = {
    "ServiceAgents": ServiceAgentsProvider(),
    "TuningJob": TuningJobProvider(),
    "CustomTrainingJob": CustomTrainingJobProvider(),
    "TuningJobCompletion": JobCompletionProvider(),
    "TrainerImage": TrainerImageProvider(),
    "ModelDeployment": ModelDeploymentProvider(),
}

FIELDS = [(kind, f.name) for kind, args in changes.ARGS.items() for f in dataclasses.fields(args)]


def test_every_args_type_and_resource_is_classified() -> None:
    declared = {
        name for name, obj in inspect.getmembers(inputs, inspect.isclass)
        if name.endswith("Args") and dataclasses.is_dataclass(obj)
    }  # fmt: skip
    assert {a.__name__ for a in changes.ARGS.values()} == declared
    dynamic = {
        cls.__name__ for _, cls in inspect.getmembers(resources, inspect.isclass)
        if issubclass(cls, resources.pulumi.dynamic.Resource) and cls.__module__ == resources.__name__
    }  # fmt: skip
    assert set(changes.ARGS) == dynamic == set(PROVIDERS)


def _resource(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": changes.DYNAMIC + kind,
        "name": f"r-{kind}",
        "parent": "p",
        "inputs": values,
        "depends_on": [],
        "protect": False,
    }


def _provider_action(kind: str, olds: dict[str, Any], news: dict[str, Any]) -> str:
    d = PROVIDERS[kind].diff("id", olds, news)
    if not d.changes:
        return "none"
    return "replace" if d.replaces else "update"


@pytest.mark.parametrize(("kind", "field"), FIELDS)
def test_plan_and_provider_diff_agree_on_every_field(kind: str, field: str) -> None:
    args = changes.ARGS[kind]
    olds = {f.name: f"old-{f.name}" for f in dataclasses.fields(args)}
    news = {**olds, field: f"new-{field}"}
    provider = _provider_action(kind, olds, news)
    assert provider in ("replace", "update")
    assert changes.classify(_resource(kind, olds), _resource(kind, news)) == (
        provider,
        [f"inputs.{field}"],
    )
    diff = changes.diff_plans(
        {"resources": [_resource(kind, olds)]}, {"resources": [_resource(kind, news)]}
    )
    assert [(c["name"], c["action"], c["fields"]) for c in diff["changes"]] == [
        (f"r-{kind}", provider, [f"inputs.{field}"])
    ]
    # And the declaration says the same.
    assert (provider == "replace") is (field in inputs.replacing(args))


def test_both_actions_occur_so_the_agreement_test_is_not_vacuous() -> None:
    seen = {(kind, inputs.change_of(changes.ARGS[kind], [field])) for kind, field in FIELDS}
    for kind in ("TuningJob", "ModelDeployment", "TuningJobCompletion", "ServiceAgents"):
        assert {(kind, "replace"), (kind, "update")} <= seen, kind


def test_endpoints_are_never_replaced_for_a_new_model_or_machine() -> None:
    d = inputs.ModelDeploymentArgs
    for field in ("gcs_uri", "machine_type", "accelerator_type", "accelerator_count"):
        assert inputs.change_of(d, [field]) == "update"
        assert field in inputs.redeploying(d)
    for field in ("min_replicas", "max_replicas", "canary_percent", "deadline_seconds"):
        assert inputs.change_of(d, [field]) == "update"
        assert field not in inputs.redeploying(d)
    assert inputs.change_of(d, ["endpoint_display_name"]) == "replace"
    assert inputs.change_of(inputs.TuningJobArgs, ["epochs"]) == "replace"
    assert inputs.change_of(inputs.TuningJobArgs, ["labels"]) == "update"
    assert inputs.change_of(inputs.TuningJobArgs, []) == "none"


def test_equal_numbers_and_uncompared_inputs_are_no_change() -> None:
    job = _resource("TuningJob", {"epochs": 2, "labels": {"a": 1}})
    same = _resource("TuningJob", {"epochs": 2.0, "labels": {"a": 1.0}})
    assert changes.classify(job, same) == ("none", [])
    obj = {
        "type": "gcp:storage/bucketObject:BucketObject",
        "name": "o",
        "parent": "storage",
        "inputs": {"name": "x/abc/train.jsonl", "source": {"fileAsset": "/a/train.jsonl"}},
        "depends_on": [],
        "protect": False,
    }
    moved = {**obj, "inputs": {**obj["inputs"], "source": {"fileAsset": "/b/train.jsonl"}}}
    assert changes.classify(obj, moved) == ("none", [])


@pytest.mark.parametrize(
    ("type_", "field", "action"),
    [
        ("gcp:storage/bucket:Bucket", "location", "replace"),
        ("gcp:storage/bucket:Bucket", "labels", "update"),
        ("gcp:storage/bucket:Bucket", "versioning", "update"),
        ("gcp:storage/bucketIAMMember:BucketIAMMember", "role", "replace"),
        ("gcp:storage/bucketObject:BucketObject", "name", "replace"),
        ("gcp:organizations/project:Project", "billingAccount", "update"),
        ("gcp:organizations/project:Project", "projectId", "replace"),
        ("gcp:artifactregistry/repository:Repository", "description", "update"),
        ("gcp:unknown/thing:Thing", "anything", "replace"),
    ],
)
def test_pulumi_gcp_inputs(type_: str, field: str, action: str) -> None:
    old = {"type": type_, "name": "x", "parent": "p", "inputs": {field: "a"}, "protect": False}
    new = {**old, "inputs": {field: "b"}}
    assert changes.classify(old, new) == (action, [f"inputs.{field}"])


def test_new_parent_or_type_replaces_and_protect_updates() -> None:
    r = _resource("TuningJob", {"epochs": 1})
    assert changes.classify(r, {**r, "parent": "other"}) == ("replace", ["parent"])
    assert changes.classify(r, {**r, "protect": True}) == ("update", ["protect"])


def test_a_replaced_job_updates_its_endpoint_through_its_completion() -> None:
    job = _resource("TuningJob", {"epochs": 2})
    done = {**_resource("TuningJobCompletion", {"job_name": "j"}), "depends_on": [job["name"]]}
    ep = {**_resource("ModelDeployment", {"gcs_uri": "u"}), "depends_on": [done["name"]]}
    other = {**_resource("ModelDeployment", {"gcs_uri": "v"}), "name": "unrelated"}
    old = {"resources": [job, done, ep, other]}
    new = {"resources": [{**job, "inputs": {"epochs": 3}}, done, ep, other]}
    got = {c["name"]: c for c in changes.diff_plans(old, new)["changes"]}
    assert [(n, c["action"], c["fields"]) for n, c in got.items()] == [
        ("r-TuningJob", "replace", ["inputs.epochs"]),
        ("r-TuningJobCompletion", "replace", ["inputs.job_name"]),
        ("r-ModelDeployment", "update", ["inputs.gcs_uri"]),
    ]
    assert "because r-TuningJob is replaced" in got["r-ModelDeployment"]["effects"]
    assert any("redeploys blue/green" in e for e in got["r-ModelDeployment"]["effects"])
    assert any("NEW BILLED" in e for e in got["r-TuningJob"]["effects"])
