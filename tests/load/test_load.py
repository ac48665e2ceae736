"""YAML loading: positions of every key, duplicate keys, and pydantic errors at the right line."""

from __future__ import annotations

from pathlib import Path

from infra.diagnostics import locate
from infra.load import dotted, load_spec, load_text

GOOD = """\
# a comment
project:
  id: acme-ml-dev
  region: us-central1
buckets:
  - name: acme-ml-dev-tuning
tuning_jobs:
  - name: a
    base_model: meta/llama3_1@llama-3.1-8b
    tuning_mode: FULL
    epochs: 2
    dataset: d
    output_uri: gs://acme-ml-dev-tuning/a
"""


def codes(text: str) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.line, d.column, d.field) for d in load_text(text, "s.yaml").diagnostics]


def test_good_spec_loads_with_positions() -> None:
    loaded = load_text(GOOD, "s.yaml")
    assert loaded.diagnostics == [] and loaded.spec is not None
    assert loaded.spec.tuning_jobs[0].epochs == 2
    assert loaded.positions["project"] == (2, 1)
    assert loaded.positions["project.region"] == (4, 3)
    assert loaded.positions["buckets[0]"] == (6, 5)
    assert loaded.positions["tuning_jobs[0].epochs"] == (11, 5)
    # An unwritten (default) field is located at its nearest written ancestor.
    assert loaded.position("tuning_jobs[0].learning_rate") == (8, 5)
    assert locate(loaded.positions, "nope[3].x") == (1, 1)


def test_dotted() -> None:
    assert dotted(("tuning_jobs", 0, "epochs")) == "tuning_jobs[0].epochs"
    assert dotted(("project",)) == "project"


def test_unknown_field_with_did_you_mean() -> None:
    text = GOOD.replace("    epochs: 2", "    epohcs: 2")
    (d,) = load_text(text, "s.yaml").diagnostics
    assert (d.code, d.line, d.column, d.field) == ("unknown-field", 11, 5, "tuning_jobs[0].epohcs")
    assert "did you mean 'epochs'?" in d.message


def test_unknown_top_level_key_lists_known_keys() -> None:
    (d,) = load_text(GOOD + "zzz: 1\n", "s.yaml").diagnostics
    assert (d.code, d.line) == ("unknown-field", 14)
    assert "known keys" in d.message and "tuning_jobs" in d.message


def test_missing_field_is_located_at_its_parent() -> None:
    text = GOOD.replace("    dataset: d\n", "")
    assert codes(text) == [("missing-field", 8, 5, "tuning_jobs[0].dataset")]


def test_invalid_value_with_literal_suggestion() -> None:
    text = GOOD.replace("tuning_mode: FULL", "tuning_mode: PEFT").replace(
        "epochs: 2", "epochs: many"
    )
    diags = load_text(text, "s.yaml").diagnostics
    assert [(d.code, d.line) for d in diags] == [("invalid-value", 10), ("invalid-value", 11)]
    assert "did you mean 'PEFT_ADAPTER'?" in diags[0].message
    assert "'many'" in diags[1].message


def test_every_error_at_once() -> None:
    text = (
        GOOD.replace("  region: us-central1\n", "  regoin: us-central1\n")
        .replace("epochs: 2", "epochs: 0")
        .replace("  - name: acme-ml-dev-tuning\n", "  - name: acme-ml-dev-tuning\n    nmae: x\n")
    )
    got = {(c, line) for c, line, _, _ in codes(text)}
    assert got == {
        ("missing-field", 2),
        ("unknown-field", 4),
        ("unknown-field", 7),
        ("invalid-value", 12),
    }


def test_duplicate_yaml_key() -> None:
    text = GOOD.replace("    epochs: 2\n", "    epochs: 2\n    epochs: 3\n")
    assert codes(text) == [("duplicate-key", 12, 5, "tuning_jobs[0].epochs")]
    assert "first on line 11" in load_text(text, "s.yaml").diagnostics[0].message


def test_invalid_yaml_points_at_the_problem() -> None:
    (d,) = load_text("project:\n  id: [unclosed\n", "s.yaml").diagnostics
    assert d.code == "invalid-yaml" and d.line >= 2


def test_second_document_and_non_mapping() -> None:
    assert codes(GOOD + "---\nproject: {}\n")[0][:2] == ("invalid-yaml", 15)
    assert codes("- a\n- b\n") == [("invalid-value", 1, 1, "")]
    assert [c for c, *_ in codes("")] == ["missing-field"]


def test_file_errors(tmp_path: Path) -> None:
    missing = load_spec(tmp_path / "nope.yaml")
    assert [d.code for d in missing.diagnostics] == ["file-not-found"] and missing.spec is None
    assert [d.code for d in load_spec(tmp_path).diagnostics] == ["file-unreadable"]
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"project:\n  id: caf\xe9\n")
    (d,) = load_spec(bad).diagnostics
    assert (d.code, d.line, d.column) == ("invalid-encoding", 2, 10)


def test_yaml_scalars_keep_their_types() -> None:
    text = GOOD.replace("  region: us-central1\n", '  region: us-central1\n  number: "0123"\n')
    loaded = load_text(text, "s.yaml")
    assert loaded.spec is not None and loaded.spec.project.number == "0123"
    unquoted = GOOD.replace("  region: us-central1\n", "  region: us-central1\n  number: 123\n")
    (d,) = load_text(unquoted, "s.yaml").diagnostics
    assert (d.code, d.field) == ("invalid-value", "project.number")
