"""The job scheduler of the local API: one trainer subprocess at a time, in creation order.

Vertex's default quota runs one open-model tuning job per project at a time; the local API
does the same: jobs wait in ``JOB_STATE_QUEUED`` and a single scheduler thread moves the
oldest to ``PENDING`` (base weights resolved), ``RUNNING`` (``python -m trainer`` started with
``STORAGE_EMULATOR_HOST`` so it reads and writes gs:// through the emulator) and finally
``SUCCEEDED``/``FAILED``/``CANCELLED``. After a server restart, jobs that were running are
queued again (the trainer resumes from its last checkpoint) and cancelling ones are cancelled.
What the trainer is asked to do is :mod:`infra.local.trainer`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from infra import catalog, wait
from infra.local import failures, home, trainer
from infra.local.state import Store, now
from infra.local.trainer import CANCELLED_CODE, INTERNAL, JobError

JOB_COLLECTIONS = ("tuningJobs", "customJobs")
#: States in which a trainer process of the job may still be alive (after a restart, too).
_LIVE = frozenset(
    {catalog.JOB_STATE_PENDING, catalog.JOB_STATE_RUNNING, catalog.JOB_STATE_CANCELLING}
)
#: ``internal`` key of a job whose states a test scripts (fault injection): never launched.
SCRIPTED = "script"
#: Seconds a running job may go without progress (no new line in its log) before the
#: watchdog fails it. ``TUNESTACK_JOB_WATCHDOG_SECONDS`` or ``Settings.job_watchdog_s``.
JOB_WATCHDOG_S = 1800.0
WATCHDOG_ENV = "TUNESTACK_JOB_WATCHDOG_SECONDS"


class Scheduler:
    """The single worker that runs queued jobs in creation order.

    Args:
        store: The state store shared with the HTTP handlers.
        storage_url: The GCS emulator URL given to the trainer as ``STORAGE_EMULATOR_HOST``.
        smoke: Replace catalog base models without a local mapping by tiny random models.
        poll_interval: Seconds between scheduler ticks.
        token: The storage door's bearer token, given to the trainer.
        watchdog_s: Seconds without progress before a running job is failed. Default:
            ``$TUNESTACK_JOB_WATCHDOG_SECONDS``, else :data:`JOB_WATCHDOG_S`.
    """

    def __init__(
        self,
        store: Store,
        storage_url: str,
        smoke: bool,
        poll_interval: float = 0.3,
        token: str = "",
        watchdog_s: float | None = None,
    ) -> None:
        self.store = store
        self.storage_url = storage_url
        self.smoke = smoke
        self.poll_interval = poll_interval
        self.token = token
        self.watchdog_s = watchdog_s or float(os.environ.get(WATCHDOG_ENV) or JOB_WATCHDOG_S)
        self.logs = home.local_dir() / "logs"
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._current: tuple[str, str, subprocess.Popen[bytes]] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunestack-jobs", daemon=True)
        self._recover()

    def start(self) -> None:
        """Starts the scheduler thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops the thread and the running trainer; the job is queued again for next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self.store.lock:
            if self._current is not None:
                collection, rid, proc = self._current
                _kill_group(proc.pid)
                proc.wait()
                self._current = None
                self._set_state(collection, rid, catalog.JOB_STATE_QUEUED)

    def wake(self) -> None:
        """Asks the scheduler to look at the queue now (a job was created or cancelled)."""
        self._wake.set()

    def log_path(self, collection: str, rid: str) -> Path:
        """The trainer log of one job."""
        return self.logs / f"{collection}-{rid}.log"

    def cancel(self, collection: str, rid: str) -> None:
        """Cancels a job: queued ones at once, a running one by stopping its process group."""
        with self.store.lock:
            entry = self.store.get(collection, rid)
            if entry is None:
                return
            state = entry["resource"].get("state")
            if state in catalog.TERMINAL_JOB_STATES or state == catalog.JOB_STATE_CANCELLING:
                return
            if self._current is not None and self._current[:2] == (collection, rid):
                self._set_state(collection, rid, catalog.JOB_STATE_CANCELLING)
                _kill_group(self._current[2].pid, signal.SIGTERM)
            else:
                self._finish(
                    collection, rid, catalog.JOB_STATE_CANCELLED, CANCELLED_CODE, "CANCELED"
                )
        self.wake()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as e:  # the scheduler must outlive any one job's failure
                print(f"tunestack-jobs: scheduler error: {e!r}", file=sys.stderr, flush=True)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        if self._current is not None:
            collection, rid, proc = self._current
            code = proc.poll()
            if code is None:
                self._watchdog(collection, rid, proc)
                return
            self._current = None
            try:
                self._on_exit(collection, rid, code)
            except Exception as e:  # e.g. the emulator gone while listing checkpoints
                self._finish(
                    collection,
                    rid,
                    catalog.JOB_STATE_FAILED,
                    INTERNAL,
                    f"the job could not be finished: {type(e).__name__}: {str(e)[:500]}",
                )
        queued = [
            (entry["resource"].get("createTime", ""), collection, rid)
            for collection in JOB_COLLECTIONS
            for rid, entry in self.store.items(collection)
            if entry["resource"].get("state") == catalog.JOB_STATE_QUEUED
            and SCRIPTED not in entry["internal"]
        ]
        if not queued:
            return
        _, collection, rid = min(queued)
        try:
            self._launch(collection, rid)
        except Exception as e:  # any setup error fails the job: never PENDING forever
            self._fail_setup(collection, rid, e)

    def _fail_setup(self, collection: str, rid: str, error: Exception) -> None:
        if self._current is not None and self._current[:2] == (collection, rid):
            _kill_group(self._current[2].pid)
            self._current = None
        message = f"the job could not start: {type(error).__name__}: {str(error)[:500]}"
        with contextlib.suppress(OSError):
            _append(self.log_path(collection, rid), f"tunestack: {message}\n")
        self._finish(collection, rid, catalog.JOB_STATE_FAILED, INTERNAL, message)

    def _watchdog(self, collection: str, rid: str, proc: subprocess.Popen[bytes]) -> None:
        """Fails a running job whose log has not grown for :attr:`watchdog_s` seconds."""
        entry = self.store.get(collection, rid)
        started = entry["internal"].get("started", 0.0) if entry else 0.0
        try:
            last = max(self.log_path(collection, rid).stat().st_mtime, started)
        except OSError:
            last = started
        idle = time.time() - last
        if not last or idle < self.watchdog_s:
            return
        _kill_group(proc.pid)
        proc.wait()
        self._current = None
        message = (
            f"no progress for {idle:.0f} s (watchdog: {self.watchdog_s:.0f} s, set "
            f"{WATCHDOG_ENV}); the trainer was stopped (log: {self.log_path(collection, rid)})"
        )
        _append(self.log_path(collection, rid), f"tunestack: {message}\n")
        self._finish(collection, rid, catalog.JOB_STATE_FAILED, INTERNAL, message)

    def _launch(self, collection: str, rid: str) -> None:
        self._set_state(collection, rid, catalog.JOB_STATE_PENDING)
        entry = self.store.get(collection, rid)
        assert entry is not None
        log_path = self.log_path(collection, rid)
        try:
            cmd, notes = trainer.command(collection, entry["resource"], self.smoke)
        except JobError as e:
            _append(log_path, f"tunestack: job cannot start: {e}\n")
            self._finish(collection, rid, catalog.JOB_STATE_FAILED, e.code, str(e))
            return
        env = dict(os.environ)
        env.update(
            STORAGE_EMULATOR_HOST=self.storage_url,
            TUNESTACK_STORAGE_TOKEN=self.token,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        with self.store.lock:
            entry = self.store.get(collection, rid)
            if entry is None or entry["resource"].get("state") != catalog.JOB_STATE_PENDING:
                return  # cancelled while resolving the base model
            log = home.open_private_log(log_path)
            for note in notes:
                log.write(f"tunestack: {note}\n".encode())
            log.write(f"tunestack: running {' '.join(cmd)}\n".encode())
            log.flush()
            # A new session makes the trainer a process group: cancel stops torchrun's workers too.
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=home.die_with_parent,
            )
            log.close()
            self._current = (collection, rid, proc)
            resource = entry["resource"]
            resource["state"] = catalog.JOB_STATE_RUNNING
            resource["startTime"] = resource["updateTime"] = now()
            self.store.put(
                collection,
                rid,
                resource,
                {
                    **entry["internal"],
                    "pid": proc.pid,
                    "log": str(log_path),
                    "started": time.time(),
                },
            )

    def _on_exit(self, collection: str, rid: str, code: int) -> None:
        entry = self.store.get(collection, rid)
        if entry is None:
            return
        log_path = self.log_path(collection, rid)
        _append(log_path, f"tunestack: trainer exited with code {code}\n")
        if entry["resource"].get("state") == catalog.JOB_STATE_CANCELLING:
            self._finish(collection, rid, catalog.JOB_STATE_CANCELLED, CANCELLED_CODE, "CANCELED")
        elif code == 0:
            self._succeed(collection, rid)
        else:
            tail = _last_lines(log_path, 1)
            self._finish(
                collection,
                rid,
                catalog.JOB_STATE_FAILED,
                INTERNAL,
                failures.job_error(collection, rid, code, tail),
            )

    def _succeed(self, collection: str, rid: str) -> None:
        with self.store.lock:
            entry = self.store.get(collection, rid)
            assert entry is not None
            resource = entry["resource"]
            if collection == "tuningJobs" and resource.get("outputUri"):
                checkpoints = trainer.checkpoints(self.storage_url, resource["outputUri"])
                if checkpoints:
                    resource["tunedModel"] = {"checkpoints": checkpoints}
            resource["state"] = catalog.JOB_STATE_SUCCEEDED
            resource["endTime"] = resource["updateTime"] = now()
            self.store.put(collection, rid, resource)

    def _finish(self, collection: str, rid: str, state: str, code: int, message: str) -> None:
        with self.store.lock:
            entry = self.store.get(collection, rid)
            if entry is None:
                return
            resource = entry["resource"]
            resource["state"] = state
            resource["error"] = {"code": code, "message": message}
            resource["endTime"] = resource["updateTime"] = now()
            self.store.put(collection, rid, resource)

    def _set_state(self, collection: str, rid: str, state: str) -> None:
        with self.store.lock:
            entry = self.store.get(collection, rid)
            if entry is None:
                return
            entry["resource"]["state"] = state
            entry["resource"]["updateTime"] = now()
            self.store.put(collection, rid, entry["resource"])

    def _recover(self) -> None:
        """After a restart: stop orphaned trainers, queue running jobs again, finish cancels."""
        for collection in JOB_COLLECTIONS:
            for rid, entry in self.store.items(collection):
                state = entry["resource"].get("state")
                if state not in _LIVE:
                    continue
                pid = entry["internal"].get("pid")
                if pid and _is_our_trainer(pid, self.log_path(collection, rid)):
                    _kill_group(pid)
                if state == catalog.JOB_STATE_CANCELLING:
                    self._finish(
                        collection, rid, catalog.JOB_STATE_CANCELLED, CANCELLED_CODE, "CANCELED"
                    )
                else:
                    _append(
                        self.log_path(collection, rid),
                        "tunestack: server restarted; job queued again (resumes from its last checkpoint)\n",
                    )
                    self._set_state(collection, rid, catalog.JOB_STATE_QUEUED)


def _kill_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _is_our_trainer(pid: int, log_path: Path) -> bool:
    """True when ``pid`` still runs and writes to this job's log (pids get reused)."""
    try:
        return any(
            os.readlink(fd) == str(log_path) for fd in (f"/proc/{pid}/fd/1", f"/proc/{pid}/fd/2")
        )
    except OSError:
        return False


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(text)


def _last_lines(path: Path, n: int) -> str:
    try:
        lines = [
            ln
            for ln in path.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith("tunestack: trainer exited")
        ]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-500:]


def wait_terminal(store: Store, collection: str, rid: str, timeout: float) -> str:
    """Polls until the job is terminal (tests and the CLI); returns the final state."""

    def state() -> str | None:
        entry = store.get(collection, rid)
        return str(entry["resource"].get("state")) if entry else None

    def expired(_: object) -> TimeoutError:
        return TimeoutError(f"{collection}/{rid} not finished after {timeout:.0f}s")

    final = wait.poll(
        state,
        lambda s: s in catalog.TERMINAL_JOB_STATES,
        timeout,
        expired,
        initial_delay=0.2,
        max_delay=0.2,
    )
    return str(final)
