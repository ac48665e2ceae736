"""Suite-wide isolation: no test touches the user's ~/.tunestack or reaches a model hub."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TUNESTACK_HOME", tempfile.mkdtemp(prefix="tunestack-test-home-"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips ``gpu`` tests where CUDA is absent (they are reported as skipped, never passed)."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class LocalApiHandle:
    """A running ``tunestack serve --smoke`` (see the ``local_api`` fixture).

    Attributes:
        api_url: Base URL of the local Vertex REST API.
        storage_url: The GCS emulator URL (``STORAGE_EMULATOR_HOST``).
        token: Bearer token of the API.
        home: Its ``TUNESTACK_HOME`` (the suite's temporary one).
        pid: Server process id.
    """

    api_url: str
    storage_url: str
    token: str
    home: Path
    pid: int

    def credentials(self) -> Any:
        """google-auth credentials carrying the token (for Google's SDKs)."""
        from google.oauth2.credentials import Credentials

        return Credentials(token=self.token)

    def storage_client(self) -> Any:
        """A google-cloud-storage client of the storage door, sending the token."""
        from infra import gcs

        return gcs.client(endpoint=self.storage_url, token=self.token)


@pytest.fixture(scope="session")
def local_api() -> Iterator[LocalApiHandle]:
    """The GCS emulator + ``tunestack serve --smoke`` on free ports, for the whole session.

    It runs in the suite's temporary ``TUNESTACK_HOME`` (so ``infra.local.home.discover()``
    and ``Target.local()``-style discovery find it) with the real trainer; it is stopped at
    the end of the session.
    """
    from infra.local import daemon

    proc, api = daemon.spawn(["--smoke"], timeout=120)
    try:
        yield LocalApiHandle(
            api.api_url, api.storage_url, api.token, Path(os.environ["TUNESTACK_HOME"]), proc.pid
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
