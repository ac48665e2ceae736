"""Runs tuning jobs and custom jobs as trainer subprocesses, one at a time.

Vertex's default quota runs one open-model tuning job per project at a time; the local API
does the same: jobs wait in ``JOB_STATE_QUEUED`` and a single scheduler thread moves the
oldest to ``PENDING`` (base weights resolved), ``RUNNING`` (``python -m trainer`` started with
``STORAGE_EMULATOR_HOST`` so it reads and writes gs:// through the emulator) and finally
``SUCCEEDED``/``FAILED``/``CANCELLED``. After a server restart, jobs that were running are
queued again (the trainer resumes from its last checkpoint) and cancelling ones are cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from trainer.tiny import build_tiny_checkpoint

from infra import catalog
from infra.local import home, storage
from infra.local.state import Store, now

TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
}
ACTIVE = {"JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}
JOB_COLLECTIONS = ("tuningJobs", "customJobs")

#: Label and description marker put on jobs whose base model was replaced by a tiny one.
SMOKE_LABEL = "tunestack-smoke"
#: Environment variable overriding the trainer command (a JSON list), for tests only.
TRAINER_CMD_ENV = "TUNESTACK_TRAINER_CMD"

# google.rpc.Code numbers used in job errors.
CANCELLED_CODE = 1
INVALID_ARGUMENT = 3
FAILED_PRECONDITION = 9
INTERNAL = 13


class JobError(Exception):
    """A job cannot start; ``code`` is the google.rpc.Code put in the job's ``error``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Scheduler:
    """The single worker that runs queued jobs in creation order.

    Args:
        store: The state store shared with the HTTP handlers.
        storage_url: The GCS emulator URL given to the trainer as ``STORAGE_EMULATOR_HOST``.
        smoke: Replace catalog base models without a local mapping by tiny random models.
        poll_interval: Seconds between scheduler ticks.
    """

    def __init__(
        self, store: Store, storage_url: str, smoke: bool, poll_interval: float = 0.3
    ) -> None:
        self.store = store
        self.storage_url = storage_url
        self.smoke = smoke
        self.poll_interval = poll_interval
        self.logs = home.local_dir() / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
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
                self._set_state(collection, rid, "JOB_STATE_QUEUED")

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
            if state in TERMINAL or state == "JOB_STATE_CANCELLING":
                return
            if self._current is not None and self._current[:2] == (collection, rid):
                self._set_state(collection, rid, "JOB_STATE_CANCELLING")
                _kill_group(self._current[2].pid, signal.SIGTERM)
            else:
                self._finish(collection, rid, "JOB_STATE_CANCELLED", CANCELLED_CODE, "CANCELED")
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
                return
            self._current = None
            self._on_exit(collection, rid, code)
        queued = [
            (entry["resource"].get("createTime", ""), collection, rid)
            for collection in JOB_COLLECTIONS
            for rid, entry in self.store.items(collection)
            if entry["resource"].get("state") == "JOB_STATE_QUEUED"
        ]
        if not queued:
            return
        _, collection, rid = min(queued)
        self._launch(collection, rid)

    def _launch(self, collection: str, rid: str) -> None:
        self._set_state(collection, rid, "JOB_STATE_PENDING")
        entry = self.store.get(collection, rid)
        assert entry is not None
        log_path = self.log_path(collection, rid)
        try:
            cmd, notes = self._command(collection, entry["resource"])
        except JobError as e:
            _append(log_path, f"tunestack: job cannot start: {e}\n")
            self._finish(collection, rid, "JOB_STATE_FAILED", e.code, str(e))
            return
        env = dict(os.environ)
        env.update(
            STORAGE_EMULATOR_HOST=self.storage_url,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        with self.store.lock:
            entry = self.store.get(collection, rid)
            if entry is None or entry["resource"].get("state") != "JOB_STATE_PENDING":
                return  # cancelled while resolving the base model
            log = log_path.open("ab")
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
            resource["state"] = "JOB_STATE_RUNNING"
            resource["startTime"] = resource["updateTime"] = now()
            self.store.put(
                collection,
                rid,
                resource,
                {**entry["internal"], "pid": proc.pid, "log": str(log_path)},
            )

    def _on_exit(self, collection: str, rid: str, code: int) -> None:
        entry = self.store.get(collection, rid)
        if entry is None:
            return
        log_path = self.log_path(collection, rid)
        _append(log_path, f"tunestack: trainer exited with code {code}\n")
        if entry["resource"].get("state") == "JOB_STATE_CANCELLING":
            self._finish(collection, rid, "JOB_STATE_CANCELLED", CANCELLED_CODE, "CANCELED")
        elif code == 0:
            self._succeed(collection, rid)
        else:
            tail = _last_lines(log_path, 1)
            self._finish(
                collection,
                rid,
                "JOB_STATE_FAILED",
                INTERNAL,
                f"trainer exited with code {code}: {tail} (log: {log_path})",
            )

    def _succeed(self, collection: str, rid: str) -> None:
        with self.store.lock:
            entry = self.store.get(collection, rid)
            assert entry is not None
            resource = entry["resource"]
            if collection == "tuningJobs" and resource.get("outputUri"):
                checkpoints = _checkpoints(self.storage_url, resource["outputUri"])
                if checkpoints:
                    resource["tunedModel"] = {"checkpoints": checkpoints}
            resource["state"] = "JOB_STATE_SUCCEEDED"
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
                if state not in ACTIVE:
                    continue
                pid = entry["internal"].get("pid")
                if pid and _is_our_trainer(pid, self.log_path(collection, rid)):
                    _kill_group(pid)
                if state == "JOB_STATE_CANCELLING":
                    self._finish(collection, rid, "JOB_STATE_CANCELLED", CANCELLED_CODE, "CANCELED")
                else:
                    _append(
                        self.log_path(collection, rid),
                        "tunestack: server restarted; job queued again (resumes from its last checkpoint)\n",
                    )
                    self._set_state(collection, rid, "JOB_STATE_QUEUED")

    # -- commands --------------------------------------------------------------------------

    def _command(self, collection: str, job: dict[str, Any]) -> tuple[list[str], list[str]]:
        if collection == "tuningJobs":
            return self._tuning_command(job)
        return self._custom_command(job)

    def _tuning_command(self, job: dict[str, Any]) -> tuple[list[str], list[str]]:
        spec = job.get("supervisedTuningSpec") or {}
        hyper = spec.get("hyperParameters") or {}
        base, notes = self.resolve_base_model(
            job.get("baseModel", ""), job.get("customBaseModel", "")
        )
        if not job.get("outputUri"):
            raise JobError(INVALID_ARGUMENT, "outputUri is required for open-model tuning jobs")
        cmd = [
            *trainer_command(),
            "--base-model",
            base,
            "--train-data",
            spec.get("trainingDatasetUri", ""),
            "--output-dir",
            job["outputUri"],
            "--base-model-id",
            job.get("baseModel", ""),
            # A log file is no terminal: periodic log lines instead of a live progress bar.
            "--no-progress",
        ]
        if spec.get("validationDatasetUri"):
            cmd += ["--validation-data", spec["validationDatasetUri"]]
        mode = spec.get("tuningMode", "TUNING_MODE_FULL")
        cmd += ["--tuning-mode", "PEFT_ADAPTER" if mode == "TUNING_MODE_PEFT_ADAPTER" else "FULL"]
        cmd += ["--epochs", str(hyper.get("epochCount") or 1)]
        if hyper.get("learningRate"):
            cmd += ["--learning-rate", str(hyper["learningRate"])]
        elif hyper.get("learningRateMultiplier"):
            cmd += ["--learning-rate-multiplier", str(hyper["learningRateMultiplier"])]
        if hyper.get("adapterSize"):
            cmd += ["--adapter-size", str(ADAPTER_SIZES[hyper["adapterSize"]])]
        return cmd, notes

    def _custom_command(self, job: dict[str, Any]) -> tuple[list[str], list[str]]:
        pools = (job.get("jobSpec") or {}).get("workerPoolSpecs") or []
        if not pools or "containerSpec" not in pools[0]:
            raise JobError(
                INVALID_ARGUMENT,
                "jobSpec.workerPoolSpecs[0].containerSpec is required (the local API runs the trainer natively in its place)",
            )
        args = [_gcs_fuse_to_uri(a) for a in pools[0]["containerSpec"].get("args", [])]
        notes = [
            f"custom job: image {pools[0]['containerSpec'].get('imageUri', '?')} replaced by the native trainer"
        ]
        if "--base-model" in args:
            i = args.index("--base-model") + 1
            if i < len(args) and args[i] in catalog.MODELS:
                args[i], more = self.resolve_base_model(args[i], "")
                notes += more
        replicas = sum(int(p.get("replicaCount") or 1) for p in pools)
        if replicas > 1:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={replicas}",
                "-m",
                "trainer",
                *args,
            ]
        else:
            cmd = [*trainer_command(), *args]
        return cmd, notes

    def resolve_base_model(self, base_model: str, custom_base_model: str) -> tuple[str, list[str]]:
        """Local weights for a job: the custom gs:// checkpoint, a mapped directory or a smoke model.

        Returns:
            The ``--base-model`` value and notes for the job log.

        Raises:
            JobError: when the model is unknown or has no local weights outside smoke mode.
        """
        if custom_base_model:
            return custom_base_model, [f"base weights: custom checkpoint {custom_base_model}"]
        entry = catalog.model(base_model)
        if entry is None:
            raise JobError(
                INVALID_ARGUMENT,
                f"base model {base_model!r} is not an open model Vertex tunes (see infra/catalog.py)",
            )
        mapped = home.model_map().get(base_model)
        if mapped:
            if not Path(mapped).is_dir():
                raise JobError(
                    FAILED_PRECONDITION,
                    f"local weights for {base_model} not found: {mapped} is not a directory",
                )
            return mapped, [f"base weights: {base_model} -> {mapped}"]
        if not self.smoke:
            raise JobError(
                FAILED_PRECONDITION,
                f"no local weights for {base_model}: map it to a Hugging Face directory in "
                f"{home.local_dir() / 'models.json'} (or the file named by ${home.MODEL_MAP_ENV}), "
                "or run `tunestack serve --smoke` to train a tiny random model of the same family",
            )
        return str(smoke_model(entry.family)), [
            f"SMOKE: base model {base_model} replaced by a tiny random-initialised {entry.family} "
            "model (tunestack serve --smoke); the tuned weights are not useful for anything but testing"
        ]


#: Vertex's adapterSize enum names -> LoRA rank.
ADAPTER_SIZES = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}


def trainer_command() -> list[str]:
    """``python -m trainer`` with this interpreter, unless ``$TUNESTACK_TRAINER_CMD`` overrides it."""
    override = os.environ.get(TRAINER_CMD_ENV)
    if override:
        return list(json.loads(override))
    return [sys.executable, "-m", "trainer"]


_smoke_lock = threading.Lock()


def smoke_model(family: str) -> Path:
    """The tiny random checkpoint of ``family`` used by ``--smoke`` (built once, then cached)."""
    out = home.local_dir() / "cache" / "smoke-models" / family
    with _smoke_lock:
        if not (out / "config.json").exists():
            tmp = out.with_name(f".{family}.tmp")
            build_tiny_checkpoint(family, tmp)
            os.replace(tmp, out)
    return out


def _checkpoints(storage_url: str, output_uri: str) -> list[dict[str, Any]]:
    """``tunedModel.checkpoints`` from the artifact layout: intermediate ones, then final."""
    root = output_uri.rstrip("/") + "/postprocess/node-0/checkpoints"
    try:
        names = storage.list_dirs(storage.client(storage_url), root)
    except Exception:
        return []
    steps = sorted(
        (int(m.group(1)), n) for n in names if (m := re.fullmatch(r"checkpoint-(\d+)", n))
    )
    out: list[dict[str, Any]] = [
        {"checkpointId": name, "epoch": str(i + 1), "step": str(step)}
        for i, (step, name) in enumerate(steps)
    ]
    if "final" in names:
        out.append(
            {
                "checkpointId": "final",
                "epoch": str(len(steps)),
                "step": str(steps[-1][0] if steps else 0),
            }
        )
    return out


def _gcs_fuse_to_uri(arg: str) -> str:
    # Vertex mounts buckets at /gcs/<bucket>; locally there is no mount, so hand the trainer gs://.
    return "gs://" + arg[len("/gcs/") :] if arg.startswith("/gcs/") else arg


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
    with path.open("a") as f:
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = store.get(collection, rid)
        if entry and entry["resource"].get("state") in TERMINAL:
            return str(entry["resource"]["state"])
        time.sleep(0.2)
    raise TimeoutError(f"{collection}/{rid} not finished after {timeout:.0f}s")
