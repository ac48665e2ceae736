"""Input limits of the loader: alias bombs, deep nesting, huge files and values, strict types.

Each test uses the exact input of issue 14's findings.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.diagnostics import MAX_MESSAGE_CHARS, MAX_VALUE_CHARS
from infra.load import MAX_SPEC_BYTES, MAX_YAML_DEPTH, load_spec, load_text

from .test_load import GOOD


def alias_bomb(levels: int = 9) -> str:
    """The classic billion laughs: each level is a list of ten aliases of the previous one."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nproject: *a{levels - 1}\n"


def first(text: str) -> tuple[str, int, str]:
    d = load_text(text, "s.yaml").diagnostics[0]
    return d.code, d.line, d.message


def test_alias_bomb_fails_fast_with_bounded_memory() -> None:
    bomb = alias_bomb(9)
    assert len(bomb) < 600
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    code, _, message = first(bomb)
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert code == "spec-too-large" and "alias" in message
    assert elapsed < 1.0 and grown_mb < 100


@pytest.mark.parametrize("kind", ["mapping", "flow-sequence", "block-sequence"])
def test_500_deep_nesting_is_a_diagnostic(kind: str) -> None:
    if kind == "mapping":
        text = "".join(" " * i + f"k{i}:\n" for i in range(500)) + " " * 500 + "x: 1\n"
    elif kind == "flow-sequence":
        text = "project: " + "[" * 500 + "]" * 500 + "\n"
    else:
        text = "".join(" " * (2 * i) + "-\n" for i in range(500))
    code, line, message = first(text)
    assert code == "nesting-too-deep" and line > 0
    assert str(MAX_YAML_DEPTH) in message


def test_deep_nesting_through_aliases_is_refused() -> None:
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 40)]
    code, _, _ = first("\n".join(lines) + "\nproject: *a39\n")
    assert code == "nesting-too-deep"


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(GOOD + "# " + "x" * MAX_SPEC_BYTES + "\n")
    (d,) = load_spec(spec).diagnostics
    assert d.code == "spec-too-large" and str(MAX_SPEC_BYTES) in d.message


def test_long_value_is_truncated_in_the_message() -> None:
    value = "y" * 500_000  # under the file limit; the 50 MB value is refused above
    text = GOOD.replace("tuning_mode: FULL", f"tuning_mode: {value}")
    out = "\n".join(d.format() for d in load_text(text, "s.yaml").diagnostics)
    assert "..." in out and len(out) < 2 * MAX_MESSAGE_CHARS
    unknown = GOOD + "z" * 1000 + ": 1\n"  # YAML keys are at most 1024 characters
    (d,) = load_text(unknown, "s.yaml").diagnostics
    assert d.code == "unknown-field" and len(d.message) < 3 * MAX_VALUE_CHARS


@pytest.mark.parametrize(
    "value", ["true", "99999999999999999999999", "1000000000", "2.0", "'2'", "0", "-1"]
)
def test_epochs_must_be_a_bounded_integer(value: str) -> None:
    text = GOOD.replace("epochs: 2", f"epochs: {value}")
    (d,) = load_text(text, "s.yaml").diagnostics
    assert (d.code, d.line, d.field) == ("invalid-value", 11, "tuning_jobs[0].epochs")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("adapter_size", "true"),
        ("adapter_size", "64"),
        ("learning_rate", "10.0"),
        ("learning_rate", ".nan"),
        ("learning_rate", ".inf"),
        ("learning_rate_multiplier", "1000"),
        ("replicas", "0"),
        ("replicas", "1.0"),
    ],
)
def test_numbers_are_typed_and_ranged(key: str, value: str) -> None:
    text = GOOD.replace("epochs: 2", f"epochs: 2\n    {key}: {value}")
    codes = [(d.code, d.field) for d in load_text(text, "s.yaml").diagnostics]
    assert codes == [("invalid-value", f"tuning_jobs[0].{key}")]


def test_fifo_spec_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(load_spec(fifo)), daemon=True)
    thread.start()
    thread.join(5)
    assert result, "load_spec blocked on a FIFO"
    (d,) = result[0].diagnostics  # type: ignore[attr-defined]
    assert d.code == "file-unreadable" and "not a regular file" in d.message


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_spec_is_refused() -> None:
    (d,) = load_spec("/dev/zero").diagnostics
    assert d.code == "file-unreadable" and "not a regular file" in d.message


def test_recursion_limit_untouched() -> None:
    assert sys.getrecursionlimit() <= 10_000
