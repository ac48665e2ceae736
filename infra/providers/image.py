"""The trainer image: built by Cloud Build into Artifact Registry, tagged by content hash.

The tag is a hash of the build context, so an unchanged ``trainer_image/`` builds nothing:
before building we ask Cloud Build for a build tagged with that hash (successful: reuse its
image; running: wait for it, which also makes a re-run after a crash adopt the build instead
of starting another).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, ClassVar

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.devtools import cloudbuild_v1 as cb
from google.protobuf import duration_pb2
from pulumi.dynamic import CreateResult, ReadResult

from infra import gcs
from infra.plan.inputs import TrainerImageArgs, input_names, replacing, required
from infra.providers.base import TunestackProvider, inputs_of, poll_settings
from infra.vertex.errors import DeadlineExceeded, VertexError
from infra.wait import poll

#: Paths never part of the build context (caches and local build output).
IGNORED_DIRS = frozenset(
    {"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "build", "dist"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
TAG_LENGTH = 24
BUILD_TAG_PREFIX = "ctx-"
TERMINAL_BUILD = frozenset(
    {"SUCCESS", "FAILURE", "INTERNAL_ERROR", "TIMEOUT", "CANCELLED", "EXPIRED"}
)
DOCKER_BUILDER = "gcr.io/cloud-builders/docker"


def context_files(context_dir: str | Path) -> list[Path]:
    """Files of the build context, sorted, without caches (relative paths)."""
    root = Path(context_dir)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in IGNORED_DIRS and not d.endswith(IGNORED_SUFFIXES)
        )
        for name in sorted(filenames):
            if not name.endswith(IGNORED_SUFFIXES):
                out.append((Path(dirpath) / name).relative_to(root))
    return sorted(out)


def context_hash(context_dir: str | Path) -> str:
    """sha256 over each file's path, executable bit and content; the image tag's source."""
    root = Path(context_dir)
    digest = hashlib.sha256()
    for rel in context_files(root):
        path = root / rel
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{rel.as_posix()}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def context_tarball(context_dir: str | Path) -> bytes:
    """A reproducible gzipped tarball of the context (fixed mtimes, owners and order)."""
    root = Path(context_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in context_files(root):
            path = root / rel
            info = tarfile.TarInfo(rel.as_posix())
            info.size = path.stat().st_size
            info.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.mtime = 0
            with path.open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def image_uri(location: str, project: str, repository: str, image_name: str, tag: str) -> str:
    """``{location}-docker.pkg.dev/{project}/{repository}/{image}:{tag}``."""
    return f"{location}-docker.pkg.dev/{project}/{repository}/{image_name}:{tag}"


def build_client(api_endpoint: str | None) -> cb.CloudBuildClient:
    """Cloud Build client; an endpoint override (tests) talks REST without credentials."""
    if api_endpoint:
        return cb.CloudBuildClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=api_endpoint),
            credentials=AnonymousCredentials(),
        )
    return cb.CloudBuildClient()


def find_build(
    client: cb.CloudBuildClient, project: str, location: str, tag: str
) -> cb.Build | None:
    """The newest build tagged with this context hash that succeeded or is still running."""
    builds = client.list_builds(
        request=cb.ListBuildsRequest(
            parent=f"projects/{project}/locations/{location}",
            filter=f'tags="{BUILD_TAG_PREFIX}{tag}"',
        )
    )
    for build in builds:  # newest first
        if BUILD_TAG_PREFIX + tag not in build.tags:
            continue
        status = cb.Build.Status(build.status).name
        if status == "SUCCESS" or status not in TERMINAL_BUILD:
            return build
    return None


def ensure_image(inputs: dict[str, Any], **poll: float) -> dict[str, Any]:
    """Builds the image unless a build of the same context hash exists; waits for it.

    Returns:
        ``{"image_uri", "tag", "build_id", "built"}``.

    Raises:
        VertexError: the build failed (its status detail).
        DeadlineExceeded: the build did not finish by the deadline.
    """
    project, location = inputs["project"], inputs["location"]
    tag = context_hash(inputs["context_dir"])[:TAG_LENGTH]
    uri = image_uri(
        location, project, inputs["repository"], inputs.get("image_name") or "trainer", tag
    )
    client = build_client(inputs.get("api_endpoint"))
    parent = f"projects/{project}/locations/{location}"
    deadline = float(inputs.get("deadline_seconds") or 3600)
    build = find_build(client, project, location, tag)
    built = False
    if build is None:
        bucket = inputs.get("source_bucket") or f"{project}_cloudbuild"
        obj = f"tunestack/trainer-{tag}.tgz"
        storage = gcs.client(project, inputs.get("storage_endpoint"))
        # gcloud's convention: the source bucket is created on first use.
        source = storage.lookup_bucket(bucket) or storage.create_bucket(bucket, location=location)
        blob = source.blob(obj)
        blob.upload_from_string(
            context_tarball(inputs["context_dir"]), content_type="application/gzip"
        )
        # parent only (no project_id): the GAPIC REST transport then picks the regional route.
        request = cb.CreateBuildRequest(
            parent=parent,
            build=cb.Build(
                source=cb.Source(storage_source=cb.StorageSource(bucket=bucket, object_=obj)),
                steps=[cb.BuildStep(name=DOCKER_BUILDER, args=["build", "-t", uri, "."])],
                images=[uri],
                tags=["tunestack", BUILD_TAG_PREFIX + tag],
                timeout=duration_pb2.Duration(seconds=int(deadline)),
            ),
        )
        build = client.create_build(request=request).metadata.build
        built = True
    build = wait_build(client, parent, build.id, deadline, **poll)
    status = cb.Build.Status(build.status).name
    if status != "SUCCESS":
        raise VertexError(f"Cloud Build {build.id} for {uri} ended {status}: {build.status_detail}")
    return {"image_uri": uri, "tag": tag, "build_id": build.id, "built": built}


def wait_build(
    client: cb.CloudBuildClient,
    parent: str,
    build_id: str,
    deadline_s: float,
    *,
    initial_delay: float = 2.0,
    max_delay: float = 30.0,
) -> cb.Build:
    """Polls a build until it is terminal (bounded deadline, exponential backoff)."""
    name = f"{parent}/builds/{build_id}"
    return poll(
        lambda: client.get_build(request=cb.GetBuildRequest(name=name)),
        lambda build: cb.Build.Status(build.status).name in TERMINAL_BUILD,
        deadline_s,
        lambda _build: DeadlineExceeded(
            f"Cloud Build {build_id} not finished after {deadline_s:.0f} s"
        ),
        initial_delay=initial_delay,
        max_delay=max_delay,
    )


class TrainerImageProvider(TunestackProvider):
    """Cloud Build of the trainer image; the content hash decides whether anything is built.

    ``check`` computes the hash into the hidden input ``context_hash``, so editing the context
    shows as a diff (and a new image) on the next ``up``.
    """

    # ``context_hash`` is hidden: ``check`` computes it, and a new hash is a new image.
    INPUTS: ClassVar[tuple[str, ...]] = (*input_names(TrainerImageArgs), "context_hash")
    REPLACES: ClassVar[frozenset[str]] = replacing(TrainerImageArgs) | {"context_hash"}
    REQUIRED: ClassVar[tuple[str, ...]] = required(TrainerImageArgs)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("image_uri", "tag", "build_id", "built")

    def check(self, olds: dict[str, Any], news: dict[str, Any]):  # type: ignore[override]
        news = dict(news)
        context = news.get("context_dir")
        if isinstance(context, str) and Path(context).is_dir():
            news["context_hash"] = context_hash(context)
        return super().check(olds, news)

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        context = news.get("context_dir")
        if isinstance(context, str) and not Path(context).is_dir():
            return [("context_dir", f"{context} is not a directory")]
        return []

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = inputs_of(props, self.INPUTS)
        outs = {**inputs, **ensure_image(inputs, **poll_settings())}
        outs["context_hash"] = context_hash(inputs["context_dir"])
        return CreateResult(outs["image_uri"], outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {k: props.get(k) for k in (*self.INPUTS, *self.OUTPUTS)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Images stay in Artifact Registry (the repository's cleanup policy owns them)."""
