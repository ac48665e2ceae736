"""The one diagnostic reporter: located by field path, or at an explicit line and column."""

from __future__ import annotations

import pytest

from infra.diagnostics import Diagnostic, Reporter, locate

POSITIONS = {"": (1, 1), "project": (2, 1), "project.region": (4, 3)}


def test_fields_are_located_through_the_positions_map() -> None:
    r = Reporter("s.yaml", POSITIONS)
    r.error("invalid-value", "project.region", "bad")
    r.warning("kv-cache-headroom", "project.labels.team", "close")  # unwritten: its parent
    assert r.diagnostics == [
        Diagnostic("error", "invalid-value", "s.yaml", 4, 3, "project.region", "bad"),
        Diagnostic("warning", "kv-cache-headroom", "s.yaml", 2, 1, "project.labels.team", "close"),
    ]
    assert locate(POSITIONS, "nope[3].x") == (1, 1)


def test_explicit_positions_and_files_without_a_map() -> None:
    r = Reporter("data.jsonl")
    r.add("error", "invalid-json", "", "not JSON", line=7, column=12)
    r.add("warning", "sequence-too-long", "messages[1]", "long", line=9)
    r.error("empty-dataset", "", "empty")  # no map, no line: unknown (0:0)
    assert [(d.severity, d.line, d.column) for d in r.diagnostics] == [
        ("error", 7, 12),
        ("warning", 9, 0),
        ("error", 0, 0),
    ]
    assert r.diagnostics[0].format() == "data.jsonl:7:12: error[invalid-json]: not JSON"


def test_make_builds_without_recording_and_append_is_the_hook() -> None:
    class Capped(Reporter):
        def append(self, diagnostic: Diagnostic) -> None:
            if not self.diagnostics:
                super().append(diagnostic)

    r = Capped("s.yaml", POSITIONS)
    d = r.make("error", "invalid-value", "project", "x")
    assert (d.line, d.column) == (2, 1) and r.diagnostics == []
    r.error("invalid-value", "project", "x")
    r.error("invalid-value", "project", "y")
    assert [d.message for d in r.diagnostics] == ["x"]
    with pytest.raises(ValueError, match="unknown diagnostic code"):
        r.error("no-such-code", "", "")
