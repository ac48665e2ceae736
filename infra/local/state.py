"""Resources of the local API as JSON files under ``$TUNESTACK_HOME/local/state``.

Each resource is one file ``state/<collection>/<id>.json`` holding ``{"resource": <the REST
JSON, camelCase>, "internal": <server bookkeeping: pid, log path, ...>}``, written atomically,
so jobs, endpoints and models survive a server restart (or a kill -9).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from infra.local import home

COLLECTIONS = ("tuningJobs", "customJobs", "endpoints", "models", "operations")


class Store:
    """Thread-safe in-memory view of the state directory, written through on every change.

    Args:
        root: The state directory. Default: ``$TUNESTACK_HOME/local/state``.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home.local_dir() / "state"
        self.lock = threading.RLock()
        self._data: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in COLLECTIONS}
        self._last_id = 0
        with contextlib.suppress(OSError, ValueError):
            self._last_id = int(json.loads((self.root / "last_id.json").read_text()))
        for collection in COLLECTIONS:
            folder = self.root / collection
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(folder.glob("*.json")):
                try:
                    self._data[collection][path.stem] = json.loads(path.read_text())
                except ValueError:
                    continue  # a torn file cannot happen (atomic writes); skip foreign junk
                if path.stem.isdigit():
                    self._last_id = max(self._last_id, int(path.stem))

    def new_id(self) -> str:
        """A fresh numeric id (Vertex ids are numeric strings), increasing across restarts.

        The last id is written down before it is handed out, so an id taken just before a
        crash is never handed out again, whatever the clock does.
        """
        with self.lock:
            self._last_id = max(self._last_id + 1, int(time.time() * 1000))
            home.write_json_atomic(self.root / "last_id.json", self._last_id)
            return str(self._last_id)

    def put(
        self,
        collection: str,
        rid: str,
        resource: dict[str, Any],
        internal: dict[str, Any] | None = None,
    ) -> None:
        """Stores (creates or replaces) one resource and its bookkeeping."""
        with self.lock:
            old = self._data[collection].get(rid, {})
            entry = {
                "resource": resource,
                "internal": internal if internal is not None else old.get("internal", {}),
            }
            self._data[collection][rid] = entry
            home.write_json_atomic(self.root / collection / f"{rid}.json", entry)

    def get(self, collection: str, rid: str) -> dict[str, Any] | None:
        """The ``{"resource", "internal"}`` entry (a deep copy), or None."""
        with self.lock:
            entry = self._data[collection].get(rid)
            return json.loads(json.dumps(entry)) if entry is not None else None

    def items(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        """All ``(id, entry)`` pairs of a collection, oldest id first (deep copies)."""
        with self.lock:
            pairs = sorted(self._data[collection].items(), key=lambda kv: (len(kv[0]), kv[0]))
            return [(k, json.loads(json.dumps(v))) for k, v in pairs]

    def delete(self, collection: str, rid: str) -> bool:
        """Removes a resource; False when it did not exist."""
        with self.lock:
            if self._data[collection].pop(rid, None) is None:
                return False
            (self.root / collection / f"{rid}.json").unlink(missing_ok=True)
            return True


def now() -> str:
    """The current time as an RFC 3339 UTC timestamp (the form Vertex returns)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
