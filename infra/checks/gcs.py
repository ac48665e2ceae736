"""Reading gs:// dataset files when Cloud Storage is reachable without credentials.

Validation must not need a cloud account, so gs:// files are read only through the local
emulator (``STORAGE_EMULATOR_HOST``, which google-cloud-storage honours). Anywhere else they
are skipped: the spec-level URI checks still apply and Vertex reads the real file later.
"""

from __future__ import annotations

import os
from typing import IO

from infra import gcs

_TIMEOUT_S = 10


class Unreachable(Exception):
    """No emulator is configured, or it does not answer: the file cannot be checked."""


def open_blob(uri: str) -> tuple[IO[bytes], int] | None:
    """Opens ``gs://bucket/object`` for streaming reads through the emulator.

    Returns:
        The binary stream and the object's size, or None when the emulator says the object
        does not exist.

    Raises:
        Unreachable: when no emulator is configured or it cannot be asked.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        raise Unreachable("STORAGE_EMULATOR_HOST is not set")
    # Imported here, not at the top: google-cloud-storage takes ~0.3 s to import and only
    # specs with gs:// datasets under the emulator need it.
    from google.api_core import exceptions as gexc  # noqa: PLC0415

    try:
        bucket, name = gcs.split(uri)
        client = gcs.client(os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), emulator)
        blob = client.bucket(bucket).get_blob(name, timeout=_TIMEOUT_S)
    except gexc.NotFound:
        return None
    except Exception as e:  # noqa: BLE001 - any transport failure means "not reachable"
        raise Unreachable(str(e)) from None
    if blob is None:
        return None
    return blob.open("rb", chunk_size=8 << 20), int(blob.size or 0)
