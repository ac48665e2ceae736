"""TrainerImage through the provider host against a recording Cloud Build server (requests
parsed into the real cloudbuild_v1 types) and the real GCS emulator for the source tarball."""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import grpc
import pytest
from fake_google import serve_json
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.devtools import cloudbuild_v1 as cb
from google.longrunning import operations_pb2
from google.protobuf import json_format
from pulumi.runtime.proto import provider_pb2

from infra.providers import image
from infra.providers.image import TrainerImageProvider


@dataclass
class RecordingCloudBuild:
    """Builds go QUEUED -> WORKING -> ``final`` over successive GETs."""

    final: str = "SUCCESS"
    detail: str = ""
    builds: dict[str, cb.Build] = field(default_factory=dict)
    steps: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    hook: Any = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def handle(self, method: str, path: str, query: str, body: bytes) -> tuple[int, str]:
        m = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+)/builds", path)
        if m and method == "POST":
            build = cb.Build.from_json(body, ignore_unknown_fields=False)
            self.requests.append(("create", path, build))
            build.id = f"b{next(self._ids)}"
            build.name = f"{m.group(1)}/builds/{build.id}"
            build.status = cb.Build.Status.QUEUED
            self.builds[build.id] = build
            self.steps[build.id] = ["WORKING", self.final]
            op = operations_pb2.Operation(name=f"{m.group(1)}/operations/{build.id}")
            op.metadata.Pack(cb.BuildOperationMetadata.pb(cb.BuildOperationMetadata(build=build)))
            return 200, json_format.MessageToJson(op)
        if m and method == "GET":
            self.requests.append(("list", path, query))
            tag = re.search(r'tags="([^"]+)"', query)
            found = [b for b in reversed(self.builds.values()) if not tag or tag.group(1) in b.tags]
            return 200, json.dumps({"builds": [json.loads(cb.Build.to_json(b)) for b in found]})
        m = re.fullmatch(r"/v1/projects/[^/]+/locations/[^/]+/builds/(\w+)", path)
        if m and method == "GET":
            self.requests.append(("get", path, None))
            build = self.builds[m.group(1)]
            if self.steps[build.id]:
                build.status = cb.Build.Status[self.steps[build.id].pop(0)]
                if build.status != cb.Build.Status.SUCCESS:
                    build.status_detail = self.detail
            return 200, cb.Build.to_json(build)
        return 501, json.dumps({"error": {"code": 501, "message": f"{method} {path}"}})

    def creates(self) -> list[cb.Build]:
        return [r[2] for r in self.requests if r[0] == "create"]


@pytest.fixture
def cloudbuild() -> Iterator[tuple[RecordingCloudBuild, str]]:
    fake = RecordingCloudBuild()

    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str]:
        path, _, query = handler.path.partition("?")
        status, payload = fake.handle(handler.command, path, unquote(query), body)
        if fake.hook:
            fake.hook(handler.command, path)
        return status, payload

    with serve_json(respond) as url:
        yield fake, url


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "trainer_image"
    (ctx / "trainer").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM python:3.11\nCOPY . /app\n")
    (ctx / "trainer" / "__init__.py").write_text("VERSION = 1\n")
    (ctx / "trainer" / "__pycache__").mkdir()
    (ctx / "trainer" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    return ctx


def image_inputs(url: str, gcs: str, ctx: Path, **over: object) -> dict:
    return {
        "project": "proj",
        "location": "us-central1",
        "repository": "tunestack",
        "context_dir": str(ctx),
        "image_name": "trainer",
        "source_bucket": None,
        "deadline_seconds": 20,
        "api_endpoint": url,
        "storage_endpoint": gcs,
        **over,
    }


def test_builds_pushes_and_tags_by_content_hash(cloudbuild, gcs, context, make_host):
    fake, url = cloudbuild
    host = make_host(TrainerImageProvider())
    checked, failures = host.check(image_inputs(url, gcs, context))
    assert failures == [] and checked["context_hash"] == image.context_hash(context)
    id_, outs = host.create(checked)
    tag = image.context_hash(context)[:24]
    assert id_ == outs["image_uri"] == f"us-central1-docker.pkg.dev/proj/tunestack/trainer:{tag}"
    assert outs["built"] is True and outs["build_id"] == "b1"
    (build,) = fake.creates()
    assert build.images == [outs["image_uri"]]
    assert build.steps[0].name == "gcr.io/cloud-builders/docker"
    assert list(build.steps[0].args) == ["build", "-t", outs["image_uri"], "."]
    assert f"ctx-{tag}" in build.tags
    src = build.source.storage_source
    assert src.bucket == "proj_cloudbuild" and src.object_ == f"tunestack/trainer-{tag}.tgz"
    assert fake.requests[0][1] == "/v1/projects/proj/locations/us-central1/builds"  # regional
    gcs_client = storage.Client(
        project="proj", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs}
    )
    data = gcs_client.bucket(src.bucket).blob(src.object_).download_as_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "trainer/__init__.py"]


def test_unchanged_context_builds_nothing(cloudbuild, gcs, context, make_host):
    fake, url = cloudbuild
    host = make_host(TrainerImageProvider())
    id_, outs = host.create(image_inputs(url, gcs, context))
    (context / "trainer" / "__pycache__" / "y.pyc").write_bytes(b"more cache")  # not context
    id2, outs2 = host.create(image_inputs(url, gcs, context))
    assert id2 == id_ and outs2["built"] is False and len(fake.creates()) == 1


def test_changed_context_is_a_replacing_diff_and_a_new_image(cloudbuild, gcs, context, make_host):
    fake, url = cloudbuild
    host = make_host(TrainerImageProvider())
    olds, _ = host.check(image_inputs(url, gcs, context))
    id_, outs = host.create(olds)
    same, _ = host.check(image_inputs(url, gcs, context), outs)
    assert host.diff(id_, outs, same).changes == provider_pb2.DiffResponse.DIFF_NONE
    (context / "trainer" / "__init__.py").write_text("VERSION = 2\n")
    news, _ = host.check(image_inputs(url, gcs, context), outs)
    assert list(host.diff(id_, outs, news).replaces) == ["context_hash"]
    id2, _ = host.create(news)
    assert id2 != id_ and len(fake.creates()) == 2


def test_failed_build_fails_with_its_status(cloudbuild, gcs, context, make_host):
    fake, url = cloudbuild
    fake.final, fake.detail = "FAILURE", "step 0 exited 1: pip install failed"
    with pytest.raises(grpc.RpcError) as err:
        make_host(TrainerImageProvider()).create(image_inputs(url, gcs, context))
    assert "FAILURE" in err.value.details() and "pip install failed" in err.value.details()


def test_missing_context_is_a_check_failure(cloudbuild, gcs, tmp_path, make_host):
    _, url = cloudbuild
    _, failures = make_host(TrainerImageProvider()).check(image_inputs(url, gcs, tmp_path / "nope"))
    assert [p for p, _ in failures] == ["context_dir"]


@pytest.mark.slow
def test_crash_after_build_submitted_adopts_the_running_build(cloudbuild, gcs, context, make_host):
    fake, url = cloudbuild
    host = make_host(TrainerImageProvider(), fresh=True)

    def hook(method: str, path: str) -> None:
        if method == "POST":
            fake.hook = None
            host.kill()

    fake.hook = hook
    with pytest.raises(grpc.RpcError):
        host.create(image_inputs(url, gcs, context))
    _, outs = make_host(TrainerImageProvider(), fresh=True).create(image_inputs(url, gcs, context))
    assert outs["built"] is False and outs["build_id"] == "b1" and len(fake.creates()) == 1


def test_context_hash_covers_content_names_and_modes(tmp_path):
    ctx = tmp_path / "c"
    ctx.mkdir()
    (ctx / "a").write_text("1")
    h1 = image.context_hash(ctx)
    (ctx / "a").chmod(0o755)
    h2 = image.context_hash(ctx)
    (ctx / "a").rename(ctx / "b")
    h3 = image.context_hash(ctx)
    assert len({h1, h2, h3}) == 3
    assert image.context_tarball(ctx) == image.context_tarball(ctx)  # reproducible
