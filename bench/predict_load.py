"""Concurrent predict clients against the local API (tiny model): latency, throughput, 429s.

Run it: .venv/bin/python bench/predict_load.py [--cap 2] [--requests 40] [--max-tokens 32]

Starts ``tunestack serve --smoke`` in a temporary TUNESTACK_HOME, deploys a tiny random Llama
checkpoint through ``:deploy``, then runs two phases with one keep-alive connection per client:

- at the cap: ``cap`` clients, each sending requests back to back (no 429 expected);
- at 2x the cap: ``2 * cap`` clients; the extra ones must get 429 promptly, never hang;
- chat completions with ``"stream": true`` at 1x and 2x the cap: time to first token (the
  first content chunk) and total latency, p50/p99; 429s must come before any stream starts.

The peer, side by side: the same generation called directly in this process with
transformers (no HTTP, no server), one request at a time and ``cap`` threads at once, so the
server's overhead is visible as a ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ["TUNESTACK_HOME"] = tempfile.mkdtemp(prefix="tunestack-bench-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import torch  # noqa: E402
from trainer import tiny  # noqa: E402

from infra import gcs as gcs_uris  # noqa: E402
from infra.local import daemon  # noqa: E402
from infra.local.generate import Outcome, Sampling  # noqa: E402
from infra.local.predict import LoadedModel  # noqa: E402

PARENT = "projects/bench/locations/us-central1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cap", type=int, default=2, help="server predict concurrency cap (default 2)")
    p.add_argument("--requests", type=int, default=40, help="requests per phase (default 40)")
    p.add_argument(
        "--max-tokens", type=int, default=32, help="tokens generated per request (default 32)"
    )
    args = p.parse_args()

    proc, api = daemon.spawn(["--smoke", "--max-concurrency", str(args.cap)], timeout=180)
    try:
        ckpt = tiny.build_tiny_checkpoint("llama", Path(os.environ["TUNESTACK_HOME"]) / "ckpt")
        endpoint = deploy(api, ckpt)
        body = json.dumps(
            {
                "instances": [
                    {
                        "prompt": "What is a car?",
                        "max_tokens": args.max_tokens,
                        "temperature": 1.0,
                        "top_p": 1.0,
                        "top_k": 1,
                        "raw_response": True,
                    }
                ]
            }
        ).encode()
        run_phase(
            api, endpoint, body, 1, 3
        )  # warm-up: first call loads nothing new, but warms torch
        at_cap = run_phase(api, endpoint, body, args.cap, args.requests)
        over = run_phase(api, endpoint, body, 2 * args.cap, args.requests)
        chat_body = json.dumps(
            {
                "messages": [{"role": "user", "content": "What is a car?"}],
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "ignore_eos": True,
                "stream": True,
            }
        ).encode()
        chat_cap = chat_phase(api, endpoint, chat_body, args.cap, args.requests)
        chat_over = chat_phase(api, endpoint, chat_body, 2 * args.cap, args.requests)
        model = LoadedModel(ckpt)
        sampling = Sampling(max_tokens=args.max_tokens, top_k=1)
        direct_phase(model, sampling, 1, 3)  # warm-up, as for the API
        direct_1 = direct_phase(model, sampling, 1, args.requests)
        direct_cap = direct_phase(model, sampling, args.cap, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(
        f"predict load: tiny llama (hidden 64, 2 layers), max_tokens {args.max_tokens}, cap {args.cap}, {os.cpu_count()} cpus, {torch.get_num_threads()} torch thread(s) per generation\n"
    )
    header = f"{'run':<34}{'clients':>8}{'ok':>6}{'429':>6}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'429 p99 ms':>12}{'req/s':>8}"
    print(header)
    print("-" * len(header))
    for name, clients, r in (
        ("local API, at the cap", args.cap, at_cap),
        ("local API, 2x the cap", 2 * args.cap, over),
        ("peer: transformers direct, serial", 1, direct_1),
        (f"peer: transformers direct, {args.cap} threads", args.cap, direct_cap),
    ):
        print(
            f"{name:<34}{clients:>8}{r['ok']:>6}{r['429']:>6}{r['errors']:>8}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['p99_429']:>12.1f}{r['rps']:>8.1f}"
        )
    print()
    print(
        f"throughput ratio, API at cap / direct with {args.cap} threads: {at_cap['rps'] / direct_cap['rps']:.2f}x"
    )
    print(f"p50 latency ratio, API at cap / direct serial: {at_cap['p50'] / direct_1['p50']:.2f}x")
    print(
        f"at 2x the cap: {over['429']} of {args.requests} answered 429, slowest 429 in {over['max_429']:.1f} ms (slowest success {over['max_ok']:.1f} ms); unexpected errors: {at_cap['errors'] + over['errors']}"
    )
    print()
    header = f"{'chat, stream=true':<34}{'clients':>8}{'ok':>6}{'429':>6}{'errors':>8}{'TTFT p50':>10}{'TTFT p99':>10}{'total p50':>11}{'total p99':>11}{'429 max ms':>12}"
    print(header)
    print("-" * len(header))
    for name, clients, r in (
        ("chat stream, at the cap", args.cap, chat_cap),
        ("chat stream, 2x the cap", 2 * args.cap, chat_over),
    ):
        print(
            f"{name:<34}{clients:>8}{r['ok']:>6}{r['429']:>6}{r['errors']:>8}{r['ttft_p50']:>10.1f}{r['ttft_p99']:>10.1f}{r['p50']:>11.1f}{r['p99']:>11.1f}{r['max_429']:>12.1f}"
        )
    errors = at_cap["errors"] + over["errors"] + chat_cap["errors"] + chat_over["errors"]
    print(f"unexpected errors in all phases: {errors}")
    return 0 if errors == 0 and at_cap["429"] == 0 and chat_cap["429"] == 0 else 1


def deploy(api: Any, ckpt: Path) -> str:
    gcs = gcs_uris.client(endpoint=api.storage_url)
    bucket = gcs.create_bucket("bench-weights")
    for f in ckpt.iterdir():
        bucket.blob(f"final/{f.name}").upload_from_filename(str(f))
    body = {
        "customModel": {"gcsUri": "gs://bench-weights/final"},
        "endpointConfig": {"endpointDisplayName": "bench"},
    }
    _, op = call(api, "POST", f"/v1beta1/{PARENT}:deploy", json.dumps(body).encode())
    while not op.get("done"):
        time.sleep(0.2)
        _, op = call(api, "GET", f"/v1beta1/{op['name']}")
    if "error" in op:
        raise SystemExit(f"deploy failed: {op['error']}")
    return str(op["response"]["endpoint"])


def call(
    api: Any,
    method: str,
    path: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, Any]]:
    own = conn is None
    if conn is None:
        conn = connect(api)
    conn.request(
        method,
        path,
        body=body,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"{}")
    if own:
        conn.close()
    return resp.status, data


def connect(api: Any) -> http.client.HTTPConnection:
    url = urllib.parse.urlparse(api.api_url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=120)


def run_phase(api: Any, endpoint: str, body: bytes, clients: int, total: int) -> dict[str, float]:
    """``clients`` threads each send ``total // clients`` requests back to back, each on its own
    keep-alive connection (a refused client moves on to its next request at once)."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        conn = connect(api)
        barrier.wait()
        for _ in range(max(1, total // clients)):
            start = time.perf_counter()
            try:
                status, _ = call(api, "POST", f"/v1/{endpoint}:predict", body, conn)
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = connect(api)
            with lock:
                results.append((status, (time.perf_counter() - start) * 1000))
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    return summarise(results, time.perf_counter() - start)


def chat_phase(api: Any, endpoint: str, body: bytes, clients: int, total: int) -> dict[str, float]:
    """Streaming chat completions: ``clients`` threads back to back; time to the first content
    chunk and to ``[DONE]``."""
    results: list[tuple[int, float]] = []
    ttfts: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        barrier.wait()
        for _ in range(max(1, total // clients)):
            conn = connect(api)
            start = time.perf_counter()
            first = None
            status = -1
            try:
                conn.request(
                    "POST",
                    f"/v1beta1/{endpoint}/chat/completions",
                    body=body,
                    headers={
                        "Authorization": f"Bearer {api.token}",
                        "Content-Type": "application/json",
                    },
                )
                resp = conn.getresponse()
                status = resp.status
                if status == 200:
                    done = False
                    for raw in resp:
                        line = raw.strip()
                        if line == b"data: [DONE]":
                            done = True
                            break
                        if (
                            first is None
                            and line.startswith(b"data: ")
                            and b'"content": "' in line
                            and b'"content": ""' not in line
                        ):
                            first = (time.perf_counter() - start) * 1000
                    status = 200 if done and first is not None else -2
                else:
                    resp.read()
            except (OSError, http.client.HTTPException):
                status = -1
            conn.close()
            with lock:
                results.append((status, (time.perf_counter() - start) * 1000))
                if first is not None:
                    ttfts.append(first)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    out = summarise(results, time.perf_counter() - start)
    ttfts.sort()
    out["ttft_p50"] = statistics.median(ttfts) if ttfts else 0.0
    out["ttft_p99"] = percentile(ttfts, 99)
    return out


def direct_phase(
    model: LoadedModel, sampling: Sampling, threads: int, total: int
) -> dict[str, float]:
    """The peer: the same decode loop called in-process from ``threads`` threads."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    ids = model.text_prompt_ids("What is a car?")

    def one(_: int) -> None:
        start = time.perf_counter()
        prepared = model.prepare(ids, sampling, None)
        "".join(model.stream(prepared, sampling, Outcome(), threading.Event(), 600.0))
        with lock:
            results.append((200, (time.perf_counter() - start) * 1000))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(total)))
    return summarise(results, time.perf_counter() - start)


def summarise(results: list[tuple[int, float]], wall: float) -> dict[str, float]:
    ok = sorted(ms for s, ms in results if s == 200)
    refused = sorted(ms for s, ms in results if s == 429)
    return {
        "ok": len(ok),
        "429": len(refused),
        "errors": sum(1 for s, _ in results if s not in (200, 429)),
        "p50": statistics.median(ok) if ok else 0.0,
        "p99": percentile(ok, 99),
        "p99_429": percentile(refused, 99),
        "max_429": max(refused, default=0.0),
        "max_ok": max(ok, default=0.0),
        "rps": len(ok) / wall if wall else 0.0,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
