"""Fault injection for tests: scripted job states, slow or failing deploys, ignored filters.

Off unless the server was built with ``Settings(faults=True)`` (no CLI flag sets it); then the
``/v1/tunestack:faults`` route, behind the same bearer token as every route, sets them. With
faults on, the real handlers still answer every call; only what a test cannot make a real
trainer or checkpoint do on cue is scripted:

- ``jobScript``: the states each new job walks through, one per GET of the job, instead of
  running the trainer (``jobError`` is the error of its last state);
- ``deployRequests``: a deploy's (``:deploy`` or ``:deployModel``) operation is done after
  this many further API requests, without loading weights (``deployError``: it fails with
  that message instead);
- ``ignoreFilter``: list calls ignore their filter (a server that does not honour it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from infra import catalog
from infra.local import trainer
from infra.local.api.errors import ApiError
from infra.local.scheduler import SCRIPTED
from infra.local.state import Store, now

#: The fields a test may set, in their JSON (camelCase) names.
FIELDS = ("jobScript", "jobError", "deployRequests", "deployError", "ignoreFilter")


@dataclass
class Faults:
    """The faults of one server (shared by handler threads under ``lock``).

    Attributes:
        job_script: States of each new job, one per GET; empty: jobs run the trainer.
        job_error: Error message put on a scripted job when its script ends.
        deploy_requests: 0: deploys load their weights; N: done after N requests, unloaded.
        deploy_error: With ``deploy_requests``: the deploy fails with this message.
        ignore_filter: List calls ignore their filter.
    """

    job_script: list[str] = field(default_factory=list)
    job_error: str = ""
    deploy_requests: int = 0
    deploy_error: str = ""
    ignore_filter: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _held: dict[str, list[Any]] = field(default_factory=dict)
    _held_models: dict[str, list[Any]] = field(default_factory=dict)

    def update(self, body: Any) -> None:
        """Sets the faults named in ``body`` (JSON names); the others keep their values.

        Raises:
            ApiError: 400 on an unknown name or a value of the wrong type.
        """
        if not isinstance(body, dict) or set(body) - set(FIELDS):
            raise ApiError(400, f"faults: expected an object with some of {', '.join(FIELDS)}")
        with self.lock:
            try:
                if "jobScript" in body:
                    self.job_script = [_state(s) for s in body["jobScript"]]
                if "jobError" in body:
                    self.job_error = str(body["jobError"])
                if "deployRequests" in body:
                    self.deploy_requests = int(body["deployRequests"])
                if "deployError" in body:
                    self.deploy_error = str(body["deployError"])
                if "ignoreFilter" in body:
                    self.ignore_filter = bool(body["ignoreFilter"])
            except (TypeError, ValueError) as e:
                raise ApiError(400, f"faults: {e}") from None

    def as_json(self) -> dict[str, Any]:
        """The current faults in their JSON names."""
        with self.lock:
            return {
                "jobScript": list(self.job_script),
                "jobError": self.job_error,
                "deployRequests": self.deploy_requests,
                "deployError": self.deploy_error,
                "ignoreFilter": self.ignore_filter,
            }

    def new_job(self) -> dict[str, Any]:
        """The ``internal`` bookkeeping of a new job: its script, when one is set."""
        with self.lock:
            if not self.job_script:
                return {}
            return {SCRIPTED: list(self.job_script), "scriptError": self.job_error}

    def hold_deploy(self, op_id: str, endpoint_id: str, model_id: str) -> bool:
        """Holds a deploy's operation for ``deploy_requests`` requests; False when not set."""
        with self.lock:
            if self.deploy_requests <= 0:
                return False
            self._held[op_id] = [self.deploy_requests, endpoint_id, model_id, self.deploy_error]
            return True

    def tick(self) -> list[tuple[str, str, str, str]]:
        """One API request passed: the held deploys now due, as (op, endpoint, model, error)."""
        return self._due(self._held)

    def hold_deploy_model(self, op_id: str, endpoint_id: str, model_id: str) -> bool:
        """As :meth:`hold_deploy`, for ``:deployModel`` onto an existing endpoint."""
        with self.lock:
            if self.deploy_requests <= 0:
                return False
            self._held_models[op_id] = [
                self.deploy_requests,
                endpoint_id,
                model_id,
                self.deploy_error,
            ]
            return True

    def tick_models(self) -> list[tuple[str, str, str, str]]:
        """As :meth:`tick`, for the held ``:deployModel`` calls."""
        return self._due(self._held_models)

    def _due(self, held_ops: dict[str, list[Any]]) -> list[tuple[str, str, str, str]]:
        due = []
        with self.lock:
            for op_id, held in list(held_ops.items()):
                held[0] -= 1
                if held[0] <= 0:
                    del held_ops[op_id]
                    due.append((op_id, held[1], held[2], held[3]))
        return due


def advance(store: Store, collection: str, rid: str, storage_url: str) -> None:
    """One GET of a scripted job: it takes the next state of its script."""
    with store.lock:
        entry = store.get(collection, rid)
        if entry is None or not entry["internal"].get(SCRIPTED):
            return
        if entry["resource"].get("state") in catalog.TERMINAL_JOB_STATES:
            return  # cancelled meanwhile (by the scheduler): the script is over
        script = entry["internal"][SCRIPTED]
        state = script.pop(0)
        error = entry["internal"].get("scriptError", "") if not script else ""
        _apply(entry["resource"], state, error, storage_url)
        store.put(collection, rid, entry["resource"], entry["internal"])


def set_job_state(store: Store, name: str, state: str, error: str = "") -> None:
    """Puts a job in ``state`` now (as if it changed outside the client) and ends its script.

    Raises:
        ApiError: 404 when there is no such job.
    """
    collection = "customJobs" if "/customJobs/" in name else "tuningJobs"
    rid = name.rsplit("/", 1)[-1]
    with store.lock:
        entry = store.get(collection, rid)
        if entry is None:
            raise ApiError(404, f"job {name} not found")
        _apply(entry["resource"], _state(state), error, "")
        store.put(collection, rid, entry["resource"], {**entry["internal"], SCRIPTED: []})


def _apply(job: dict[str, Any], state: str, error: str, storage_url: str) -> None:
    job["state"] = state
    job["updateTime"] = now()
    if error:
        code = trainer.CANCELLED_CODE if state == catalog.JOB_STATE_CANCELLED else trainer.INTERNAL
        job["error"] = {"code": code, "message": error}
    if state in catalog.TERMINAL_JOB_STATES:
        job["endTime"] = job["updateTime"]
    if state == catalog.JOB_STATE_SUCCEEDED and "/tuningJobs/" in job["name"]:
        tuned: dict[str, Any] = {"model": job["name"].replace("tuningJobs", "models")}
        if storage_url and job.get("outputUri"):
            found = trainer.checkpoints(storage_url, job["outputUri"])
            if found:
                tuned["checkpoints"] = found
        job["tunedModel"] = tuned


def _state(name: Any) -> str:
    if not isinstance(name, str) or not name.startswith("JOB_STATE_"):
        raise ValueError(f"not a job state: {name!r}")
    return name
