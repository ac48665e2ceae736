"""Guard: every stable code is asserted by some test of the validator."""

from __future__ import annotations

from pathlib import Path

from infra.diagnostics import CODES

TESTS = Path(__file__).resolve().parents[1]
FILES = [
    *TESTS.glob("checks/*.py"),
    *TESTS.glob("load/*.py"),
    *TESTS.glob("formats/*.py"),
    TESTS / "cli" / "test_validate.py",
]


def test_every_code_is_asserted_somewhere() -> None:
    text = "\n".join(p.read_text() for p in FILES if p.name != Path(__file__).name)
    missing = [c for c in CODES if f'"{c}"' not in text]
    assert not missing, f"codes without a test: {missing}"
