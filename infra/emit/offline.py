"""Run the real program under Pulumi's mocks and record what `pulumi up` would register.

Offline, no credentials: :func:`run_offline` calls :func:`infra.emit.program.build` with
``pulumi.runtime.set_mocks(preview=False)`` on a fresh event loop, and a monitor that records
each registration's type, name, parent, inputs (wire names), dependencies and ``protect``.
Values only the cloud knows (project number, job ids) are shown as deterministic
placeholders (``PROJECT_NUMBER``, ``.../tuningJobs/<resource name>``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc

from infra.catalog import checkpoint_uri
from infra.checks.report import Report
from infra.emit.program import Built, build
from infra.plan import Plan

#: Shown where the real program would read the project number from GCP.
PROJECT_NUMBER = "PROJECT_NUMBER"

#: The repository root: absolute paths under it are shown relative to it (stable across
#: machines and checkouts).
ROOT = Path(__file__).resolve().parents[2]

#: The dynamic resources' pickled provider: a large opaque blob, not a reviewable input.
PROVIDER_KEY = "__provider"


@dataclass
class Registration:
    """One resource as the engine would receive it (``to_json`` is the plan contract's shape;
    ``custom`` and ``retain_on_delete`` are kept for tests and the text view)."""

    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    depends_on: list[str]
    protect: bool
    custom: bool
    retain_on_delete: bool = False

    def to_json(self) -> dict[str, Any]:
        """The resource object of the plan JSON contract."""
        return {
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "depends_on": self.depends_on,
            "protect": self.protect,
        }


@dataclass
class Offline:
    """The result of :func:`run_offline`.

    Attributes:
        plan: The plan the program emitted.
        resources: Registrations, sorted by name.
        outputs: The stack outputs, resolved.
    """

    plan: Plan
    resources: list[Registration]
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``tunestack plan --format json`` document (deterministic)."""
        return {
            "resources": [r.to_json() for r in self.resources],
            "jobs": [
                {
                    "name": j.job,
                    "examples": j.examples,
                    "tokens": j.tokens,
                    "tokens_exact": j.tokens_exact,
                    "epochs": j.epochs,
                    "training_tokens": j.training_tokens,
                    "checkpoints": j.checkpoints,
                    "after": list(j.after),
                    "run_uri": j.run_uri,
                    "final_checkpoint_uri": j.final_uri,
                }
                for j in self.plan.jobs
            ],
            "endpoints": [
                {
                    "name": e.endpoint,
                    "machine_type": e.machine_type,
                    "accelerator_type": e.accelerator_type,
                    "accelerator_count": e.accelerator_count,
                    "weights_gb": e.weights_gb,
                    "fits": e.fits,
                    "job": e.job,
                    "checkpoint": e.checkpoint,
                    "uri": e.serves_uri,
                    "serves": e.serves,
                    "min_replicas": e.min_replicas,
                    "max_replicas": e.max_replicas,
                    "canary_percent": e.canary_percent,
                    "model_uri": e.model_uri,
                }
                for e in self.plan.endpoints
            ],
        }


class CloudMocks(pulumi.runtime.Mocks):
    """Answers registrations and invokes the way GCP and our providers would, deterministically."""

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = {k: v for k, v in args.inputs.items() if k != PROVIDER_KEY}
        return f"{args.name}-id", {**inputs, **_computed(args.typ, args.name, inputs)}

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId", "")
            return {"projectId": project, "number": PROJECT_NUMBER, "name": project}
        return {}


class RecordingMonitor(mocks.MockMonitor):
    """The mocks monitor, also recording parent, dependencies and protect of each resource,
    and every invoke (``calls``: token, args)."""

    def __init__(self, cloud: pulumi.runtime.Mocks) -> None:
        super().__init__(cloud)
        self.registrations: list[Registration] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._names: dict[str, str] = {}

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().Invoke(request)  # also makes this thread's event loop
        self.calls.append((request.tok, dict(rpc.deserialize_properties(request.args))))
        return response

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        self._names[response.urn] = request.name
        inputs = rpc.deserialize_properties(request.object)
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                parent=self._names.get(request.parent),
                inputs=_plain({k: v for k, v in inputs.items() if k != PROVIDER_KEY}),
                depends_on=sorted(
                    {self._names[u] for u in request.dependencies if u in self._names}
                ),
                protect=bool(request.protect),
                custom=bool(request.custom),
                retain_on_delete=bool(request.retainOnDelete),
            )
        )
        return response


@contextlib.contextmanager
def mocked(stack: str = "plan") -> Iterator[RecordingMonitor]:
    """Pulumi's mocks, set up the official way, for one program run.

    A fresh event loop, ``set_mocks(..., preview=False)`` (with preview, outputs the mocks do
    not return stay unknown and checks inside ``apply`` never run) and, on exit,
    ``reset_options()`` so that registrations cannot leak into the next run.

    Yields:
        The monitor recording every registration and invoke.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    monitor = RecordingMonitor(CloudMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks, project="tunestack", stack=stack, preview=False, monitor=monitor
    )
    try:
        yield monitor
    finally:
        pulumi.runtime.reset_options()
        # Join the executor threads the mocks monitor ran in (each made its own event loop)
        # before closing, so no half-collected loop is left for the garbage collector.
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


def run_offline(spec_path: str | Path, report: Report, stack: str = "plan") -> Offline:
    """Runs :func:`build` under mocks and returns what it registered.

    Args:
        spec_path: The YAML spec.
        report: Its :func:`infra.checks.validate` report (must be ok).
        stack: The stack name used in URNs.

    Returns:
        The plan, every registration (sorted by name) and the resolved stack outputs.
    """
    result: dict[str, Any] = {}
    with mocked(stack) as monitor:

        @pulumi.runtime.test
        def program() -> pulumi.Output[Any]:
            built: Built = build(spec_path, report)
            result["plan"] = built.plan
            return pulumi.Output.from_input(built.outputs).apply(
                lambda o: result.__setitem__("outputs", o)
            )

        program()
    resources = sorted(monitor.registrations, key=lambda r: r.name)
    return Offline(
        plan=result["plan"], resources=resources, outputs=_plain(result.get("outputs", {}))
    )


def _computed(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs the cloud computes, for the types whose outputs the program reads."""
    project = inputs.get("project", "")
    location = inputs.get("location", "")
    parent = f"projects/{project}/locations/{location}"
    if typ == "gcp:organizations/project:Project":
        return {"number": PROJECT_NUMBER}
    if typ == "gcp:storage/bucket:Bucket":
        return {
            "url": f"gs://{inputs.get('name')}",
            "selfLink": f"https://www.googleapis.com/storage/v1/b/{inputs.get('name')}",
        }
    if typ == "gcp:projects/serviceIdentity:ServiceIdentity":
        email = f"service-{PROJECT_NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"
        return {"email": email, "member": f"serviceAccount:{email}"}
    if typ.endswith("tunestack:ServiceAgents"):
        domains = ("gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft")
        members = [
            f"serviceAccount:service-{PROJECT_NUMBER}@{d}.iam.gserviceaccount.com" for d in domains
        ]
        return {
            "project_number": PROJECT_NUMBER,
            "members": members,
            "aiplatform_member": members[0],
            "moss_ft_member": members[1],
            "visible": list(domains),
            "missing": [],
        }
    if typ.endswith("tunestack:TuningJob"):
        return {
            "job_name": f"{parent}/tuningJobs/{name}",
            "key": name,
            "adopted": False,
            "state": "JOB_STATE_QUEUED",
        }
    if typ.endswith("tunestack:CustomTrainingJob"):
        return {
            "job_name": f"{parent}/customJobs/{name}",
            "key": name,
            "adopted": False,
            "state": "JOB_STATE_QUEUED",
        }
    if typ.endswith("tunestack:TuningJobCompletion"):
        out = str(inputs.get("output_uri", ""))
        return {
            "state": "JOB_STATE_SUCCEEDED",
            "final_checkpoint_uri": checkpoint_uri(out, "final"),
            "checkpoint_uris": [],
            "tuned_model": f"{parent}/models/{name}",
            "checkpoints": [],
        }
    if typ.endswith("tunestack:TrainerImage"):
        image = f"{location}-docker.pkg.dev/{project}/{inputs.get('repository')}/{inputs.get('image_name') or 'trainer'}"
        return {
            "image_uri": f"{image}:CONTENT_HASH",
            "tag": "CONTENT_HASH",
            "build_id": name,
            "built": True,
        }
    if typ.endswith("tunestack:ModelDeployment"):
        return {
            "endpoint": f"{parent}/endpoints/{name}",
            "model": f"{parent}/models/{name}",
            "key": name,
            "adopted": False,
        }
    return {}


def _plain(value: Any) -> Any:
    """JSON-ready data: assets as ``{"fileAsset": path}``, paths under the repo made relative."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.FileAsset):
        return {"fileAsset": _relative(str(value.path))}
    if isinstance(value, pulumi.StringAsset):
        return {"stringAsset": value.text}
    if isinstance(value, str):
        return _relative(value)
    if isinstance(value, float) and value.is_integer():
        # Protobuf carries every number as a double; 3.0 epochs reads better as 3.
        return int(value)
    return value


def _relative(text: str) -> str:
    root = str(ROOT) + "/"
    return text[len(root) :] if text.startswith(root) else text
