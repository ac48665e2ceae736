"""Bucket parity of ``up``/``down --local`` with the cloud, on the real local server.

``create: false`` buckets are adopted, never created or deleted: ``up`` fails before
uploading anything when one is missing; ``down --delete-buckets`` keeps them, and refuses
``protect: true`` buckets unless ``--force`` is given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import gcs
from tests.local.conftest import ENTRY

TRAIN = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
)
SPEC = """\
project:
  id: tunestack-buckets
  region: us-central1
buckets:
  - name: ts-managed
  - name: ts-adopted
    create: false
  - name: ts-protected
    protect: true
datasets:
  - name: chat
    train: data/train.jsonl
    bucket: ts-managed
  - name: other
    train: data/other.jsonl
    bucket: ts-protected
"""


def _tunestack(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNESTACK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text(TRAIN)
    (tmp_path / "data" / "other.jsonl").write_text(TRAIN.replace("Hello", "Hello there"))
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A tunestack home; the background server ``up`` starts there is stopped afterwards."""
    home = tmp_path / "home"
    try:
        yield home
    finally:
        _tunestack(home, "serve", "--stop", timeout=60)


def _storage(home: Path):  # noqa: ANN202 - a storage.Client
    info = json.loads((home / "local" / "api.json").read_text())
    return gcs.client(
        "tunestack-buckets",
        info["storage_url"],
        token=(home / "local" / "token").read_text().strip(),
    )


def _buckets(home: Path) -> set[str]:
    return {b.name for b in _storage(home).list_buckets()}


def _objects(home: Path, bucket: str) -> list[str]:
    return [b.name for b in _storage(home).list_blobs(bucket)]


@pytest.mark.slow
def test_up_fails_before_uploading_when_an_adopted_bucket_is_missing(
    spec: Path, home: Path
) -> None:
    result = _tunestack(home, "up", str(spec), "--local", "--no-predict")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: gs://ts-adopted does not exist in the emulator")
    assert "create: false" in lines[0] and "nothing was uploaded" in lines[0]
    assert _buckets(home) == set()  # not even the managed buckets were created

    _storage(home).create_bucket("ts-adopted")  # the existing bucket, made outside tunestack
    result = _tunestack(home, "up", str(spec), "--local", "--no-predict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _buckets(home) == {"ts-managed", "ts-adopted", "ts-protected"}
    assert "+ bucket gs://ts-adopted" not in result.stdout
    assert len(_objects(home, "ts-managed")) == 1 and len(_objects(home, "ts-protected")) == 1


@pytest.mark.slow
def test_down_delete_buckets_keeps_adopted_and_refuses_protected_without_force(
    spec: Path, home: Path
) -> None:
    # The server is started by a first `up` (which fails: the adopted bucket is missing).
    assert _tunestack(home, "up", str(spec), "--local", "--no-predict").returncode == 1
    storage = _storage(home)
    storage.create_bucket("ts-adopted")
    storage.bucket("ts-adopted").blob("keep/me.txt").upload_from_string("theirs")
    assert _tunestack(home, "up", str(spec), "--local", "--no-predict").returncode == 0

    refused = _tunestack(home, "down", str(spec), "--local", "--delete-buckets")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "gs://ts-protected: protect: true" in line and "--force" in line
    assert "nothing was removed" in line
    assert _buckets(home) == {"ts-managed", "ts-adopted", "ts-protected"}
    assert len(_objects(home, "ts-protected")) == 1

    usage = _tunestack(home, "down", str(spec), "--local", "--force")
    assert usage.returncode == 2 and "--force only applies with --delete-buckets" in usage.stderr

    forced = _tunestack(home, "down", str(spec), "--local", "--delete-buckets", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "bucket ts-managed deleted" in forced.stdout
    assert "bucket ts-protected deleted (protected; --force)" in forced.stdout
    assert "bucket gs://ts-adopted kept: create: false" in forced.stdout
    # The server stopped (nothing left on it): look at the adopted bucket's files directly.
    gcs_dir = home / "local" / "gcs"
    assert (gcs_dir / "ts-adopted").is_dir() and not (gcs_dir / "ts-managed").exists()
    assert not (gcs_dir / "ts-protected").exists()
    assert any(p.name == "me.txt" for p in (gcs_dir / "ts-adopted").rglob("*"))
