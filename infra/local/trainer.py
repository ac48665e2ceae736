"""The trainer command of a local job: ``python -m trainer`` flags from the job's REST JSON.

A tuning job's ``supervisedTuningSpec`` and a custom job's worker pool become the arguments of
the native trainer (the container's entrypoint locally), with base weights resolved from
``local/models.json``, a custom gs:// checkpoint or, with ``--smoke``, a tiny random model.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from trainer.tiny import build_tiny_checkpoint

from infra import catalog, gcs
from infra.local import home, storage

#: Label and description marker put on jobs whose base model was replaced by a tiny one.
SMOKE_LABEL = "tunestack-smoke"
#: Environment variable overriding the trainer command (a JSON list), for tests only.
TRAINER_CMD_ENV = "TUNESTACK_TRAINER_CMD"

# google.rpc.Code numbers used in job errors.
CANCELLED_CODE = 1
INVALID_ARGUMENT = 3
FAILED_PRECONDITION = 9
INTERNAL = 13

#: Vertex's adapterSize enum names -> LoRA rank.
ADAPTER_SIZES = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}


class JobError(Exception):
    """A job cannot start; ``code`` is the google.rpc.Code put in the job's ``error``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def command(collection: str, job: dict[str, Any], smoke: bool) -> tuple[list[str], list[str]]:
    """The trainer command line of a job and notes for its log.

    Args:
        collection: ``tuningJobs`` or ``customJobs``.
        job: The job's REST JSON (camelCase).
        smoke: Replace catalog base models without local weights by tiny random models.

    Raises:
        JobError: when the job cannot run locally.
    """
    if collection == "tuningJobs":
        return _tuning_command(job, smoke)
    return _custom_command(job, smoke)


def resolve_base_model(
    base_model: str, custom_base_model: str, smoke: bool
) -> tuple[str, list[str]]:
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
    if not smoke:
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


def trainer_command() -> list[str]:
    """``python -m trainer`` with this interpreter, unless ``$TUNESTACK_TRAINER_CMD`` overrides it."""
    override = os.environ.get(TRAINER_CMD_ENV)
    if override:
        return list(json.loads(override))
    return [sys.executable, "-m", "trainer"]


_smoke_lock = threading.Lock()
#: Width of the smoke models: wide enough that `tunestack demo` visibly learns its 22 answers
#: in about a minute on 2 CPU cores (64 does not), small enough to stay fast.
SMOKE_HIDDEN_SIZE = 128


def smoke_model(family: str) -> Path:
    """The tiny random checkpoint of ``family`` used by ``--smoke`` (built once, then cached)."""
    out = home.local_dir() / "cache" / "smoke-models" / f"{family}-h{SMOKE_HIDDEN_SIZE}"
    with _smoke_lock:
        if not (out / "config.json").exists():
            tmp = out.with_name(f".{out.name}.tmp")
            build_tiny_checkpoint(
                family, tmp, hidden_size=SMOKE_HIDDEN_SIZE, intermediate_size=2 * SMOKE_HIDDEN_SIZE
            )
            os.replace(tmp, out)
    return out


def checkpoints(storage_url: str, output_uri: str) -> list[dict[str, Any]]:
    """``tunedModel.checkpoints`` from the artifact layout: intermediate ones, then final.

    The epoch of each is the one our trainer recorded beside its weights
    (``tunestack_checkpoint.json``; with 10 epochs or more not every epoch has one), else its
    place in step order.
    """
    client = gcs.client(endpoint=storage_url)
    prefix = catalog.checkpoints_prefix(output_uri)
    try:
        names = storage.list_dirs(client, prefix)
    except Exception:
        return []
    steps = sorted((step, n) for n in names if (step := catalog.checkpoint_step(n)) is not None)
    out: list[dict[str, Any]] = [
        {
            "checkpointId": name,
            "epoch": str(_epoch(client, f"{prefix}/{name}", i + 1)),
            "step": str(step),
        }
        for i, (step, name) in enumerate(steps)
    ]
    if catalog.FINAL_CHECKPOINT in names:
        out.append(
            {
                "checkpointId": catalog.FINAL_CHECKPOINT,
                "epoch": out[-1]["epoch"] if out else "0",
                "step": str(steps[-1][0] if steps else 0),
            }
        )
    return out


def _epoch(client: Any, uri: str, default: int) -> int:
    bucket, path = gcs.split(uri)
    try:
        meta = json.loads(
            client.bucket(bucket).blob(f"{path}/tunestack_checkpoint.json").download_as_bytes()
        )
        return int(meta["epoch"])
    except Exception:  # no metadata (another trainer's run): the step order says it
        return default


def _tuning_command(job: dict[str, Any], smoke: bool) -> tuple[list[str], list[str]]:
    spec = job.get("supervisedTuningSpec") or {}
    hyper = spec.get("hyperParameters") or {}
    base, notes = resolve_base_model(
        job.get("baseModel", ""), job.get("customBaseModel", ""), smoke
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
        # The emulator is on this machine: `up`'s progress display reads metrics every second.
        "--metrics-push-seconds",
        "1",
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


def _custom_command(job: dict[str, Any], smoke: bool) -> tuple[list[str], list[str]]:
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
            args[i], more = resolve_base_model(args[i], "", smoke)
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


def _gcs_fuse_to_uri(arg: str) -> str:
    # Vertex mounts buckets at /gcs/<bucket>; locally there is no mount, so hand the trainer gs://.
    return gcs.SCHEME + arg[len("/gcs/") :] if arg.startswith("/gcs/") else arg
