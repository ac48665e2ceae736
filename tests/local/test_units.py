"""Pure pieces of the local API, in-process: instance parsing, filters, limiter, token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from google.cloud.aiplatform_v1beta1 import types as v1beta1

from infra.local import home
from infra.local.api.errors import ApiError
from infra.local.api.filters import compile_filter
from infra.local.api.wire import parse, render
from infra.local.generate import RequestError
from infra.local.predict import Instance, Limiter, parse_instance
from infra.local.state import Store


def test_instances_accept_float_numbers_and_default_fields() -> None:
    inst = parse_instance(
        {
            "prompt": "hi",
            "max_tokens": 50.0,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40.0,
            "raw_response": True,
        }
    )
    assert isinstance(inst, Instance)
    s = inst.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k, inst.raw_response) == (
        50,
        0.5,
        0.9,
        40,
        True,
    )
    plain = parse_instance({"prompt": "hi"})
    assert isinstance(plain, Instance) and plain.raw_response is False


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"prompt": 3},
        {"prompt": "x", "max_tokens": 0},
        {"prompt": "x", "max_tokens": float("nan")},
        {"prompt": "x", "temperature": float("nan")},
        {"prompt": "x", "temperature": float("inf")},
        {"prompt": "x", "top_p": float("-inf")},
        {"prompt": "x", "max_tokens": 1.5},
        {"prompt": "x", "@requestFormat": "completions"},
        {"@requestFormat": "chatCompletions", "messages": []},
        {
            "@requestFormat": "chatCompletions",
            "messages": [{"role": "user", "content": "x"}],
            "n": 2,
        },
        {"prompt": "x", "max_tokens": "5"},
        {"prompt": "x", "top_p": 0},
        {"prompt": "x", "temperature": -1},
        {"prompt": "x", "max_token": 5},
        "prompt",
    ],
)
def test_bad_instances_are_refused(raw: object) -> None:
    with pytest.raises(RequestError):
        parse_instance(raw)


def test_filters_match_labels_state_and_refuse_the_rest() -> None:
    job = {"labels": {"tunestack-key": "abc", "team": "ml"}, "state": "JOB_STATE_RUNNING"}
    assert compile_filter('labels.tunestack-key="abc"')(job)
    assert not compile_filter('labels.tunestack-key="abd"')(job)
    assert compile_filter('labels.team:* AND state="JOB_STATE_RUNNING"')(job)
    assert not compile_filter("labels.other:*")(job)
    assert compile_filter("")(job)
    with pytest.raises(ApiError) as e:
        compile_filter("create_time > 5")
    assert e.value.code == 400


def test_limiter_refuses_beyond_the_cap_and_frees_slots() -> None:
    limiter = Limiter(2)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    limiter.release()
    assert limiter.try_acquire()


def test_bodies_round_trip_through_the_proto_types() -> None:
    body = b'{"baseModel": "m", "supervisedTuningSpec": {"tuningMode": 2, "hyperParameters": {"epochCount": 3}}}'
    parsed = parse(v1beta1.TuningJob, body)
    assert parsed["supervisedTuningSpec"]["tuningMode"] == "TUNING_MODE_PEFT_ADAPTER"
    assert parsed["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == "3"
    assert render(("TuningJob", parsed), True, "v1beta1")["supervisedTuningSpec"]["tuningMode"] == 2
    with pytest.raises(ApiError):
        parse(v1beta1.TuningJob, b"[1, 2]")


def test_v1_clients_get_v1_payload_types() -> None:
    op = {
        "name": "projects/p/locations/l/operations/1",
        "done": True,
        "response": {
            "@type": "type.googleapis.com/google.cloud.aiplatform.v1beta1.UndeployModelResponse"
        },
    }
    assert render(("", op), False, "v1")["response"]["@type"].endswith(
        "aiplatform.v1.UndeployModelResponse"
    )
    assert render(("", op), False, "ui")["response"]["@type"].endswith(
        "v1beta1.UndeployModelResponse"
    )


def test_token_is_generated_once_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNESTACK_HOME", str(tmp_path))
    token = home.ensure_token()
    assert len(token) >= 32 and home.ensure_token() == token
    assert stat.S_IMODE(home.token_file().stat().st_mode) == 0o600


def test_store_survives_reload_and_ids_increase(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first, second = store.new_id(), store.new_id()
    assert int(second) > int(first)
    store.put("endpoints", first, {"name": "e"}, {"k": 1})
    again = Store(tmp_path)
    assert again.get("endpoints", first) == {"resource": {"name": "e"}, "internal": {"k": 1}}
    assert int(again.new_id()) > int(second)
    assert again.delete("endpoints", first) and again.get("endpoints", first) is None
