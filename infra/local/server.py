"""The local Vertex AI REST API: the subset the tuning flow uses, at ``/v1`` and ``/v1beta1``.

Request bodies parse into the real ``aiplatform_v1beta1`` proto types (unknown fields are
errors, enums by name or number, int64 as strings), so shape errors surface here the way
Vertex reports them; responses are those protos as JSON (enums as numbers when the client asks
with ``$alt=json;enum-encoding=int``, as Google's SDK does). Errors use Google's JSON error
shape; calls outside the subset answer 501 naming the method.

Security (see docs/local.md): 127.0.0.1 by default, a bearer token on every route, a
Host/Origin allowlist against DNS rebinding, no CORS headers, a body size cap (413), a
``max_tokens`` cap, and a cap on concurrent predictions answered with 429, never queued.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from google.cloud.aiplatform_v1 import types as v1  # registers the v1 Any types we answer with
from google.cloud.aiplatform_v1beta1 import types as v1beta1
from google.longrunning import operations_pb2
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra import catalog
from infra.local import home, jobs, storage
from infra.local.predict import MAX_TOKENS_CAP, InstanceError, Limiter, ModelCache, parse_instance
from infra.local.state import Store, now

TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1beta1."
_V1_TYPES = v1  # imported for its side effect: v1 payload types in the descriptor pool
DEFAULT_PORT = 8470
DEFAULT_BODY_LIMIT = 8 * 1024 * 1024
DEFAULT_PREDICT_CONCURRENCY = 2

# HTTP status -> google.rpc status name, for Google's JSON error shape.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answered in Google's shape: ``{"error": {"code", "message", "status"}}``."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or _STATUS.get(code, "UNKNOWN")

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": str(self), "status": self.status}},
            status_code=self.code,
        )


@dataclass
class Settings:
    """How one server instance runs.

    Attributes:
        port: TCP port of the API (0: a free one).
        host: Bind address; 127.0.0.1 unless the user says otherwise.
        storage_port: Port of the GCS emulator (0: a free one).
        smoke: Replace unmapped catalog base models by tiny random models.
        body_limit: Largest request body in bytes (413 beyond).
        max_tokens: Largest ``max_tokens`` per prediction instance.
        predict_concurrency: Predictions running at once; more answer 429.
        extra_hosts: Host names accepted besides localhost names (with a non-local bind).
    """

    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    storage_port: int = 0
    smoke: bool = False
    body_limit: int = DEFAULT_BODY_LIMIT
    max_tokens: int = MAX_TOKENS_CAP
    predict_concurrency: int = DEFAULT_PREDICT_CONCURRENCY
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)


class LocalApi:
    """State, job scheduler, model cache and the HTTP app of one ``tunestack serve``.

    Args:
        settings: Server settings (the port must already be known: the bound one).
        storage_url: The GCS emulator URL.
        token: The bearer token.
    """

    def __init__(self, settings: Settings, storage_url: str, token: str) -> None:
        self.settings = settings
        self.storage_url = storage_url
        self.token = token
        self.store = Store()
        self.scheduler = jobs.Scheduler(self.store, storage_url, settings.smoke)
        self.models = ModelCache()
        self.limiter = Limiter(settings.predict_concurrency)
        self.gcs = storage.client(storage_url)
        names = {"127.0.0.1", "localhost", "[::1]", *settings.extra_hosts}
        self.allowed_hosts = {f"{n}:{settings.port}" for n in names} | names
        self.allowed_origins = {f"http://{n}:{settings.port}" for n in names}
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            (
                "POST",
                _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/tuningJobs"),
                self.create_tuning_job,
            ),
            (
                "GET",
                _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/tuningJobs"),
                self.list_jobs("tuningJobs"),
            ),
            (
                "GET",
                _rx(r"projects/[^/]+/locations/[^/]+/tuningJobs/(?P<id>[^/:]+)"),
                self.get_job("tuningJobs"),
            ),
            (
                "POST",
                _rx(r"projects/[^/]+/locations/[^/]+/tuningJobs/(?P<id>[^/:]+):cancel"),
                self.cancel_job("tuningJobs"),
            ),
            (
                "POST",
                _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/customJobs"),
                self.create_custom_job,
            ),
            (
                "GET",
                _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/customJobs"),
                self.list_jobs("customJobs"),
            ),
            (
                "GET",
                _rx(r"projects/[^/]+/locations/[^/]+/customJobs/(?P<id>[^/:]+)"),
                self.get_job("customJobs"),
            ),
            (
                "POST",
                _rx(r"projects/[^/]+/locations/[^/]+/customJobs/(?P<id>[^/:]+):cancel"),
                self.cancel_job("customJobs"),
            ),
            ("POST", _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+):deploy"), self.deploy),
            (
                "GET",
                _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/endpoints"),
                self.list_endpoints,
            ),
            (
                "GET",
                _rx(r"projects/[^/]+/locations/[^/]+/endpoints/(?P<id>[^/:]+)"),
                self.get_endpoint,
            ),
            (
                "DELETE",
                _rx(r"projects/[^/]+/locations/[^/]+/endpoints/(?P<id>[^/:]+)"),
                self.delete_endpoint,
            ),
            (
                "POST",
                _rx(r"projects/[^/]+/locations/[^/]+/endpoints/(?P<id>[^/:]+):undeployModel"),
                self.undeploy_model,
            ),
            ("GET", _rx(r"(?P<parent>projects/[^/]+/locations/[^/:]+)/models"), self.list_models),
            (
                "GET",
                _rx(r"projects/[^/]+/locations/[^/]+/models/(?P<id>[^/:@]+)(@[^/:]+)?"),
                self.get_model,
            ),
            (
                "DELETE",
                _rx(r"projects/[^/]+/locations/[^/]+/models/(?P<id>[^/:@]+)"),
                self.delete_model,
            ),
            (
                "GET",
                _rx(r"projects/[^/]+/locations/[^/]+(/[^/]+/[^/]+)*/operations/(?P<id>[^/:]+)"),
                self.get_operation,
            ),
        ]

    # -- the app ---------------------------------------------------------------------------

    def app(
        self,
        lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
    ) -> Starlette:
        """The Starlette application (every path goes through :meth:`handle`)."""
        return Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self.handle,
                    methods=["GET", "POST", "DELETE", "PATCH", "PUT", "OPTIONS", "HEAD"],
                )
            ],
            lifespan=lifespan,
        )

    async def handle(self, request: Request) -> Response:
        """Checks Host, Origin, token and body size, then dispatches to a method handler."""
        try:
            self._check_request(request)
            body = await self._read_body(request)
            return await self._dispatch(request, body)
        except ApiError as e:
            return e.response()
        except Exception as e:  # a bug must still answer in Google's shape, and say what
            print(
                f"tunestack serve: {request.method} {request.url.path}: {e!r}",
                file=sys.stderr,
                flush=True,
            )
            return ApiError(
                500, f"internal error in the local API: {type(e).__name__}: {e}"
            ).response()

    def _check_request(self, request: Request) -> None:
        # Host first: a DNS-rebound page must be refused before it learns anything else.
        if request.headers.get("host", "").lower() not in self.allowed_hosts:
            raise ApiError(
                403,
                "Host not allowed: the local API only answers localhost names (DNS rebinding protection)",
            )
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() not in self.allowed_origins:
            raise ApiError(403, f"Origin not allowed: {origin}")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise ApiError(
                401,
                "Request had invalid or missing authentication credentials: send Authorization: Bearer <token from $TUNESTACK_HOME/local/token>",
            )

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.body_limit
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(
                413, f"Request body of {declared} bytes exceeds the limit of {limit} bytes"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"Request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dispatch(self, request: Request, body: bytes) -> Response:
        raw_path = request.url.path
        version, _, rest = raw_path.lstrip("/").partition("/")
        if version not in ("v1", "v1beta1", "ui", "local"):
            raise ApiError(404, f"No such API version: /{version}")
        if version == "local":
            return self._local_route(request, rest)
        ints = "enum-encoding=int" in request.query_params.get("$alt", "")
        m = re.fullmatch(r"(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+):predict", rest)
        if m and request.method == "POST":
            return await self.predict(m["name"], _json_body(body))
        for method, rx, handler in self.routes:
            m = rx.fullmatch(rest)
            if m and method == request.method:
                call = functools.partial(handler, m, dict(request.query_params), body)
                result = await anyio.to_thread.run_sync(call)
                return JSONResponse(_render(result, ints, version))
        raise ApiError(
            501,
            f"{request.method} /{version}/{rest} is not implemented by the local Vertex AI API (tunestack serve)",
        )

    def _local_route(self, request: Request, rest: str) -> Response:
        # Non-Vertex helpers for the tunestack CLI (authenticated like everything else).
        if rest == "v1/status" and request.method == "GET":
            return JSONResponse(
                {
                    "pid": os.getpid(),
                    "smoke": self.settings.smoke,
                    "storage_url": self.storage_url,
                    "predict_concurrency": self.limiter.cap,
                    "max_tokens": self.settings.max_tokens,
                }
            )
        m = re.fullmatch(r"v1/(?P<c>tuningJobs|customJobs)/(?P<id>[^/]+)/log", rest)
        if m and request.method == "GET":
            path = self.scheduler.log_path(m["c"], m["id"])
            tail = int(request.query_params.get("tail", "20"))
            lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else []
            return JSONResponse({"log": str(path), "lines": lines})
        raise ApiError(501, f"{request.method} /local/{rest} is not implemented")

    # -- tuning and custom jobs ------------------------------------------------------------

    def create_tuning_job(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        job = _parse(v1beta1.TuningJob, body)
        spec = job.get("supervisedTuningSpec")
        if not spec or not spec.get("trainingDatasetUri"):
            raise ApiError(
                400,
                "supervisedTuningSpec.trainingDatasetUri is required (the local API runs supervised tuning only)",
            )
        base = job.get("baseModel", "")
        entry = catalog.model(base)
        if entry is None:
            raise ApiError(
                400,
                f"baseModel {base!r} is not an open model that supports tuning; known: {', '.join(catalog.MODELS)}",
            )
        mode = {
            "TUNING_MODE_FULL": catalog.FULL,
            "TUNING_MODE_PEFT_ADAPTER": catalog.PEFT_ADAPTER,
        }.get(spec.get("tuningMode", ""), catalog.FULL)
        if mode not in entry.tuning_modes:
            raise ApiError(
                400,
                f"tuningMode {mode} is not supported for {base} (supported: {', '.join(entry.tuning_modes)})",
            )
        hyper = spec.get("hyperParameters", {})
        if hyper.get("learningRate") and hyper.get("learningRateMultiplier"):
            raise ApiError(400, "learningRate and learningRateMultiplier are mutually exclusive")
        if hyper.get("adapterSize") and mode == catalog.FULL:
            raise ApiError(400, "adapterSize applies to PEFT_ADAPTER tuning only")
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            if spec.get(key) and not spec[key].startswith("gs://"):
                raise ApiError(400, f"supervisedTuningSpec.{key} must be a gs:// URI")
        if not str(job.get("outputUri", "")).startswith("gs://"):
            raise ApiError(400, "outputUri must be a gs:// URI for open-model tuning")
        rid = self.store.new_id()
        job["name"] = f"{m['parent']}/tuningJobs/{rid}"
        job.setdefault("tunedModelDisplayName", f"{base.split('@')[-1]}-tuned-{rid}")
        if self.settings.smoke and not job.get("customBaseModel") and base not in home.model_map():
            # Labelled in metadata, never silently: these weights are random.
            job["labels"] = {**job.get("labels", {}), jobs.SMOKE_LABEL: "true"}
            note = f"SMOKE: {base} replaced by a tiny random-initialised {entry.family} model (tunestack serve --smoke)."
            job["description"] = f"{job.get('description', '')} {note}".strip()
        return self._queue("tuningJobs", rid, job)

    def create_custom_job(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        job = _parse(v1beta1.CustomJob, body)
        pools = job.get("jobSpec", {}).get("workerPoolSpecs", [])
        if not pools or "containerSpec" not in pools[0]:
            raise ApiError(
                400,
                "jobSpec.workerPoolSpecs[0].containerSpec is required (the local API runs the trainer in place of the container)",
            )
        if not job.get("displayName"):
            raise ApiError(400, "displayName is required")
        rid = self.store.new_id()
        job["name"] = f"{m['parent']}/customJobs/{rid}"
        if self.settings.smoke:
            job["labels"] = {**job.get("labels", {}), jobs.SMOKE_LABEL: "true"}
        return self._queue("customJobs", rid, job)

    def _queue(self, collection: str, rid: str, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        job["state"] = "JOB_STATE_QUEUED"
        job["createTime"] = job["updateTime"] = now()
        self.store.put(collection, rid, job, {})
        self.scheduler.wake()
        return _type_of(collection), job

    def list_jobs(self, collection: str) -> Callable[..., tuple[str, dict[str, Any]]]:
        def handler(
            m: re.Match[str], query: dict[str, str], body: bytes
        ) -> tuple[str, dict[str, Any]]:
            items = self._list(collection, m["parent"], query)
            return f"List{collection[0].upper()}{collection[1:]}Response", {
                collection: items[0],
                "nextPageToken": items[1],
            }

        return handler

    def get_job(self, collection: str) -> Callable[..., tuple[str, dict[str, Any]]]:
        def handler(
            m: re.Match[str], query: dict[str, str], body: bytes
        ) -> tuple[str, dict[str, Any]]:
            return _type_of(collection), self._get(collection, m["id"])

        return handler

    def cancel_job(self, collection: str) -> Callable[..., tuple[str, dict[str, Any]]]:
        def handler(
            m: re.Match[str], query: dict[str, str], body: bytes
        ) -> tuple[str, dict[str, Any]]:
            self._get(collection, m["id"])
            self.scheduler.cancel(collection, m["id"])
            return "google.protobuf.Empty", {}

        return handler

    # -- deploy, endpoints, models ---------------------------------------------------------

    def deploy(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        req = _parse(v1beta1.DeployRequest, body)
        gcs_uri = req.get("customModel", {}).get("gcsUri")
        if not gcs_uri:
            which = next(
                (k for k in ("publisherModelName", "huggingFaceModelId") if req.get(k)),
                "this model source",
            )
            raise ApiError(
                501,
                f"ModelGardenService.Deploy with {which} is not implemented locally: deploy customModel.gcsUri weights",
            )
        if not gcs_uri.startswith("gs://"):
            raise ApiError(400, "customModel.gcsUri must be a gs:// URI")
        parent = m["parent"]
        model_id, endpoint_id, op_id = self.store.new_id(), self.store.new_id(), self.store.new_id()
        stamp = now()
        display = (
            req.get("modelConfig", {}).get("modelDisplayName")
            or f"custom-{gcs_uri.rstrip('/').split('/')[-1]}-{model_id}"
        )
        model = {
            "name": f"{parent}/models/{model_id}",
            "displayName": display,
            "artifactUri": gcs_uri,
            "versionId": "1",
            "createTime": stamp,
            "updateTime": stamp,
            "versionCreateTime": stamp,
            "versionUpdateTime": stamp,
        }
        endpoint = {
            "name": f"{parent}/endpoints/{endpoint_id}",
            "displayName": req.get("endpointConfig", {}).get("endpointDisplayName")
            or f"{display}-endpoint",
            "createTime": stamp,
            "updateTime": stamp,
        }
        local_dir = home.local_dir() / "cache" / "models" / model_id
        self.store.put("models", model_id, model, {"gcsUri": gcs_uri, "localDir": str(local_dir)})
        self.store.put(
            "endpoints",
            endpoint_id,
            endpoint,
            {"pendingModel": model_id, "deployConfig": req.get("deployConfig", {})},
        )
        op = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": TYPE_PREFIX + "DeployOperationMetadata",
                "genericMetadata": {"createTime": stamp, "updateTime": stamp},
                "destination": parent,
                "modelId": model_id,
            },
            "done": False,
        }
        self.store.put("operations", op_id, op, {})
        threading.Thread(
            target=self._finish_deploy,
            args=(op_id, endpoint_id, model_id),
            name=f"deploy-{op_id}",
            daemon=True,
        ).start()
        return "", op

    def _finish_deploy(self, op_id: str, endpoint_id: str, model_id: str) -> None:
        model = self.store.get("models", model_id)
        endpoint = self.store.get("endpoints", endpoint_id)
        assert model is not None and endpoint is not None
        gcs_uri, local_dir = model["internal"]["gcsUri"], Path(model["internal"]["localDir"])
        try:
            self._materialise(gcs_uri, local_dir)
            self.models.get(
                local_dir
            )  # load now: a broken checkpoint fails the deploy, not the first predict
        except Exception as e:
            # Vertex reports deploy failures on the operation; nothing half-deployed is left behind.
            self.store.delete("endpoints", endpoint_id)
            self.store.delete("models", model_id)
            shutil.rmtree(local_dir, ignore_errors=True)
            self._complete_op(op_id, error={"code": 9, "message": f"cannot deploy {gcs_uri}: {e}"})
            return
        resource = endpoint["resource"]
        config = endpoint["internal"].get("deployConfig", {})
        deployed = {
            "id": model_id,
            "model": model["resource"]["name"],
            "displayName": model["resource"]["displayName"],
            "createTime": now(),
            "modelVersionId": "1",
        }
        if config.get("dedicatedResources"):
            deployed["dedicatedResources"] = config["dedicatedResources"]
        resource["deployedModels"] = [deployed]
        resource["trafficSplit"] = {model_id: 100}
        resource["updateTime"] = now()
        self.store.put("endpoints", endpoint_id, resource, {"deployedModel": model_id})
        response = {
            "@type": TYPE_PREFIX + "DeployResponse",
            "endpoint": resource["name"],
            "model": model["resource"]["name"],
        }
        self._complete_op(op_id, response=response)

    def _materialise(self, gcs_uri: str, local_dir: Path) -> None:
        if (local_dir / "config.json").exists():
            return
        tmp = local_dir.with_name(local_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        count = storage.download_prefix(self.gcs, gcs_uri, tmp)
        if count == 0:
            raise FileNotFoundError(f"no objects under {gcs_uri}")
        if not (tmp / "config.json").exists():
            raise FileNotFoundError(
                f"{gcs_uri} has no config.json: custom weights must be in Hugging Face format"
            )
        shutil.rmtree(local_dir, ignore_errors=True)
        os.replace(tmp, local_dir)

    def _complete_op(
        self,
        op_id: str,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        entry = self.store.get("operations", op_id)
        assert entry is not None
        op = entry["resource"]
        op["done"] = True
        op["metadata"]["genericMetadata"]["updateTime"] = now()
        if error is not None:
            op["error"] = error
        else:
            op["response"] = response
        self.store.put("operations", op_id, op)

    def _done_op(
        self, parent: str, metadata_type: str, response: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        op_id = self.store.new_id()
        stamp = now()
        op = {
            "name": f"{parent}/operations/{op_id}",
            "metadata": {
                "@type": TYPE_PREFIX + metadata_type,
                "genericMetadata": {"createTime": stamp, "updateTime": stamp},
            },
            "done": True,
            "response": response,
        }
        self.store.put("operations", op_id, op, {})
        return "", op

    def list_endpoints(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        items, token = self._list("endpoints", m["parent"], query)
        return "ListEndpointsResponse", {"endpoints": items, "nextPageToken": token}

    def get_endpoint(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        return "Endpoint", self._get("endpoints", m["id"])

    def undeploy_model(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        req = _parse(v1beta1.UndeployModelRequest, body)
        with self.store.lock:
            resource = self._get("endpoints", m["id"])
            wanted = req.get("deployedModelId")
            kept = [d for d in resource.get("deployedModels", []) if d["id"] != wanted]
            if len(kept) == len(resource.get("deployedModels", [])):
                raise ApiError(
                    400,
                    f"Deployed model {wanted!r} not found on {resource['name']}",
                    "FAILED_PRECONDITION",
                )
            resource["deployedModels"] = kept
            resource.pop("trafficSplit", None)
            resource["updateTime"] = now()
            self.store.put("endpoints", m["id"], resource, {})
        model = self.store.get("models", wanted or "")
        if model is not None:
            self.models.drop(Path(model["internal"]["localDir"]))
        parent = resource["name"].rsplit("/endpoints/", 1)[0]
        return self._done_op(
            parent,
            "UndeployModelOperationMetadata",
            {"@type": TYPE_PREFIX + "UndeployModelResponse"},
        )

    def delete_endpoint(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        with self.store.lock:
            resource = self._get("endpoints", m["id"])
            if resource.get("deployedModels"):
                raise ApiError(
                    400,
                    f"Endpoint {resource['name']} has deployed models: undeploy them first",
                    "FAILED_PRECONDITION",
                )
            self.store.delete("endpoints", m["id"])
        parent = resource["name"].rsplit("/endpoints/", 1)[0]
        return self._done_op(
            parent,
            "DeleteOperationMetadata",
            {"@type": "type.googleapis.com/google.protobuf.Empty"},
        )

    def list_models(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        items, token = self._list("models", m["parent"], query)
        return "ListModelsResponse", {"models": items, "nextPageToken": token}

    def get_model(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        return "Model", self._get("models", m["id"])

    def delete_model(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        with self.store.lock:
            resource = self._get("models", m["id"])
            for _, entry in self.store.items("endpoints"):
                if (
                    any(d["id"] == m["id"] for d in entry["resource"].get("deployedModels", []))
                    or entry["internal"].get("pendingModel") == m["id"]
                ):
                    raise ApiError(
                        400,
                        f"Model {resource['name']} is deployed to {entry['resource']['name']}: undeploy it first",
                        "FAILED_PRECONDITION",
                    )
            model = self.store.get("models", m["id"])
            self.store.delete("models", m["id"])
        if model is not None:
            self.models.drop(Path(model["internal"]["localDir"]))
            shutil.rmtree(model["internal"]["localDir"], ignore_errors=True)
        parent = resource["name"].rsplit("/models/", 1)[0]
        return self._done_op(
            parent,
            "DeleteOperationMetadata",
            {"@type": "type.googleapis.com/google.protobuf.Empty"},
        )

    def get_operation(
        self, m: re.Match[str], query: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, Any]]:
        return "", self._get("operations", m["id"])

    # -- predict ---------------------------------------------------------------------------

    async def predict(self, name: str, body: Any) -> Response:
        """``POST {endpoint}:predict``: 429 at once when ``predict_concurrency`` calls run."""
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("instances"), list)
            or not body["instances"]
        ):
            raise ApiError(400, "predict needs a non-empty instances list")
        unknown = set(body) - {"instances", "parameters"}
        if unknown:
            raise ApiError(
                400, f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}"
            )
        try:
            instances = [parse_instance(i, self.settings.max_tokens) for i in body["instances"]]
        except InstanceError as e:
            raise ApiError(400, str(e)) from None
        entry = self.store.get("endpoints", name.rsplit("/", 1)[-1])
        if entry is None:
            raise ApiError(404, f"Endpoint {name} not found")
        deployed = entry["resource"].get("deployedModels", [])
        if not deployed:
            raise ApiError(400, f"Endpoint {name} has no deployed model", "FAILED_PRECONDITION")
        model = self.store.get("models", deployed[0]["id"])
        if model is None:
            raise ApiError(400, f"Model of {name} was deleted", "FAILED_PRECONDITION")
        if not self.limiter.try_acquire():
            raise ApiError(
                429, f"Too many concurrent predictions (cap {self.limiter.cap}); retry later"
            )
        try:
            local_dir = Path(model["internal"]["localDir"])
            gcs_uri = model["internal"]["gcsUri"]

            def run() -> list[str]:
                self._materialise(gcs_uri, local_dir)  # after a restart the cache may be gone
                loaded = self.models.get(local_dir)
                return [loaded.generate(i) for i in instances]

            predictions = await anyio.to_thread.run_sync(run)
        finally:
            self.limiter.release()
        d = deployed[0]
        return JSONResponse(
            {
                "predictions": predictions,
                "deployedModelId": d["id"],
                "model": d["model"],
                "modelDisplayName": d.get("displayName", ""),
                "modelVersionId": d.get("modelVersionId", "1"),
            }
        )

    # -- helpers ---------------------------------------------------------------------------

    def _get(self, collection: str, rid: str) -> dict[str, Any]:
        entry = self.store.get(collection, rid)
        if entry is None:
            raise ApiError(404, f"{_type_of(collection) or 'Operation'} {rid} not found")
        return entry["resource"]

    def _list(
        self, collection: str, parent: str, query: dict[str, str]
    ) -> tuple[list[dict[str, Any]], str]:
        match = _compile_filter(query.get("filter", ""))
        items = [
            e["resource"]
            for _, e in self.store.items(collection)
            if e["resource"]["name"].startswith(parent + "/") and match(e["resource"])
        ]
        items.reverse()  # newest first, as Vertex lists
        start = int(query["pageToken"]) if query.get("pageToken", "").isdigit() else 0
        size = (
            int(query["pageSize"])
            if query.get("pageSize", "").isdigit() and int(query["pageSize"]) > 0
            else 100
        )
        page = items[start : start + size]
        return page, str(start + size) if start + size < len(items) else ""


# -- serving --------------------------------------------------------------------------------


def serve(settings: Settings, ready: Callable[[str, str], None] | None = None) -> None:
    """Runs the emulator and the API until SIGINT/SIGTERM; writes ``api.json`` when ready.

    Args:
        settings: Server settings.
        ready: Called with ``(api_url, storage_url)`` once both answer.

    Raises:
        OSError: when the port is taken.
        RuntimeError: when the emulator cannot start.
    """
    token = home.ensure_token()
    sock = socket.socket(
        socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    settings.port = sock.getsockname()[1]
    emulator = storage.StorageEmulator(settings.storage_port)
    emulator.start()
    api = LocalApi(settings, emulator.url, token)
    api_url = f"http://{'127.0.0.1' if settings.host in ('127.0.0.1', '0.0.0.0') else settings.host}:{settings.port}"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api.scheduler.start()
        home.write_api_file(api_url, emulator.url, os.getpid())
        if ready is not None:
            ready(api_url, emulator.url)
        try:
            yield
        finally:
            # Clean up here, not after run(): uvicorn re-raises SIGTERM/SIGINT once it has
            # shut down, so code after it never runs on a signal.
            _remove_api_file_if_ours()
            await anyio.to_thread.run_sync(api.scheduler.stop)
            emulator.stop()

    config = uvicorn.Config(
        api.app(lifespan),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        emulator.stop()
        _remove_api_file_if_ours()


def _remove_api_file_if_ours() -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(home.api_file().read_text()).get("pid") == os.getpid():
            home.api_file().unlink()


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _type_of(collection: str) -> str:
    return {
        "tuningJobs": "TuningJob",
        "customJobs": "CustomJob",
        "endpoints": "Endpoint",
        "models": "Model",
    }.get(collection, "")


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"{}")
    except ValueError as e:
        raise ApiError(400, f"Invalid JSON payload received. {e}") from None


def _parse(message_type: Any, body: bytes) -> dict[str, Any]:
    """Parses a body into the real proto type (Vertex's shape checks), back to camelCase JSON."""
    _json_body(body)
    try:
        msg = message_type.from_json(body.decode() or "{}", ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise ApiError(400, f"Invalid JSON payload received. {e}") from None
    return json_format.MessageToDict(message_type.pb(msg), use_integers_for_enums=False)


def _render(result: tuple[str, dict[str, Any]], ints: bool, version: str) -> dict[str, Any]:
    """A stored resource through its proto type, so responses are exactly the proto's JSON."""
    type_name, data = result
    if not type_name:
        return _render_operation(data, ints, version)
    if type_name == "google.protobuf.Empty":
        return {}
    message_type = getattr(v1beta1, type_name)
    pb = json_format.ParseDict(data, message_type.pb()(), ignore_unknown_fields=False)
    return json_format.MessageToDict(pb, use_integers_for_enums=ints)


def _render_operation(op: dict[str, Any], ints: bool, version: str) -> dict[str, Any]:
    # A v1 client unpacks operation payloads as v1 types, a v1beta1 (and /ui/) client as v1beta1.
    if version == "v1":
        op = json.loads(
            json.dumps(op).replace(
                '"' + TYPE_PREFIX, '"type.googleapis.com/google.cloud.aiplatform.v1.'
            )
        )
    pb = json_format.ParseDict(op, operations_pb2.Operation(), ignore_unknown_fields=False)
    return json_format.MessageToDict(pb, use_integers_for_enums=ints)


def _compile_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """Vertex list filters: ``labels.k="v"``, ``labels.k:*``, ``state=...``, ``display_name=...``
    joined by AND. Anything else is a 400, not a silently ignored filter."""
    clauses = [c.strip() for c in re.split(r"\s+AND\s+", text.strip()) if c.strip()]
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in clauses:
        m = re.fullmatch(r'labels\.([\w-]+)\s*(=|:)\s*"?([^"]*)"?', clause)
        if m:
            key, op, value = m.groups()
            tests.append(_label_test(key, None if op == ":" and value == "*" else value))
            continue
        m = re.fullmatch(r'(state|display_name|displayName)\s*=\s*"?([^"]*)"?', clause)
        if m:
            attr = {"state": "state", "display_name": "displayName", "displayName": "displayName"}[
                m[1]
            ]
            tests.append(_field_test(attr, m[2]))
            continue
        raise ApiError(
            400,
            f'Unsupported filter {clause!r}: the local API filters on labels.KEY="VALUE", labels.KEY:*, state and display_name',
        )
    return lambda r: all(t(r) for t in tests)


def _label_test(key: str, value: str | None) -> Callable[[dict[str, Any]], bool]:
    """``labels.KEY="VALUE"`` (or ``labels.KEY:*`` when value is None)."""

    def test(resource: dict[str, Any]) -> bool:
        labels = resource.get("labels", {})
        return key in labels if value is None else labels.get(key) == value

    return test


def _field_test(attr: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def test(resource: dict[str, Any]) -> bool:
        return bool(resource.get(attr) == value)

    return test
