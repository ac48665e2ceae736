"""The run config: a fingerprint of every training input, recorded in the run dir.

A run dir (``<output>/postprocess/node-0/``) belongs to one configuration. ``run_config.json``
records the fingerprint (sha256 of the normalised fields) and the fields themselves: the
data's content hashes (not their URIs), the base model, the mode and every hyperparameter.
A re-run with the same fingerprint resumes (or finds the run done); a different one is
refused, naming both fingerprints and the fields that differ, so a changed job never resumes
from, overwrites or serves another job's artifacts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig

#: The file in the run dir.
RUN_CONFIG = "run_config.json"
#: Fields that do not change what is trained (where it goes, how it is logged or threaded).
NOT_TRAINING_INPUTS = frozenset({"output_dir", "num_threads", "log_every", "progress"})
#: Bytes read at a time when hashing data files.
_CHUNK = 1 << 20


class RunConfigMismatch(Exception):
    """The run dir was written by a different configuration (or by none we can read)."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def run_fields(cfg: TrainConfig, train_path: Path, val_path: Path | None) -> dict[str, Any]:
    """Every training input: hyperparameters, model and mode, and the data's content hashes."""
    fields = {k: v for k, v in cfg.to_dict().items() if k not in NOT_TRAINING_INPUTS}
    fields["train_data"] = "sha256:" + file_sha256(train_path)
    fields["validation_data"] = "sha256:" + file_sha256(val_path) if val_path else None
    return fields


def fingerprint(fields: dict[str, Any]) -> str:
    """sha256 of the fields' canonical JSON."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def check(node: Path, fields: dict[str, Any], has_state: bool) -> bool:
    """Checks the run dir against this configuration.

    Args:
        node: The run dir (``postprocess/node-0``), with ``run_config.json`` pulled if any.
        fields: This run's :func:`run_fields`.
        has_state: Whether the run dir holds a resume state or a final checkpoint.

    Returns:
        True when the run dir records this configuration, False when it records none and
        holds nothing (a fresh run).

    Raises:
        RunConfigMismatch: a different configuration wrote it, or it holds checkpoints but no
            readable run config.
    """
    path = node / RUN_CONFIG
    mine = fingerprint(fields)
    if not path.exists():
        if has_state:
            raise RunConfigMismatch(
                f"{node} holds a previous run but no {RUN_CONFIG} (this run's config "
                f"{mine[:12]}): refusing to resume from or finish on it; use a new --output-dir"
            )
        return False
    try:
        recorded = json.loads(path.read_text())
        theirs, their_fields = str(recorded["fingerprint"]), dict(recorded["fields"])
    except (OSError, ValueError, KeyError, TypeError):
        raise RunConfigMismatch(f"{path}: unreadable run config; use a new --output-dir") from None
    if theirs == mine:
        return True
    differing = sorted(
        k for k in set(fields) | set(their_fields) if fields.get(k) != their_fields.get(k)
    )
    raise RunConfigMismatch(
        f"{node} was written by run config {theirs[:12]}, this run's is {mine[:12]} "
        f"(differing: {', '.join(differing) or 'unknown'}): refusing to resume from or finish "
        "on another configuration's run; use a new --output-dir"
    )


def write(node: Path, fields: dict[str, Any]) -> Path:
    """Writes ``run_config.json`` (fingerprint and fields) into the run dir."""
    node.mkdir(parents=True, exist_ok=True)
    path = node / RUN_CONFIG
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(
        json.dumps({"fingerprint": fingerprint(fields), "fields": fields}, indent=2, default=str)
    )
    tmp.replace(path)
    return path
