"""A succeeded job's checkpoints, listed from Cloud Storage (the layout is the catalog's)."""

from __future__ import annotations

import google.auth.exceptions
from google.api_core import exceptions as gexc

from infra import catalog, gcs
from infra.vertex.target import Target


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
    except (gexc.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError, ValueError):
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


def _list_prefixes(target: Target, bucket: str, prefix: str) -> list[str]:
    client = gcs.client(
        target.project, target.resolved_storage_endpoint(), token=target.storage_token()
    )
    it = client.list_blobs(bucket, prefix=prefix, delimiter="/")
    list(it)  # prefixes fill in only once pages are consumed
    return sorted(it.prefixes)
