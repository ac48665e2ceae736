"""Chat completions on a deployed endpoint, through the official ``openai`` client and raw HTTP.

The client gets only ``base_url`` and ``api_key`` (the local token), as a user would set them.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from trainer import tiny
from trainer.encoding import FALLBACK_CHAT_TEMPLATE
from transformers import AutoTokenizer

from infra.gcs import client as gcs_client
from tests.local.conftest import ENTRY, start_server
from tests.local.conftest import http as http_call

PARENT = "projects/chat-project/locations/us-central1"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is a car?"},
]


def _deploy(local_api: Any, ckpt: Path, bucket: str, display_name: str = "") -> str:
    gcs = gcs_client(endpoint=local_api.storage_url, token=local_api.token)
    b = gcs.bucket(bucket) if gcs.bucket(bucket).exists() else gcs.create_bucket(bucket)
    for f in ckpt.iterdir():
        b.blob(f"final/{f.name}").upload_from_filename(str(f))
    body: dict[str, Any] = {"customModel": {"gcsUri": f"gs://{bucket}/final"}}
    if display_name:
        body["endpointConfig"] = {"endpointDisplayName": display_name}
    status, op = _call(local_api, "POST", f"/v1beta1/{PARENT}:deploy", body)
    assert status == 200, op
    deadline = time.monotonic() + 120
    while not op.get("done") and time.monotonic() < deadline:
        time.sleep(0.2)
        _, op = _call(local_api, "GET", f"/v1beta1/{op['name']}")
    assert "error" not in op, op
    return str(op["response"]["endpoint"])


def _call(local_api: Any, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return http_call(method, local_api.api_url + path, body, token=local_api.token)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_tiny_checkpoint("llama", tmp_path_factory.mktemp("chat-ckpt"))


@pytest.fixture(scope="module")
def endpoint(local_api: Any, ckpt: Path) -> str:
    return _deploy(local_api, ckpt, "chat-weights")


@pytest.fixture()
def client(local_api: Any, endpoint: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{local_api.api_url}/v1beta1/{endpoint}", api_key=local_api.token
    )


def test_openai_client_chat_completion_shape_and_usage(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="",
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,  # type: ignore[arg-type]
    )
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert resp.usage is not None and resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    if choice.finish_reason == "length":
        assert resp.usage.completion_tokens == 8


def test_prompt_is_the_models_chat_template_as_trained(
    client: openai.OpenAI, ckpt: Path, local_api: Any, tmp_path: Path
) -> None:
    resp = client.chat.completions.create(
        model="",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=1,
        extra_body={"return_token_ids": True},
    )
    tok = AutoTokenizer.from_pretrained(ckpt)
    expected = tok.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    ids = resp.model_dump()["prompt_token_ids"]
    assert ids == list(expected) and ids.count(tok.bos_token_id) == 1
    assert resp.usage is not None and resp.usage.prompt_tokens == len(expected)

    # A tokenizer without a template gets the trainer's fallback template, exactly.
    bare = tmp_path / "bare"
    tiny.build_tiny_checkpoint("qwen3", bare)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in bare.glob("chat_template.*"):
        extra.unlink()
    bare_tok = AutoTokenizer.from_pretrained(bare)
    assert not bare_tok.chat_template
    ep = _deploy(local_api, bare, "chat-bare")
    status, body = _call(
        local_api,
        "POST",
        f"/v1/{ep}/chat/completions",
        {"messages": MESSAGES, "max_tokens": 1, "return_token_ids": True},
    )
    assert status == 200, body
    fallback = bare_tok.apply_chat_template(
        MESSAGES,
        chat_template=FALLBACK_CHAT_TEMPLATE,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    assert body["prompt_token_ids"] == list(fallback)


def test_streaming_chunks_arrive_before_the_end_and_match_the_whole(
    client: openai.OpenAI,
) -> None:
    whole = client.chat.completions.create(
        model="",
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        extra_body={"ignore_eos": True},  # type: ignore[arg-type]
    )
    stamps: list[float] = []
    pieces: list[str] = []
    finish = None
    usage = None
    stream = client.chat.completions.create(
        model="",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        stamps.append(time.monotonic())
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "length" and usage is not None and usage.completion_tokens == 40
    content_stamps = [s for s, p in zip(stamps, pieces, strict=False) if p]
    assert len(content_stamps) >= 3 and content_stamps[0] < stamps[-1]


def test_stop_sequences_end_generation_and_are_not_returned(client: openai.OpenAI) -> None:
    base = client.chat.completions.create(
        model="",
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        extra_body={"ignore_eos": True},  # type: ignore[arg-type]
    )
    text = base.choices[0].message.content or ""
    assert len(text) >= 6, text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    for form in (stop, [stop, "\u2603never"]):
        resp = client.chat.completions.create(
            model="",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=40,
            temperature=0,
            stop=form,
            extra_body={"ignore_eos": True},
        )
        assert resp.choices[0].message.content == text[: text.find(stop)]
        assert resp.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="",
        messages=MESSAGES,
        max_tokens=40,
        temperature=0,
        stop=stop,
        stream=True,  # type: ignore[arg-type]
        extra_body={"ignore_eos": True},
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        == text[: text.find(stop)]
    )


def test_max_tokens_over_the_context_is_400_naming_both_numbers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="", messages=MESSAGES, max_tokens=9000)  # type: ignore[arg-type]
    message = str(e.value)
    assert "9000" in message and "8192" in message and e.value.status_code == 400
    # 2048 is fine: only the context bounds it (no 1024 cap by default).
    resp = client.chat.completions.create(
        model="",
        messages=MESSAGES,
        max_tokens=2048,
        temperature=0,
        stop=["e", "a", "o", " "],  # type: ignore[arg-type]
    )
    assert resp.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def run(seed: int) -> str:
        r = client.chat.completions.create(
            model="",
            messages=MESSAGES,
            max_tokens=12,
            seed=seed,
            extra_body={"ignore_eos": True},  # type: ignore[arg-type]
        )
        return r.choices[0].message.content or ""

    assert run(7) == run(7)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": MESSAGES, "n": 2}, "n"),
        ({"messages": MESSAGES, "temperature": "NaN"}, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', "NaN"),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": Infinity}', "Infinity"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e400}', "1e400"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": MESSAGES, "stop": [""]}, "stop"),
        ({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": MESSAGES, "tools": [{"type": "function"}]}, "tools"),
        ({"messages": MESSAGES, "logprobs": True}, "logprobs"),
        ({"messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": MESSAGES, "maxTokens": 5}, "maxTokens"),
    ],
)
def test_bad_chat_requests_are_400(local_api: Any, endpoint: str, body: Any, needle: str) -> None:
    status, err = _call(local_api, "POST", f"/v1beta1/{endpoint}/chat/completions", body)
    assert status == 400, err
    assert err["error"]["status"] == "INVALID_ARGUMENT" and needle in err["error"]["message"]


def test_non_finite_numbers_in_predict_are_400_not_greedy(local_api: Any, endpoint: str) -> None:
    for raw in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        body = b'{"instances": [{"prompt": "hi", "temperature": ' + raw + b"}]}"
        status, err = _call(local_api, "POST", f"/v1/{endpoint}:predict", body)
        assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT", (raw, err)


def test_a_one_megabyte_prompt_is_400_fast(local_api: Any, endpoint: str) -> None:
    big = "hello world " * 90_000
    for path, body in (
        (f"/v1/{endpoint}:predict", {"instances": [{"prompt": big, "max_tokens": 2}]}),
        (
            f"/v1/{endpoint}/chat/completions",
            {"messages": [{"role": "user", "content": big}], "max_tokens": 2},
        ),
    ):
        start = time.monotonic()
        status, err = _call(local_api, "POST", path, body)
        assert status == 400 and "8192" in err["error"]["message"], err
        assert time.monotonic() - start < 2.0
    # Just over the context after tokenisation: also 400 before any generation.
    status, err = _call(
        local_api,
        "POST",
        f"/v1/{endpoint}:predict",
        {"instances": [{"prompt": "hello world " * 9000, "max_tokens": 2}]},
    )
    assert status == 400 and "tokens" in err["error"]["message"], err


def test_chat_predict_instance_raw_predict_and_stream_raw_predict(
    local_api: Any, endpoint: str
) -> None:
    inst = {"@requestFormat": "chatCompletions", "messages": MESSAGES, "max_tokens": 4}
    status, body = _call(local_api, "POST", f"/v1/{endpoint}:predict", {"instances": [inst]})
    assert status == 200, body
    assert body["predictions"][0]["object"] == "chat.completion"
    assert body["predictions"][0]["choices"][0]["message"]["role"] == "assistant"

    status, body = _call(
        local_api, "POST", f"/v1/{endpoint}:rawPredict", {"messages": MESSAGES, "max_tokens": 4}
    )
    assert status == 200 and body["object"] == "chat.completion", body
    status, body = _call(
        local_api,
        "POST",
        f"/v1/{endpoint}:rawPredict",
        {"instances": [{"prompt": "hi", "max_tokens": 2, "raw_response": True}]},
    )
    assert status == 200 and isinstance(body["predictions"][0], str), body

    events = _sse(
        local_api, f"/v1beta1/{endpoint}:streamRawPredict", {"messages": MESSAGES, "max_tokens": 4}
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_frees_the_slot(local_api: Any, endpoint: str, stream: bool) -> None:
    body = {"messages": MESSAGES, "max_tokens": 8000, "ignore_eos": True, "stream": stream}
    url = urllib.parse.urlparse(local_api.api_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request(
        "POST",
        f"/v1beta1/{endpoint}/chat/completions",
        json.dumps(body),
        {"Authorization": f"Bearer {local_api.token}", "Content-Type": "application/json"},
    )
    if stream:
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.readline().startswith(b"data: ")
    else:
        time.sleep(1.0)  # generating, holding one slot
    conn.sock.close() if conn.sock is not None else None
    conn.close()
    # Both slots must be free again soon: two at once are answered, none 429.
    deadline = time.monotonic() + 5
    while True:
        statuses = _concurrent(local_api, endpoint, 2)
        if statuses == [200, 200] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert statuses == [200, 200]


def _concurrent(local_api: Any, endpoint: str, n: int) -> list[int]:
    out: list[int] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        s, _ = _call(
            local_api,
            "POST",
            f"/v1/{endpoint}/chat/completions",
            {"messages": MESSAGES, "max_tokens": 30, "ignore_eos": True},
        )
        out.append(s)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(out)


def _sse(local_api: Any, path: str, body: Any) -> list[str]:
    url = urllib.parse.urlparse(local_api.api_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request(
        "POST",
        path,
        json.dumps(body),
        {"Authorization": f"Bearer {local_api.token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    raw = resp.read().decode()
    conn.close()
    return [line[len("data: ") :] for line in raw.split("\n\n") if line.startswith("data: ")]


def _cli(local_api: Any, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNESTACK_HOME": str(local_api.home)}
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_tunestack_chat_and_predict_local(local_api: Any, endpoint: str) -> None:
    one = _cli(
        local_api,
        "chat",
        endpoint,
        "--local",
        "--message",
        "hi",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
    )
    assert one.returncode == 0, one.stderr
    status, whole = _call(
        local_api,
        "POST",
        f"/v1/{endpoint}/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0},
    )
    assert one.stdout == whole["choices"][0]["message"]["content"] + "\n"
    # Interactive (stdin not a tty): one answer per line, the history kept.
    two = _cli(local_api, "chat", endpoint, "--local", "--max-tokens", "3", stdin="hello\nagain\n")
    assert two.returncode == 0 and two.stdout.count("\n") >= 2, two.stderr
    pred = _cli(
        local_api,
        "predict",
        endpoint,
        "--local",
        "--prompt",
        "What is a car?",
        "--max-tokens",
        "3",
        "--raw",
    )
    assert pred.returncode == 0 and pred.stdout.strip() != "", pred.stderr


def test_tunestack_chat_errors_are_one_line(local_api: Any, endpoint: str) -> None:
    for args, needle in (
        (
            ("chat", "not-an-endpoint", "--local", "--message", "x"),
            "not an endpoint resource name (projects/P/locations/L/endpoints/ID); to use the "
            "spec's endpoint name, add --spec SPEC",
        ),
        (("chat", f"{PARENT}/endpoints/999", "--local", "--message", "x"), "404"),
        (("chat", endpoint, "--local", "--message", "x", "--max-tokens", "99999"), "99999"),
        (("predict", endpoint, "--local", "--prompt", "x", "--temperature", "nan"), "NaN"),
    ):
        r = _cli(local_api, *args)
        assert r.returncode == 1 and needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_tunestack_chat_finds_the_specs_endpoint_by_name(
    local_api: Any, ckpt: Path, tmp_path: Path
) -> None:
    """``chat NAME --spec SPEC``: the spec's endpoint name, found as ``status`` finds it (its
    display name, plain or with the deployment tag; the newest wins)."""
    demo = (Path(__file__).parents[2] / "specs" / "local-demo.yaml").read_text()
    spec = tmp_path / "chat.yaml"
    spec.write_text(demo.replace("id: tunestack-local-demo", "id: chat-project"))
    older = _deploy(local_api, ckpt, "chat-by-name", "vehicles-llama [ts-00aa]")
    newer = _deploy(local_api, ckpt, "chat-by-name", "vehicles-llama [ts-00bb]")
    _deploy(local_api, ckpt, "chat-by-name", "vehicles-llama-2")  # another name: not it
    assert older != newer
    args = ("--local", "--spec", str(spec), "--max-tokens", "4", "--temperature", "0")
    by_name = _cli(local_api, "chat", "vehicles-llama", *args, "--message", "hi")
    by_resource = _cli(local_api, "chat", newer, *args, "--message", "hi")
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == by_resource.stdout
    # Which one it picked: with the newest one's model undeployed, asking by name fails as
    # asking the newest does, while the older one still answers.
    _, ep = _call(local_api, "GET", f"/v1beta1/{newer}")
    deployed = ep["deployedModels"][0]["id"]
    status, op = _call(
        local_api, "POST", f"/v1beta1/{newer}:undeployModel", {"deployedModelId": deployed}
    )
    assert status == 200, op
    deadline = time.monotonic() + 60
    while not op.get("done") and time.monotonic() < deadline:
        time.sleep(0.2)
        _, op = _call(local_api, "GET", f"/v1beta1/{op['name']}")
    by_name = _cli(local_api, "predict", "vehicles-llama", *args, "--prompt", "What is a car?")
    by_newer = _cli(local_api, "predict", newer, *args, "--prompt", "What is a car?")
    by_older = _cli(local_api, "predict", older, *args, "--prompt", "What is a car?")
    assert by_name.returncode == by_newer.returncode == 1, by_name.stdout
    assert by_name.stderr == by_newer.stderr
    assert by_older.returncode == 0 and by_older.stdout.strip(), by_older.stderr
    r = _cli(local_api, "chat", "nope", *args, "--message", "x")
    assert r.returncode == 1, r.stderr
    assert "the spec has no endpoint 'nope'; its endpoints: vehicles-llama" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(demo.replace("id: tunestack-local-demo", "id: empty-project"))
    r = _cli(local_api, "chat", "vehicles-llama", "--local", "--spec", str(elsewhere))
    assert r.returncode == 1, r.stderr
    assert (
        "endpoint 'vehicles-llama' of the spec is not deployed in "
        "projects/empty-project/locations/us-central1" in r.stderr
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(demo.replace("region: us-central1", "region: mars-1"))
    r = _cli(local_api, "chat", "vehicles-llama", "--local", "--spec", str(bad))
    assert r.returncode == 1 and "invalid spec" in r.stderr and "region" in r.stderr
    assert "Traceback" not in r.stderr


def test_serving_commands_start_without_torch() -> None:
    code = "import sys, infra.cli.serving; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_generation_wall_clock_is_504_and_frees_the_slot(
    tmp_path_factory: pytest.TempPathFactory, ckpt: Path
) -> None:
    server = start_server(
        tmp_path_factory.mktemp("deadline-home"),
        ["--smoke", "--generation-timeout", "0.5", "--max-concurrency", "1"],
    )
    try:
        handle = SimpleNamespace(
            api_url=server.api_url, storage_url=server.storage_url, token=server.token
        )
        ep = _deploy(handle, ckpt, "deadline-weights")
        body = {"messages": MESSAGES, "max_tokens": 8000, "ignore_eos": True}
        start = time.monotonic()
        status, err = server.call("POST", f"/v1/{ep}/chat/completions", body)
        assert status == 504 and err["error"]["status"] == "DEADLINE_EXCEEDED", err
        assert "0.5 s" in err["error"]["message"] and time.monotonic() - start < 10
        events = _sse(handle, f"/v1/{ep}/chat/completions", {**body, "stream": True})
        assert events[-1] == "[DONE]" and "DEADLINE_EXCEEDED" in events[-2]
        # The one slot is free again.
        status, ok = server.call(
            "POST", f"/v1/{ep}/chat/completions", {"messages": MESSAGES, "max_tokens": 2}
        )
        assert status == 200, ok
    finally:
        server.stop()


def test_an_endpoint_of_another_project_or_location_is_404(local_api: Any, endpoint: str) -> None:
    rid = endpoint.rsplit("/", 1)[1]
    for parent in (
        "projects/other/locations/us-central1",
        "projects/chat-project/locations/europe-west4",
    ):
        for suffix, body in (
            ("/chat/completions", {"messages": MESSAGES, "max_tokens": 1}),
            (":predict", {"instances": [{"prompt": "x", "max_tokens": 1}]}),
            (":rawPredict", {"messages": MESSAGES, "max_tokens": 1}),
        ):
            status, err = _call(local_api, "POST", f"/v1/{parent}/endpoints/{rid}{suffix}", body)
            assert status == 404 and err["error"]["status"] == "NOT_FOUND", (parent, suffix, err)
