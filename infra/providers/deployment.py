"""Provider for a deployment of custom weights: a stable endpoint and the model behind it.

Create adopts the endpoint carrying this deployment's key (project, location, endpoint
name) or creates it with ``:deploy``; ``:deploy`` takes no request id and no labels, so the
keys travel in the endpoint and model display names and a create killed mid-deploy adopts
instead of deploying twice. What :mod:`infra.plan.inputs` declares as updates (weights,
machine, accelerators, model name, replicas, canary) is an in-place update of the SAME
endpoint: a new model is uploaded and deployed blue/green, replicas change in place
(:func:`infra.vertex.swaps.converge`). Delete undeploys every model, deletes the endpoint,
then the models, which the SDK's own endpoint delete would leave behind.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from infra import catalog
from infra.plan.inputs import ModelDeploymentArgs, input_names, replacing, required
from infra.plan.keys import deployment_key, model_key
from infra.providers.base import TunestackProvider, inputs_of, known, poll_settings, target_of
from infra.vertex import deployments, swaps

#: Default deadline of a deployment, as the SDK's (2 hours).
DEFAULT_DEPLOY_DEADLINE = 7200.0


class ModelDeploymentProvider(TunestackProvider):
    """Serves HF weights from ``gcs_uri`` on a stable endpoint; records endpoint and model."""

    INPUTS: ClassVar[tuple[str, ...]] = input_names(ModelDeploymentArgs)
    REPLACES: ClassVar[frozenset[str]] = replacing(ModelDeploymentArgs)
    REQUIRED: ClassVar[tuple[str, ...]] = required(ModelDeploymentArgs)
    OUTPUTS: ClassVar[tuple[str, ...]] = (
        "endpoint", "model", "key", "adopted", "model_key", "deployed_model_id",
        "previous_model", "traffic_split",
    )  # fmt: skip

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
        canary = news.get("canary_percent")
        if known(canary) and not 1 <= int(canary) <= 99:
            failures.append(("canary_percent", "canary_percent must be between 1 and 99"))
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
        deadline = float(inputs.get("deadline_seconds") or DEFAULT_DEPLOY_DEADLINE)
        target = target_of(inputs)
        endpoint, _model, adopted = deployments.ensure_endpoint(
            target, inputs, deadline, **poll_settings()
        )
        serving = swaps.converge(target, endpoint, inputs, deadline, **poll_settings())
        return CreateResult(endpoint, self._outputs(inputs, endpoint, serving, adopted))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """The same endpoint serves the new inputs: a model swap (blue/green), a canary split
        or replicas changed in place. A kill at any step converges when re-run."""
        inputs = inputs_of(news, self.INPUTS)
        deadline = float(inputs.get("deadline_seconds") or DEFAULT_DEPLOY_DEADLINE)
        serving = swaps.converge(target_of(inputs), id_, inputs, deadline, **poll_settings())
        return UpdateResult(self._outputs(inputs, id_, serving, bool(olds.get("adopted"))))

    def _outputs(
        self, inputs: dict[str, Any], endpoint: str, serving: swaps.Serving, adopted: bool
    ) -> dict[str, Any]:
        return {
            **inputs,
            "endpoint": endpoint,
            "model": serving.model,
            "key": deployment_key(inputs),
            "adopted": adopted,
            "model_key": model_key(inputs),
            "deployed_model_id": serving.deployed_model_id,
            "previous_model": serving.previous_model,
            "traffic_split": serving.traffic_split,
        }

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
