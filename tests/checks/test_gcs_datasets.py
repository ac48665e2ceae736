"""gs:// dataset files are validated through the local storage emulator when it is configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.checks import validate
from infra.gcs import client as gcs_client

SPEC = """\
project: {id: acme-ml-dev, region: us-central1}
buckets: [{name: acme-data, create: false}, {name: acme-out}]
datasets:
  - name: d
    train: gs://acme-data/train.jsonl
    validation: gs://acme-data/missing.jsonl
tuning_jobs:
  - name: j
    base_model: meta/llama3_1@llama-3.1-8b
    tuning_mode: FULL
    dataset: d
    output_uri: gs://acme-out/j
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    storage = pytest.importorskip("infra.local.storage")
    emu = storage.StorageEmulator(root=tmp_path_factory.mktemp("gcs"), isolation="off")
    emu.start()
    try:
        yield emu, gcs_client(endpoint=emu.url)
    finally:
        emu.stop()


def test_gs_files_are_streamed_through_the_emulator(
    emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    emu, gcs = emulator
    bucket = gcs.create_bucket("acme-data")
    data = (
        b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
        b'{"messages": [{"role": "gpt", "content": "a"}]}\n'
    )
    bucket.blob("train.jsonl").upload_from_string(data)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    r = validate(spec)
    got = {(d.code, d.file, d.line) for d in r.diagnostics}
    assert ("invalid-role", "gs://acme-data/train.jsonl", 2) in got
    assert ("file-not-found", str(spec), 6) in got  # the validation file, located in the spec
    summary = r.files["gs://acme-data/train.jsonl"]
    assert summary.checked and summary.examples == 1 and summary.local_path is None
    assert summary.sha256 is not None and summary.bytes == len(data)
