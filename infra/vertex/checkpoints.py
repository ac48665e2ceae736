"""A succeeded job's checkpoints, listed from Cloud Storage (the layout is the catalog's), and
which one an endpoint's ``checkpoint:`` selection names.

Each checkpoint is ``{"epoch", "step", "uri", "eval_loss"}``: epoch and step from the
checkpoint's own metadata (our trainer writes ``tunestack_checkpoint.json`` beside the
weights, with the validation loss measured after that epoch), else from the job's
``tunedModel.checkpoints`` (Vertex's epoch and step), else from the step order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc

from infra import catalog, checkpoint_selection, gcs
from infra.vertex.target import Target

#: Per-checkpoint metadata our trainer writes (``trainer.checkpoint.CHECKPOINT_META``).
CHECKPOINT_META = "tunestack_checkpoint.json"
#: Largest metadata file read (it is a few dozen bytes).
MAX_META_BYTES = 4096
_ERRORS = (gexc.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError, ValueError)


def checkpoint_uris(target: Target, output_uri: str) -> tuple[str, list[str]]:
    """The final checkpoint URI and the per-epoch checkpoint URIs of a succeeded job.

    Per-epoch checkpoints are listed from Cloud Storage (the emulator for a local target) and
    ordered by step number (numbers are ordered but not consecutive).

    Returns:
        ``(final_uri, [checkpoint-N uris...])``; the list is empty when storage can't be listed.
    """
    final = catalog.checkpoint_uri(output_uri, catalog.FINAL_CHECKPOINT)
    try:
        bucket, path = gcs.split(catalog.checkpoints_prefix(output_uri))
        names = _list_prefixes(target, bucket, path + "/")
    except _ERRORS:
        # Listing is a convenience; the final checkpoint's URI is known without it.
        return final, []
    steps = []
    for name in names:
        step = catalog.checkpoint_step(name.rstrip("/").rsplit("/", 1)[-1])
        if step is not None:
            steps.append(step)
    return final, [
        catalog.checkpoint_uri(output_uri, f"{catalog.CHECKPOINT_PREFIX}{n}") for n in sorted(steps)
    ]


def job_checkpoints(
    target: Target, output_uri: str, tuned: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Every checkpoint of a succeeded job as ``{"epoch", "step", "uri", "eval_loss"}``.

    Args:
        target: Where the job's storage is.
        output_uri: The job version's run URI.
        tuned: The job's ``tunedModel.checkpoints`` (``epoch``, ``step``, ``checkpointId``),
            when it has them.

    Returns:
        The per-epoch checkpoints by step, then ``final``; empty when storage can't be listed.
    """
    final, per_epoch = checkpoint_uris(target, output_uri)
    by_step = {int(t.get("step") or 0): t for t in tuned if str(t.get("epoch") or "").isdigit()}
    try:
        client = target.storage_client()
    except _ERRORS:
        client = None  # no storage access: epochs and steps from the job alone
    out: list[dict[str, Any]] = []
    for i, uri in enumerate(per_epoch):
        step = catalog.checkpoint_step(uri.rsplit("/", 1)[-1]) or 0
        epoch = int(by_step[step]["epoch"]) if step in by_step else i + 1
        out.append({"epoch": epoch, "step": step, "uri": uri, "eval_loss": None})
        out[-1].update(_meta(client, uri))
    last = out[-1] if out else {"epoch": 0, "step": 0}
    entry = {"epoch": last["epoch"], "step": last["step"], "uri": final, "eval_loss": None}
    entry.update(_meta(client, final))
    if per_epoch or entry["step"]:
        out.append(entry)
    return out


def resolve_checkpoint(selection: str, checkpoints: list[dict[str, Any]]) -> str:
    """The URI ``selection`` names among what :func:`job_checkpoints` found.

    The rule itself is :func:`infra.checkpoint_selection.resolve_checkpoint` (the one that ``validate``
    checks against); this only tells the ``final`` entry from the per-epoch ones.

    Raises:
        CheckpointNotFound: no such checkpoint, or ``best`` without validation losses.
    """
    suffix = "/" + catalog.FINAL_CHECKPOINT
    finals = [c["uri"] for c in checkpoints if str(c["uri"]).endswith(suffix)]
    kept = [c for c in checkpoints if not str(c["uri"]).endswith(suffix)]
    return checkpoint_selection.resolve_checkpoint(selection, kept, finals[0] if finals else None)


def _meta(client: Any, uri: str) -> dict[str, Any]:
    if client is None:
        return {}
    bucket, path = gcs.split(uri)
    try:
        blob = client.bucket(bucket).blob(f"{path}/{CHECKPOINT_META}")
        raw = json.loads(blob.download_as_bytes(start=0, end=MAX_META_BYTES - 1))
    except (gexc.NotFound, *_ERRORS):
        return {}
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("epoch", "step"):
        if isinstance(raw.get(key), int):
            out[key] = raw[key]
    if isinstance(raw.get("eval_loss"), int | float):
        out["eval_loss"] = float(raw["eval_loss"])
    return out


def _list_prefixes(target: Target, bucket: str, prefix: str) -> list[str]:
    client = target.storage_client()
    it = client.list_blobs(bucket, prefix=prefix, delimiter="/")
    list(it)  # prefixes fill in only once pages are consumed
    return sorted(it.prefixes)
