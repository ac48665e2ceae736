"""Large files are split among worker processes; the result must equal one sequential pass."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from infra import catalog
from infra.checks.dataset import parallel, validate_dataset_file

SCOUT = catalog.model("meta/llama4@llama-4-scout-17b-16e-instruct")


def make(path: Path) -> None:
    rng = random.Random(7)
    lines = []
    for i in range(3000):
        msgs = [
            {"role": "user", "content": f"question {i}: " + "word " * rng.randint(1, 40)},
            {"role": "assistant", "content": "answer"},
        ]
        lines.append(json.dumps({"messages": msgs}))
    for i in range(100, 3000, 37):  # 79 bad lines: over the per-code cap, spread over ranges
        lines[i] = (
            '{"messages": [{"role": "human", "content": "a"}, {"role": "assistant", "content": "b"}]}'
        )
    lines[1500:1560] = ['{"prompt": "p", "completion": "c"}'] * 60  # a mixed-format run
    lines[2000] = ""
    lines[2500] = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "long " * 3000},
                {"role": "assistant", "content": "x"},
            ]
        }
    )
    img = {"type": "image_url", "image_url": {"url": "gs://acme-images/a.jpg"}}
    lines[2700] = json.dumps(
        {
            "messages": [
                {"role": "user", "content": [img, {"type": "text", "text": "?"}]},
                {"role": "assistant", "content": "a mug"},
            ]
        }
    )
    path.write_text("\n".join(lines))  # no final newline


def test_parallel_equals_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jsonl"
    make(path)
    monkeypatch.setenv("TUNESTACK_VALIDATE_WORKERS", "1")
    seq_summary, seq = validate_dataset_file(
        path, display="big.jsonl", model=SCOUT, max_seq_length=2048
    )
    monkeypatch.setenv("TUNESTACK_VALIDATE_WORKERS", "2")
    calls: list[int] = []
    real = parallel.validate_parallel
    monkeypatch.setattr(parallel, "validate_parallel", lambda *a: calls.append(a[3]) or real(*a))
    seen: list[int] = []
    par_summary, par = validate_dataset_file(
        path, display="big.jsonl", model=SCOUT, max_seq_length=2048, progress=seen.append
    )
    assert calls == [2]  # two workers did it
    assert [d.format() for d in par] == [d.format() for d in seq]
    codes = {d.code for d in seq}
    assert {
        "invalid-role",
        "mixed-formats",
        "invalid-json",
        "sequence-too-long",
        "text-examples-dropped",
    } <= codes
    assert any("more line(s) with invalid-role" in d.message for d in seq)
    for f in (
        "examples",
        "tokens",
        "formats",
        "image_buckets",
        "sha256",
        "bytes",
        "text_only_examples",
        "image_examples",
    ):
        assert getattr(par_summary, f) == getattr(seq_summary, f), f
    assert par_summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert seen and seen[-1] == path.stat().st_size


def test_split_cuts_at_line_starts(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(1000)))
    with path.open("rb") as f:
        bounds = parallel.split(f, path.stat().st_size, 8)
    data = path.read_bytes()
    assert bounds[0] == 0 and bounds[-1] == len(data) and bounds == sorted(set(bounds))
    assert all(data[b - 1 : b] == b"\n" for b in bounds[1:-1])
