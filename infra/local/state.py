"""Resources of the local API as JSON files under ``$TUNESTACK_HOME/local/state``.

Each resource is one file ``state/<collection>/<id>.json`` holding ``{"resource": <the REST
JSON, camelCase>, "internal": <server bookkeeping: pid, log path, ...>}``, written atomically,
so jobs, endpoints and models survive a server restart (or a kill -9). A file that does not
hold such an entry (truncated by a full disk, edited by hand, ``[]``, ``null``) is moved to
``state/quarantine/`` with a warning naming it: never silently dropped, never blocking start.
"""

from __future__ import annotations

import json
import os
import sys
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
        #: Files moved to ``quarantine/`` by this start (their new paths).
        self.quarantined: list[Path] = []
        home.private_dir(self.root)
        last = self.root / "last_id.json"
        if last.exists():
            value = _read_json(last)
            if isinstance(value, int) and not isinstance(value, bool):
                self._last_id = value
            else:
                self._quarantine(last, "not an integer")
        for collection in COLLECTIONS:
            folder = home.private_dir(self.root / collection)
            for path in sorted(folder.glob("*.json")):
                entry = _read_json(path)
                problem = _entry_problem(entry)
                if problem:
                    self._quarantine(path, problem)
                    continue
                self._data[collection][path.stem] = entry
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

    def _quarantine(self, path: Path, problem: str) -> None:
        """Moves an unreadable state file aside and says so on stderr."""
        folder = home.private_dir(self.root / "quarantine")
        target = folder / f"{path.parent.name}-{path.name}.{int(time.time() * 1000)}"
        try:
            os.replace(path, target)
        except OSError as e:
            print(
                f"tunestack: warning: state file {path} {problem} and could not be moved "
                f"aside ({e.strerror}); ignored",
                file=sys.stderr,
                flush=True,
            )
            return
        self.quarantined.append(target)
        print(
            f"tunestack: warning: state file {path} {problem}; moved to {target}",
            file=sys.stderr,
            flush=True,
        )


_MISSING = object()


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or :data:`_MISSING` when it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return _MISSING


def _entry_problem(entry: Any) -> str | None:
    """Why a state file's JSON is not an entry (``{"resource": {...}, "internal": {...}}``)."""
    if entry is _MISSING:
        return "is not valid JSON (truncated or garbage)"
    if not isinstance(entry, dict):
        return f"holds {type(entry).__name__ if entry is not None else 'null'}, not an entry"
    if not isinstance(entry.get("resource"), dict):
        return "has no resource object"
    if not isinstance(entry.get("internal", {}), dict):
        return "has an internal field that is not an object"
    entry.setdefault("internal", {})
    return None


def now() -> str:
    """The current time as an RFC 3339 UTC timestamp (the form Vertex returns)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
