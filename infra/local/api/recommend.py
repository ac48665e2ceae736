"""``POST {parent}:recommendSpec``: the G2 machines that serve a checkpoint, from its size.

As Model Garden answers ``CustomModel.list_deploy_options()``: one recommendation per G2
machine of the catalog whose accelerator memory holds the weights in bf16 and still leaves
:data:`infra.catalog.KV_CACHE_HEADROOM` for the KV cache, smallest first. The local server
has no quota, so every recommendation has it.
"""

from __future__ import annotations

import json

from google.cloud.aiplatform_v1beta1 import types as v1beta1
from starlette.routing import Route

from infra import catalog, gcs
from infra.local.api import validate
from infra.local.api.context import Context
from infra.local.api.routing import PARENT, Call, route
from infra.local.api.wire import Rendered, parse

#: The serving container Model Garden recommends for custom weights.
VLLM_IMAGE = (
    "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"
)
#: Bytes per parameter of the dtypes a checkpoint's config.json names.
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")


def routes() -> list[Route]:
    """recommendSpec."""
    return [route("POST", f"{PARENT}:recommendSpec", recommend_spec)]


def recommend_spec(ctx: Context, call: Call) -> Rendered:
    """``POST {parent}:recommendSpec`` of ``gcsUri`` weights.

    Raises:
        ApiError: 400 INVALID_ARGUMENT without a gs:// URI, 400 FAILED_PRECONDITION when
            there are no weights or no config.json there.
    """
    req = parse(v1beta1.RecommendSpecRequest, call.body)
    uri = req.get("gcsUri", "")
    parsed = gcs.parse(uri)
    if parsed is None:
        raise validate.invalid("gcsUri", f"must be a gs:// URI (got {uri!r})")
    validate.gcs_prefix(ctx.gcs, uri, "gcsUri")
    prefix = parsed.object.rstrip("/") + "/" if parsed.object else ""
    blobs = list(ctx.gcs.list_blobs(parsed.bucket, prefix=prefix))
    config = next((b for b in blobs if b.name == prefix + "config.json"), None)
    if config is None:
        raise validate.invalid(
            "gcsUri", f"{uri} has no config.json (Hugging Face format)", "FAILED_PRECONDITION"
        )
    dtype = _dtype(config.download_as_bytes())
    weight_bytes = sum(b.size or 0 for b in blobs if b.name.endswith(_WEIGHTS))
    bf16_gb = weight_bytes / _DTYPE_BYTES.get(dtype, 2) * 2 / 1e9
    location = call.params["location"]
    recommendations = [
        {
            "region": location,
            "spec": {
                "machineSpec": {
                    "machineType": m.name,
                    "acceleratorType": m.accelerator_type,
                    "acceleratorCount": m.accelerator_count,
                },
                "containerSpec": {"imageUri": VLLM_IMAGE},
            },
            "userQuotaState": "QUOTA_STATE_USER_HAS_QUOTA",
        }
        for m in sorted(catalog.MACHINES.values(), key=_memory)
        if _memory(m) * (1 - catalog.KV_CACHE_HEADROOM) >= bf16_gb
    ]
    return "RecommendSpecResponse", {"baseModel": uri, "recommendations": recommendations}


def _memory(m: catalog.Machine) -> float:
    return catalog.ACCELERATORS[m.accelerator_type].memory_gb * m.accelerator_count


def _dtype(raw: bytes) -> str:
    try:
        config = json.loads(raw)
    except ValueError:
        return "bfloat16"
    if not isinstance(config, dict):
        return "bfloat16"
    nested = config.get("text_config")
    text: dict[str, object] = nested if isinstance(nested, dict) else {}
    return str(
        config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or "bfloat16"
    )
