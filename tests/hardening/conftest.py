"""One smoke server (fake trainer) for the hardening tests, in its own home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.local.conftest import Server, fake_trainer_env, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``tunestack serve --smoke`` with the fake trainer, shared by one module."""
    srv = start_server(tmp_path_factory.mktemp("home"), ["--smoke"], fake_trainer_env())
    try:
        yield srv
    finally:
        srv.stop()
