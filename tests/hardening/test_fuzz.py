"""Property-based fuzzing (hypothesis, fixed seed) of every user input of issue 14.

* spec documents (random YAML trees, anchors and aliases, depth, scalars of every type, and
  mutations of a real spec) through ``validate`` and ``plan``, in-process;
* request bodies through every route of the real API app (Starlette TestClient, with the
  token);
* object names through the storage door of a real server.

Properties: no exception escapes (no traceback), no HTTP 500, every example within a time
bound, and the CLI's exit codes are 0, 1 or 2 only. The CI budget is small
(:data:`EXAMPLES` per test); ``bench/fuzz.py`` runs the same properties with a larger one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from infra import checks
from infra.cli import main
from infra.local import storage, storage_door
from infra.local.api import app as api_app
from infra.local.api.context import Context
from infra.local.api.settings import Settings
from infra.plan import build_plan
from tests.hardening.test_storage_door import raw
from tests.local.conftest import Server

#: Examples per property in CI; ``TUNESTACK_FUZZ_EXAMPLES`` raises it (bench/fuzz.py).
EXAMPLES = int(os.environ.get("TUNESTACK_FUZZ_EXAMPLES", "40"))
#: Slowest acceptable example (seconds): bounded work for every input.
TIME_BOUND_S = 5.0
SPECS = Path(__file__).resolve().parents[2] / "specs"
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a fixed seed: CI runs the same examples every time
    deadline=None,  # the time bound is asserted per example instead (first calls import)
    suppress_health_check=list(HealthCheck),
    database=None,
)

# --- values --------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "..", "gs://b/../../etc", "gs://", "\x00", "FULL", "1e400", "~"]),
)
TREES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> str:
    """YAML text: a random tree, a mutated real spec, deep nesting or an alias construct."""
    kind = draw(st.sampled_from(["tree", "mutation", "mutation", "deep", "aliases", "bytes"]))
    if kind == "tree":
        return yaml.safe_dump(draw(TREES), allow_unicode=True)
    if kind == "deep":
        depth = draw(st.integers(1, 600))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return "project: " + opener * depth + "1" + closer * depth + "\n"
    if kind == "aliases":
        levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        lines = ["a0: &a0 [x]"]
        for i in range(1, levels):
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        target = draw(st.sampled_from(["project", "tuning_jobs", "datasets"]))
        return "\n".join(lines) + f"\n{target}: *a{levels - 1}\n"
    if kind == "bytes":
        return draw(st.text(max_size=200))
    base = yaml.safe_load((SPECS / "local-demo.yaml").read_text())
    node: Any = base
    path = draw(st.lists(st.integers(0, 10), min_size=1, max_size=4))
    for step in path[:-1]:
        children = list(node.values()) if isinstance(node, dict) else node
        kids = (
            [c for c in children if isinstance(c, dict | list)]
            if isinstance(children, list)
            else []
        )
        if not kids:
            break
        node = kids[step % len(kids)]
    value = draw(TREES)
    if isinstance(node, dict) and node:
        key = sorted(node, key=str)[path[-1] % len(node)]
        node[key] = value
    elif isinstance(node, list) and node:
        node[path[-1] % len(node)] = value
    return yaml.safe_dump(base, allow_unicode=True)


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the demo's datasets, where fuzzed specs are written."""
    root = tmp_path_factory.mktemp("fuzz-specs")
    shutil.copytree(SPECS / "data" / "local-demo", root / "data" / "local-demo")
    return root


@FUZZ
@given(text=yaml_documents())
def test_validate_and_plan_never_raise(spec_dir: Path, text: str) -> None:
    path = spec_dir / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = time.perf_counter()
    report = checks.validate(path)
    if report.ok and report.spec is not None:
        build_plan(report.spec, report, path)
    for d in report.diagnostics:
        assert len(d.message) <= 2000 and d.line >= 0
    assert time.perf_counter() - start < TIME_BOUND_S


@settings(FUZZ, max_examples=max(5, EXAMPLES // 8))
@given(text=yaml_documents())
def test_cli_exit_codes_are_0_1_2(
    spec_dir: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_dir / "cli.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for argv in (["validate", str(path)], ["plan", str(path)]):
        code = main(argv)
        out = capsys.readouterr()
        assert code in (0, 1, 2), (argv, out.err[-500:])
        assert "Traceback" not in out.err and "Error: " not in out.err.split("\n")[0][:7]


# --- request bodies through every route ----------------------------------------------------

TOKEN = "fuzz-token"
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
    ),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=20), kids, max_size=5)
    ),
    max_leaves=25,
)
REAL_KEYS = [
    "baseModel",
    "outputUri",
    "supervisedTuningSpec",
    "trainingDatasetUri",
    "hyperParameters",
    "epochCount",
    "instances",
    "parameters",
    "customModel",
    "gcsUri",
    "deployedModel",
    "trafficSplit",
    "displayName",
    "jobSpec",
    "workerPoolSpecs",
    "prompt",
    "max_tokens",
    "temperature",
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A JSON body shaped like Vertex's (real keys), random JSON, non-finite or raw bytes."""
    kind = draw(st.sampled_from(["shaped", "shaped", "json", "nonfinite", "deep", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(50, 5000))
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "nonfinite":
        word = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]))
        return f'{{"instances": [{{"prompt": "x", "temperature": {word}}}]}}'.encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    shaped = draw(
        st.dictionaries(
            st.sampled_from(REAL_KEYS),
            st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(REAL_KEYS), JSON_VALUES)),
            max_size=6,
        )
    )
    return json.dumps(shaped).encode()


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, list[tuple[str, str]]]]:
    """The real app (scheduler not started) in its own home, with a raw emulator behind it."""
    home = tmp_path_factory.mktemp("fuzz-home")
    before = os.environ.get("TUNESTACK_HOME")
    os.environ["TUNESTACK_HOME"] = str(home)
    emulator = storage.StorageEmulator(root=home / "gcs", isolation="off")
    emulator.start()
    try:
        settings_ = Settings(port=8470, smoke=True)
        ctx = Context(settings_, emulator.url, TOKEN)
        app = api_app.build(ctx)
        client = TestClient(app, base_url="http://127.0.0.1:8470", raise_server_exceptions=False)
        yield client, list(_routes(app.routes))
    finally:
        emulator.stop()
        if before is None:
            os.environ.pop("TUNESTACK_HOME", None)
        else:
            os.environ["TUNESTACK_HOME"] = before


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for r in routes:
        if isinstance(r, Mount):
            yield from _routes(r.routes, prefix + r.path)
        elif isinstance(r, Route):
            for method in sorted(r.methods or {"GET"}):
                if method != "HEAD":
                    yield method, prefix + r.path


def _fill(template: str, rng: random.Random) -> str:
    def one(match: re.Match[str]) -> str:
        name, _, kind = match.group(1).partition(":")
        if kind == "nested":
            return rng.choice(["", "/tuningJobs/1"])
        if kind == "path":
            return rng.choice(["x", "a/b", "v1/../etc"])
        if name in ("project",):
            return "test-project"
        if name == "location":
            return "us-central1"
        return rng.choice(["1", "999", "x@1", "%2e%2e"])

    return re.sub(r"\{([^}]+)\}", one, template)


@FUZZ
@given(body=bodies(), pick=st.integers(0, 10**6), seed=st.integers(0, 10**6))
def test_every_route_answers_without_500(
    api: tuple[TestClient, list[tuple[str, str]]], body: bytes, pick: int, seed: int
) -> None:
    client, routes = api
    method, template = routes[pick % len(routes)]
    path = _fill(template, random.Random(seed))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    start = time.perf_counter()
    resp = client.request(method, path, content=body if method != "GET" else None, headers=headers)
    assert resp.status_code < 500 or resp.status_code in (501, 503), (
        method,
        path,
        body[:300],
        resp.status_code,
        resp.text[:500],
    )
    assert time.perf_counter() - start < TIME_BOUND_S
    assert resp.headers.get("content-type", "").startswith("application/json")


def test_route_table_is_covered(api: tuple[TestClient, list[tuple[str, str]]]) -> None:
    _, routes = api
    kinds = {t for _, t in routes}
    assert any(":predict" in t for t in kinds) and any("tuningJobs" in t for t in kinds)
    assert len(routes) >= 15


# --- object names through the storage door -------------------------------------------------

NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(["..", ".", "a", "", "b.txt", "%2e%2e", "\x00", "\n", "\\", "ü"]),
        min_size=1,
        max_size=6,
    ).map("/".join),
)


@pytest.fixture(scope="module")
def door_bucket(server: Server) -> str:
    status, _, _ = raw(
        server, "POST", "/storage/v1/b?project=p", json.dumps({"name": "fuzz"}).encode()
    )
    assert status == 200
    return "fuzz"


@FUZZ
@given(name=NAMES, encode_slash=st.booleans())
def test_object_names_through_the_door(
    server: Server, door_bucket: str, name: str, encode_slash: bool
) -> None:
    quoted = urllib.parse.quote(name, safe="" if encode_slash else "/")
    try:
        storage_door.check_name(name)
        escaping = False
    except storage_door.NameRefused:
        escaping = True
    targets = [
        ("POST", f"/upload/storage/v1/b/{door_bucket}/o?uploadType=media&name={quoted}"),
        ("GET", f"/storage/v1/b/{door_bucket}/o/{quoted}"),
        ("GET", f"/download/storage/v1/b/{door_bucket}/o/{quoted}?alt=media"),
    ]
    for method, target in targets:
        status, _, _ = raw(server, method, target, b"data" if method == "POST" else None)
        assert status < 500, (method, target, status)
        if escaping:
            assert status == 400, (method, target, status)
    root = (server.home / "local" / "gcs").resolve()
    for p in server.home.rglob("*"):
        if p.is_file() and root not in p.resolve().parents:
            assert p.read_bytes() != b"data", f"written outside the emulator root: {p}"
