"""``POST {parent}/models:upload``: a model resource for weights in the emulator.

What a blue/green swap uploads: the new weights (``artifactUri``) with the first model's
``containerSpec``. The weights are copied and loaded only when the model is deployed
(``:deployModel``), as on Vertex. Model versions (``parentModel``) are not supported.
"""

from __future__ import annotations

import re

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra import gcs
from infra.local import home
from infra.local.api.context import Context
from infra.local.api.errors import ApiError
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import TYPE_PREFIX, Rendered, parse
from infra.local.state import now

#: A user-chosen model id (Vertex: 5-63 characters, lowercase, digits and hyphens).
MODEL_ID = re.compile(r"[a-z][a-z0-9-]{4,62}")
#: Longest display name Vertex accepts.
MAX_DISPLAY_NAME = 128


def routes() -> list[Route]:
    """models:upload."""
    return [route("POST", f"{PARENT}/models:upload", upload_model)]


def upload_model(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}/models:upload``: a done operation answering ``UploadModelResponse``.

    Raises:
        ApiError: 400 without a display name or a gs:// ``artifactUri``, on a bad or taken
            ``modelId``; 501 for ``parentModel`` (versions).
    """
    req = parse(v1beta1.UploadModelRequest, call.body)
    model = req.get("model") or {}
    if req.get("parentModel"):
        raise ApiError(
            501, "models:upload with parentModel (model versions) is not implemented locally"
        )
    display = str(model.get("displayName", ""))
    if not display or len(display) > MAX_DISPLAY_NAME:
        raise ApiError(
            400, f"model.display_name is required (at most {MAX_DISPLAY_NAME} characters)"
        )
    uri = str(model.get("artifactUri", ""))
    if gcs.parse(uri) is None:
        raise ApiError(400, "model.artifact_uri must be a gs:// URI of Hugging Face weights")
    model_id = str(req.get("modelId") or "") or ctx.store.new_id()
    if req.get("modelId") and not MODEL_ID.fullmatch(model_id):
        raise ApiError(400, f"model_id {model_id!r}: 5-63 lowercase letters, digits or hyphens")
    stamp = now()
    resource = {
        **{k: v for k, v in model.items() if k in ("displayName", "description", "artifactUri",
                                                   "containerSpec", "labels")},
        "name": f"{call.parent}/models/{model_id}",
        "versionId": "1",
        "createTime": stamp,
        "updateTime": stamp,
        "versionCreateTime": stamp,
        "versionUpdateTime": stamp,
    }  # fmt: skip
    local_dir = home.local_dir() / "cache" / "models" / model_id
    with ctx.store.lock:
        if ctx.store.get("models", model_id) is not None:
            raise ApiError(409, f"Model {resource['name']} already exists", "ALREADY_EXISTS")
        ctx.store.put("models", model_id, resource, {"gcsUri": uri, "localDir": str(local_dir)})
    return ctx.done_operation(
        call.parent,
        "UploadModelOperationMetadata",
        {
            "@type": TYPE_PREFIX + "UploadModelResponse",
            "model": resource["name"],
            "modelVersionId": "1",
        },
    )
