"""gs:// URIs that escape their bucket (issue 14, finding 1: ``gs://b/../../etc``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trainer import storage as trainer_storage

from infra import gcs
from infra.checks import check_spec
from infra.load import load_text
from tests.load.test_load import GOOD

ESCAPING = [
    "gs://b/../../etc",
    "gs://b/a/../../x",
    "gs://b/./x",
    "gs://b/x/.",
    "gs://b/x\x00",
    "gs://b/x\ny",
    "gs://b/a\\..\\x",
    "gs://../x",
    "gs://./x",
    "gs:///x",
    "gs://b/" + "x" * 1025,
]


@pytest.mark.parametrize("uri", ESCAPING)
def test_escaping_uris_are_refused_by_both_modules(uri: str) -> None:
    assert gcs.escape_problem(uri) is not None
    assert trainer_storage.escape_problem(uri) is not None
    with pytest.raises(ValueError):
        gcs.checked(uri)
    with pytest.raises(ValueError):
        trainer_storage.split_gs(uri)


@pytest.mark.parametrize(
    "uri", ["gs://b", "gs://b/", "gs://b/a/b.jsonl", "gs://b/a..b/.x", "gs://b/ü"]
)
def test_good_uris_pass(uri: str) -> None:
    assert gcs.escape_problem(uri) is None and trainer_storage.escape_problem(uri) is None


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(list("ab./\\\x00\n%ü")), max_size=30))
def test_infra_and_trainer_agree(tail: str) -> None:
    uri = "gs://" + tail
    assert (gcs.escape_problem(uri) is None) == (trainer_storage.escape_problem(uri) is None)


def test_spec_output_uri_escaping_is_invalid_uri_with_line() -> None:
    text = GOOD.replace(
        "output_uri: gs://acme-ml-dev-tuning/a", "output_uri: gs://acme-ml-dev-tuning/../../etc"
    )
    loaded = load_text(text, "s.yaml")
    assert loaded.spec is not None
    diags = [
        d for d in check_spec(loaded.spec, loaded.positions, "s.yaml") if d.code == "invalid-uri"
    ]
    assert [(d.line, d.field) for d in diags] == [(13, "tuning_jobs[0].output_uri")]
    assert "'..' segment" in diags[0].message
