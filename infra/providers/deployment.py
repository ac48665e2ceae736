"""Provider for a Model Garden deployment of custom weights: one endpoint AND one model.

``:deploy`` takes no request id and no labels, so the deployment's key travels in the
endpoint and model display names: a create killed mid-deploy is re-run, finds the endpoint by
key and waits for it instead of deploying twice. Delete undeploys, deletes the endpoint, then
deletes the model, which the SDK's own endpoint delete would leave behind.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pulumi.dynamic import CreateResult, ReadResult

from infra import catalog
from infra.plan.inputs import ModelDeploymentArgs, input_names, replacing, required
from infra.providers.base import TunestackProvider, inputs_of, known, poll_settings, target_of
from infra.vertex import deployments
from infra.vertex.keys import deployment_key

#: Default deadline of a deployment, as the SDK's (2 hours).
DEFAULT_DEPLOY_DEADLINE = 7200.0

#: Inputs left out of the deployment key.
_UNKEYED = frozenset({"api_endpoint", "deadline_seconds", "canary_percent"})


class ModelDeploymentProvider(TunestackProvider):
    """Deploys HF weights from ``gcs_uri`` to a new endpoint; records endpoint and model."""

    INPUTS: ClassVar[tuple[str, ...]] = input_names(ModelDeploymentArgs)
    REPLACES: ClassVar[frozenset[str]] = replacing(ModelDeploymentArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(ModelDeploymentArgs)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("endpoint", "model", "key", "adopted")

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        failures = []
        uri = news.get("gcs_uri")
        if known(uri) and not str(uri).startswith("gs://"):
            failures.append(("gcs_uri", "gcs_uri must be a gs:// URI of Hugging Face weights"))
        mt, at, ac = (
            news.get(k) for k in ("machine_type", "accelerator_type", "accelerator_count")
        )
        if known(mt) and mt in catalog.MACHINES:
            machine = catalog.MACHINES[mt]
            if known(at) and at != machine.accelerator_type:
                failures.append(("accelerator_type", f"{mt} carries {machine.accelerator_type}"))
            if known(ac) and int(ac) != machine.accelerator_count:
                failures.append(
                    ("accelerator_count", f"{mt} has {machine.accelerator_count} accelerator(s)")
                )
        lo, hi = news.get("min_replicas"), news.get("max_replicas")
        if known(lo) and known(hi) and int(hi) < int(lo):
            failures.append(("max_replicas", "max_replicas must be >= min_replicas"))
        return failures

    def check(self, olds: dict[str, Any], news: dict[str, Any]):  # type: ignore[override]
        # Defaults filled here so diff and the key see one normal form.
        news = dict(news)
        machine_type = news.get("machine_type")
        machine = catalog.MACHINES.get(machine_type) if isinstance(machine_type, str) else None
        news.setdefault("accelerator_type", None)
        news.setdefault("accelerator_count", None)
        if news.get("accelerator_type") is None and machine:
            news["accelerator_type"] = machine.accelerator_type
        if news.get("accelerator_count") is None and machine:
            news["accelerator_count"] = machine.accelerator_count
        for name in ("min_replicas", "max_replicas"):
            if news.get(name) is None:
                news[name] = 1
        return super().check(olds, news)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        # The key: what the deployment serves and on what; not where the API is, how long to
        # wait or how traffic is split.
        key_inputs = {k: v for k, v in inputs.items() if k not in _UNKEYED}
        deadline = float(inputs.get("deadline_seconds") or DEFAULT_DEPLOY_DEADLINE)
        endpoint, model, adopted = deployments.ensure_deployment(
            target_of(inputs), key_inputs, deadline, **poll_settings()
        )
        outs = {
            **inputs,
            "endpoint": endpoint,
            "model": model,
            "key": deployment_key(key_inputs),
            "adopted": adopted,
        }
        return CreateResult(endpoint, outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """An endpoint deleted outside Pulumi leaves state (the next ``up`` deploys again)."""
        target = target_of(props)
        ep = deployments.get_endpoint(target, id_)
        if ep is None:
            return ReadResult("", {})
        outs = {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)}
        model = deployments.deployed_model(ep)
        if model:
            outs["model"] = model
        return ReadResult(id_, outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        target = target_of(props)
        deadline = float(os.environ.get("TUNESTACK_UNDEPLOY_DEADLINE_SECONDS", "1800"))
        deployments.undeploy_and_delete(
            target, id_, props.get("model"), deadline, **poll_settings()
        )
        # Anything else carrying this deployment's key is an orphan of an interrupted run.
        if props.get("key"):
            deployments.delete_deployment_by_key(target, props["key"], deadline, **poll_settings())
