"""What every handler of one server shares: state, scheduler, model cache, caps and faults."""

from __future__ import annotations

from typing import Any

from infra import gcs
from infra.local.api.errors import ApiError
from infra.local.api.faults import Faults
from infra.local.api.settings import Settings
from infra.local.api.wire import TYPE_PREFIX, Rendered
from infra.local.predict import Limiter, ModelCache
from infra.local.scheduler import Scheduler
from infra.local.state import Store, now

#: Collection -> the v1beta1 type name of its resources.
TYPES = {
    "tuningJobs": "TuningJob",
    "customJobs": "CustomJob",
    "endpoints": "Endpoint",
    "models": "Model",
}


class Context:
    """State, job scheduler, model cache and caps of one ``tunestack serve``.

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
        self.scheduler = Scheduler(
            self.store,
            storage_url,
            settings.smoke,
            token=token,
            watchdog_s=settings.job_watchdog_s,
        )
        self.models = ModelCache()
        self.limiter = Limiter(settings.predict_concurrency)
        self.gcs = gcs.client(endpoint=storage_url, token=token)
        self.faults: Faults | None = Faults() if settings.faults else None

    def get(self, collection: str, rid: str, parent: str | None = None) -> dict[str, Any]:
        """A stored resource.

        Args:
            collection: Its collection.
            rid: Its id.
            parent: ``projects/P/locations/L`` of the request path: a resource of another
                project or location is not found, as on Vertex.

        Raises:
            ApiError: 404 when there is none (under ``parent``).
        """
        entry = self.store.get(collection, rid)
        if entry is None or (
            parent is not None and not entry["resource"]["name"].startswith(parent + "/")
        ):
            where = f"{parent}/{collection}/{rid}" if parent else rid
            raise ApiError(404, f"{TYPES.get(collection) or 'Operation'} {where} not found")
        return dict[str, Any](entry["resource"])

    def complete_operation(
        self,
        op_id: str,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Marks an operation done with its response or error."""
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

    def done_operation(self, parent: str, metadata_type: str, response: dict[str, Any]) -> Rendered:
        """A new operation that is already done (undeploy, deletes)."""
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
