"""Reading gs:// dataset files when Cloud Storage is reachable without credentials.

Validation must not need a cloud account, so gs:// files are read only through the local
emulator (``STORAGE_EMULATOR_HOST``, which google-cloud-storage honours). Anywhere else they
are skipped: the spec-level URI checks still apply and Vertex reads the real file later.
"""

from __future__ import annotations

import os
from typing import IO, Final

#: Returned by :func:`open_blob` when no emulator is configured or it does not answer.
UNREACHABLE: Final = object()
_TIMEOUT_S = 10


def open_blob(uri: str) -> IO[bytes] | None | object:
    """Opens ``gs://bucket/object`` for streaming reads through the emulator.

    Returns:
        A binary stream (with a ``size`` attribute) when the object exists, None when the
        emulator says it does not exist, :data:`UNREACHABLE` when it cannot be asked.
    """
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        return UNREACHABLE
    # Imported here, not at the top: google-cloud-storage takes ~0.3 s to import and only
    # specs with gs:// datasets under the emulator need it.
    from google.api_core import exceptions as gexc  # noqa: PLC0415
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
    from google.cloud import storage  # noqa: PLC0415

    bucket, _, name = uri[5:].partition("/")
    try:
        client = storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
            credentials=AnonymousCredentials(),
        )
        blob = client.bucket(bucket).get_blob(name, timeout=_TIMEOUT_S)
    except gexc.NotFound:
        return None
    except Exception:  # noqa: BLE001 - any transport failure means "not reachable": skip the file
        return UNREACHABLE
    if blob is None:
        return None
    stream = blob.open("rb", chunk_size=8 << 20)
    stream.size = blob.size  # type: ignore[attr-defined]
    return stream
