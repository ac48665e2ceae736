"""The deploy operation: weights copied from the emulator and loaded, then the endpoint serves.

Like Vertex, ``:deploy`` answers a running operation at once; a background thread copies the
checkpoint into the local cache and loads it, so a broken checkpoint fails the operation, not
the first prediction. A failed deploy leaves nothing half-deployed behind.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from infra.local import storage
from infra.local.api.context import Context
from infra.local.api.wire import TYPE_PREFIX
from infra.local.state import now

#: google.rpc.Code of a failed deploy.
FAILED_PRECONDITION = 9


def start(ctx: Context, op_id: str, endpoint_id: str, model_id: str) -> None:
    """Finishes a new deploy in the background (or when fault injection says so)."""
    if ctx.faults is not None and ctx.faults.hold_deploy(op_id, endpoint_id, model_id):
        return
    threading.Thread(
        target=finish,
        args=(ctx, op_id, endpoint_id, model_id),
        name=f"deploy-{op_id}",
        daemon=True,
    ).start()


def finish(
    ctx: Context,
    op_id: str,
    endpoint_id: str,
    model_id: str,
    load: bool = True,
    error: str = "",
) -> None:
    """Completes a deploy: the model serves on the endpoint and the operation is done.

    Args:
        ctx: The server.
        op_id: The deploy operation.
        endpoint_id: Its endpoint.
        model_id: Its model.
        load: Copy and load the weights (False only under fault injection).
        error: Fail with this message instead (fault injection).
    """
    model = ctx.store.get("models", model_id)
    endpoint = ctx.store.get("endpoints", endpoint_id)
    assert model is not None and endpoint is not None
    gcs_uri, local_dir = model["internal"]["gcsUri"], Path(model["internal"]["localDir"])
    try:
        if error:
            raise RuntimeError(error)
        if load:
            materialise(ctx, gcs_uri, local_dir)
            # Load now: a broken checkpoint fails the deploy, not the first predict.
            ctx.models.get(local_dir)
    except Exception as e:
        # Vertex reports deploy failures on the operation; nothing half-deployed is left behind.
        ctx.store.delete("endpoints", endpoint_id)
        ctx.store.delete("models", model_id)
        shutil.rmtree(local_dir, ignore_errors=True)
        message = str(e) if error else f"cannot deploy {gcs_uri}: {e}"
        ctx.complete_operation(op_id, error={"code": FAILED_PRECONDITION, "message": message})
        return
    resource = endpoint["resource"]
    config = endpoint["internal"].get("deployConfig", {})
    deployed = {
        "id": model_id,
        "model": model["resource"]["name"],
        "displayName": model["resource"]["displayName"],
        "createTime": now(),
        "modelVersionId": "1",
    }
    if config.get("dedicatedResources"):
        deployed["dedicatedResources"] = config["dedicatedResources"]
    resource["deployedModels"] = [deployed]
    resource["trafficSplit"] = {model_id: 100}
    resource["updateTime"] = now()
    ctx.store.put("endpoints", endpoint_id, resource, {"deployedModel": model_id})
    response = {
        "@type": TYPE_PREFIX + "DeployResponse",
        "endpoint": resource["name"],
        "model": model["resource"]["name"],
    }
    ctx.complete_operation(op_id, response=response)


def tick(ctx: Context) -> None:
    """One API request passed: finishes the deploys fault injection held until now."""
    if ctx.faults is None:
        return
    for op_id, endpoint_id, model_id, error in ctx.faults.tick():
        if ctx.store.get("endpoints", endpoint_id) is None:
            ctx.store.delete("models", model_id)  # endpoint deleted meanwhile: nothing serves
            ctx.complete_operation(
                op_id, error={"code": FAILED_PRECONDITION, "message": "endpoint was deleted"}
            )
            continue
        finish(ctx, op_id, endpoint_id, model_id, load=False, error=error)


def materialise(ctx: Context, gcs_uri: str, local_dir: Path) -> None:
    """Copies a checkpoint from the emulator into ``local_dir`` once (atomically).

    Raises:
        FileNotFoundError: when there are no objects or no ``config.json`` under ``gcs_uri``.
    """
    if (local_dir / "config.json").exists():
        return
    tmp = local_dir.with_name(local_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    count = storage.download_prefix(ctx.gcs, gcs_uri, tmp)
    if count == 0:
        raise FileNotFoundError(f"no objects under {gcs_uri}")
    if not (tmp / "config.json").exists():
        raise FileNotFoundError(
            f"{gcs_uri} has no config.json: custom weights must be in Hugging Face format"
        )
    shutil.rmtree(local_dir, ignore_errors=True)
    os.replace(tmp, local_dir)
