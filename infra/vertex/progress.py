"""A job's progress, read from the job's own outputs: ``run.json`` and ``metrics.jsonl``.

Our trainer writes both under ``{output_uri}/postprocess/node-0/`` (``run.json`` at start with
the step counts, ``metrics.jsonl`` every few seconds with one line per logged step and per
epoch evaluation), in Cloud Storage for a Vertex custom job and in the local emulator for a
local run, so one reader serves ``up``'s progress display, ``status`` and the providers'
completion wait. A managed Vertex tuning job writes neither: its progress is its state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc

from infra import catalog, gcs
from infra.vertex.target import Target

#: Where the trainer's run files live under a job's ``output_uri``.
NODE_LAYOUT = "postprocess/node-0"
#: Largest ``metrics.jsonl`` read (a line is ~200 bytes: 80k logged steps).
MAX_METRICS_BYTES = 16 * 1024 * 1024
#: Largest ``run.json`` read.
MAX_RUN_BYTES = 1024 * 1024
#: Steps whose durations estimate the time left.
ETA_WINDOW = 20


@dataclass
class JobProgress:
    """What a job has done so far (None: not known yet).

    Attributes:
        state: The Vertex job state name without ``JOB_STATE_`` (``RUNNING``...).
        step: Optimizer steps done.
        total_steps: Steps of the whole run.
        epoch: The epoch the last step belongs to (1-based).
        epochs: Epochs of the run.
        loss: The last logged train loss.
        eval_loss: The last epoch's eval loss.
        tokens_per_s: Throughput of the last logged step.
        eta_s: Seconds left, from the recent steps' durations.
        checkpoints: Checkpoint URIs (``checkpoint-N`` by step, then ``final``) once done.
        loss_curve: URI (or local path) of ``loss_curve.png`` once written.
    """

    state: str = "UNKNOWN"
    step: int | None = None
    total_steps: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    checkpoints: list[str] = field(default_factory=list)
    loss_curve: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-able dict (``status --format json``)."""
        return asdict(self)


def node_uri(output_uri: str) -> str:
    """``{output_uri}/postprocess/node-0``."""
    return f"{output_uri.rstrip('/')}/{NODE_LAYOUT}"


def read_progress(target: Target, output_uri: str, state: str) -> JobProgress:
    """The progress of the job writing to ``output_uri``, read from storage.

    Storage errors (no bucket yet, no credentials, the files not written yet) leave the fields
    None: progress is a convenience and never fails the caller.
    """
    progress = JobProgress(state=state.removeprefix("JOB_STATE_"))
    try:
        client = target.storage_client()
        bucket, prefix = gcs.split(node_uri(output_uri))
        run = _read(client, bucket, f"{prefix}/run.json", MAX_RUN_BYTES)
        metrics = _read(client, bucket, f"{prefix}/metrics.jsonl", MAX_METRICS_BYTES)
        if state == catalog.JOB_STATE_SUCCEEDED:
            progress.checkpoints = _checkpoints(client, output_uri)
            if client.bucket(bucket).blob(f"{prefix}/loss_curve.png").exists():
                progress.loss_curve = f"{node_uri(output_uri)}/loss_curve.png"
    except (gexc.GoogleAPIError, google.auth.exceptions.GoogleAuthError, OSError, ValueError):
        return progress
    return merge(progress, run, metrics)


def merge(progress: JobProgress, run_json: str | None, metrics_jsonl: str | None) -> JobProgress:
    """Fills ``progress`` from the text of ``run.json`` and ``metrics.jsonl`` (pure)."""
    run = _json(run_json) if run_json else {}
    if isinstance(run, dict):
        progress.total_steps = _int(run.get("total_steps"))
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        progress.epochs = _int(config.get("epochs")) if config else None
    durations: list[float] = []
    for line in (metrics_jsonl or "").splitlines():
        rec = _json(line)
        if not isinstance(rec, dict):
            continue  # a line cut by a concurrent write
        if "eval_loss" in rec:
            progress.eval_loss = _float(rec.get("eval_loss"))
            continue
        progress.step = _int(rec.get("step"))
        progress.epoch = _int(rec.get("epoch"))
        progress.loss = _float(rec.get("loss"))
        progress.tokens_per_s = _float(rec.get("tokens_per_s"))
        tokens, rate = _float(rec.get("tokens")), progress.tokens_per_s
        if tokens and rate:
            durations.append(tokens / rate)
    if progress.step is not None and progress.total_steps and durations:
        recent = durations[-ETA_WINDOW:]
        left = max(progress.total_steps - progress.step, 0)
        progress.eta_s = round(left * sum(recent) / len(recent), 1)
    return progress


def describe(p: JobProgress) -> str:
    """One line: state, step/total (epoch), train and eval loss, tokens/s, ETA."""
    parts = [p.state]
    if p.step is not None:
        steps = f"step {p.step}/{p.total_steps}" if p.total_steps else f"step {p.step}"
        if p.epoch is not None:
            steps += f" (epoch {p.epoch}/{p.epochs})" if p.epochs else f" (epoch {p.epoch})"
        parts.append(steps)
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4f}")
    if p.eval_loss is not None:
        parts.append(f"eval loss {p.eval_loss:.4f}")
    if p.tokens_per_s is not None:
        parts.append(f"{p.tokens_per_s:,.0f} tok/s")
    if p.eta_s is not None and p.state == "RUNNING":
        parts.append(f"ETA {_clock(p.eta_s)}")
    return "  ".join(parts)


def _read(client: Any, bucket: str, name: str, limit: int) -> str | None:
    blob = client.bucket(bucket).get_blob(name)
    if blob is None:
        return None
    if blob.size is not None and blob.size > limit:
        # Only the tail matters for progress; the cut first line is skipped by merge.
        return blob.download_as_bytes(start=blob.size - limit).decode(errors="replace")
    return blob.download_as_bytes().decode(errors="replace")


def _checkpoints(client: Any, output_uri: str) -> list[str]:
    bucket, path = gcs.split(catalog.checkpoints_prefix(output_uri))
    it = client.list_blobs(bucket, prefix=path + "/", delimiter="/")
    list(it)  # prefixes fill in only once pages are consumed
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in it.prefixes]
    steps = sorted(s for s in (catalog.checkpoint_step(n) for n in names) if s is not None)
    uris = [catalog.checkpoint_uri(output_uri, f"{catalog.CHECKPOINT_PREFIX}{s}") for s in steps]
    if catalog.FINAL_CHECKPOINT in names:
        uris.append(catalog.checkpoint_uri(output_uri, catalog.FINAL_CHECKPOINT))
    return uris


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
