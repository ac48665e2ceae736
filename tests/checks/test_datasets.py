"""Every item of the bad-input catalogue (docs/reliability.md), one fixture each, with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import catalog
from infra.checks import validate_dataset_file
from infra.diagnostics import Diagnostic

DATA = Path(__file__).resolve().parents[1] / "data" / "datasets"
LLAMA = catalog.model("meta/llama3_1@llama-3.1-8b-instruct")
SCOUT = catalog.model("meta/llama4@llama-4-scout-17b-16e-instruct")


def check(
    name: str, model: catalog.Model | None = LLAMA, max_seq: int | None = 8192
) -> list[Diagnostic]:
    _, diags = validate_dataset_file(DATA / name, display=name, model=model, max_seq_length=max_seq)
    return diags


def found(diags: list[Diagnostic]) -> set[tuple[str, int]]:
    return {(d.code, d.line) for d in diags}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bom.jsonl", {("invalid-encoding", 1)}),
        ("invalid-utf8.jsonl", {("invalid-encoding", 2)}),
        ("lone-surrogate.jsonl", {("invalid-encoding", 3)}),
        ("nan.jsonl", {("non-finite-number", 2)}),
        ("infinity.jsonl", {("non-finite-number", 1)}),
        ("duplicate-key.jsonl", {("duplicate-key", 2)}),
        ("empty.jsonl", {("empty-dataset", 1)}),
        ("blank-lines.jsonl", {("invalid-json", 2), ("invalid-json", 4)}),
        ("top-level-array.jsonl", {("not-an-object", 1)}),
        ("pretty-printed.jsonl", {("invalid-json", 1), ("invalid-json", 2)}),
        ("not-an-object.jsonl", {("not-an-object", 2), ("not-an-object", 3), ("not-an-object", 4)}),
        ("trailing-comma.jsonl", {("invalid-json", 2)}),
        ("unknown-format.jsonl", {("unknown-format", 1)}),
        ("mixed-formats.jsonl", {("mixed-formats", 2)}),
        ("invalid-role.jsonl", {("invalid-role", 1), ("invalid-role", 2)}),
        ("role-order.jsonl", {("role-order", 1), ("role-order", 2), ("role-order", 3)}),
        ("missing-assistant.jsonl", {("missing-assistant-turn", 1)}),
        ("empty-content.jsonl", {("empty-content", 2), ("empty-content", 3)}),
        ("images-text-model.jsonl", {("images-not-supported", 1)}),
        (
            "unsupported-image-type.jsonl",
            {("unsupported-image-type", 1), ("unsupported-image-type", 2)},
        ),
        ("http-image.jsonl", {("invalid-image-uri", 1)}),
        ("invalid-base64.jsonl", {("invalid-base64", 1), ("invalid-base64", 2)}),
    ],
)
def test_bad_input_is_reported_at_its_line(name: str, expected: set[tuple[str, int]]) -> None:
    diags = check(name)
    assert expected <= found(diags), [d.format() for d in diags]
    assert all(d.file == name and d.severity in ("error", "warning") for d in diags)


def test_errors_name_the_field_inside_the_example() -> None:
    diags = check("invalid-role.jsonl")
    fields = {(d.line, d.field) for d in diags if d.code == "invalid-role"}
    assert (1, "messages[0].role") in fields
    assert (2, "contents[1].role") in fields
    msgs = " ".join(d.message for d in diags)
    assert "did you mean 'user'?" in msgs and "did you mean 'assistant'?" in msgs


def test_every_bad_line_of_one_file_is_reported_in_one_run() -> None:
    diags = check("role-order.jsonl")
    assert sorted({d.line for d in diags if d.code == "role-order"}) == [1, 2, 3]
    assert "system message must come first" in diags[0].message


def test_pretty_printed_json_is_explained() -> None:
    diags = check("pretty-printed.jsonl")
    assert "pretty-printed" in diags[0].message
    assert diags[0].line == 1


def test_lone_surrogate_is_an_encoding_error_not_json() -> None:
    diags = check("lone-surrogate.jsonl")
    assert [d.code for d in diags] == ["invalid-encoding"]
    assert "\\ud83d" in diags[0].message
    assert diags[0].column > 1


def test_invalid_utf8_column_points_at_the_byte() -> None:
    (d,) = check("invalid-utf8.jsonl")
    raw = (DATA / "invalid-utf8.jsonl").read_bytes().split(b"\n")[1]
    assert raw[d.column - 1] == 0xE9


def test_llama4_text_examples_dropped_warning_counts() -> None:
    diags = check("llama4-mixed.jsonl", model=SCOUT, max_seq=SCOUT.max_seq_length)
    (d,) = [d for d in diags if d.code == "text-examples-dropped"]
    assert d.severity == "warning"
    assert d.line == 2  # the first text-only example
    assert "2 of 4 examples are text-only" in d.message and "2 have images" in d.message


def test_images_are_fine_for_llama4_and_their_buckets_are_collected() -> None:
    summary, diags = validate_dataset_file(
        DATA / "images-text-model.jsonl", display="x", model=SCOUT, max_seq_length=2048
    )
    assert not diags
    assert summary.image_buckets == ["acme-images"]
    assert summary.image_examples == 1 and summary.formats == ["multimodal_chat"]


def test_sequence_too_long_is_a_warning_when_estimated() -> None:
    diags = check("long-example.jsonl", max_seq=2048)
    (d,) = diags
    assert (d.code, d.line, d.severity) == ("sequence-too-long", 2, "warning")
    assert "estimated" in d.message
    assert not check("long-example.jsonl", max_seq=8192)


def test_missing_file(tmp_path: Path) -> None:
    summary, diags = validate_dataset_file(
        tmp_path / "nope.jsonl", display="nope.jsonl", model=None, max_seq_length=None
    )
    assert [d.code for d in diags] == ["file-not-found"]
    assert not summary.checked


def test_oversized_line_is_skipped_without_holding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.checks.dataset import reading

    monkeypatch.setattr(reading, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(reading, "CHUNK", 256)  # the long line spans many reads
    ok = b'{"prompt": "a", "completion": "b"}\n'
    path = tmp_path / "long.jsonl"
    path.write_bytes(ok + b'{"prompt": "' + b"x" * 5000 + b'", "completion": "b"}\n' + ok)
    summary, diags = validate_dataset_file(
        path, display="long.jsonl", model=None, max_seq_length=None
    )
    assert found(diags) == {("line-too-long", 2)}
    assert summary.examples == 2


def test_summary_counts_formats_tokens_and_hash(tmp_path: Path) -> None:
    import hashlib

    lines = [
        '{"prompt": "Say hi", "completion": "Hi there"}',
        '{"prompt": "Say bye", "completion": "Bye now"}',
    ]
    path = tmp_path / "pc.jsonl"
    path.write_text("\n".join(lines))  # no final newline: the last line still counts
    summary, diags = validate_dataset_file(
        path, display="pc.jsonl", model=LLAMA, max_seq_length=8192
    )
    assert not diags
    assert summary.examples == 2
    assert summary.formats == ["prompt_completion"]
    assert summary.tokens > 0 and not summary.tokens_exact
    assert summary.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.bytes == path.stat().st_size


def test_too_many_diagnostics_of_one_code_are_summed_up(tmp_path: Path) -> None:
    from infra.checks.dataset.validator import MAX_PER_CODE

    path = tmp_path / "many.jsonl"
    path.write_text("[1]\n" * (MAX_PER_CODE + 7))
    _, diags = validate_dataset_file(path, display="many.jsonl", model=None, max_seq_length=None)
    assert len(diags) == MAX_PER_CODE + 1
    assert "7 more line(s)" in diags[-1].message and diags[-1].line == MAX_PER_CODE + 1
