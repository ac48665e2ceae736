"""An endpoint's ``checkpoint:`` selection: parsed and checked before training (``validate``),
resolved after it from the job's checkpoints (epoch, step, uri and, when recorded, eval loss).

``final`` (the end of training), ``best`` (lowest validation loss), ``epoch-N`` (one of the
epochs the job keeps: :func:`infra.catalog.checkpoint_epochs`) or ``checkpoint-<step>``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from infra.catalog import CHECKPOINT_PREFIX

#: Serve the checkpoint of epoch N (``epoch-N``).
EPOCH_PREFIX = "epoch-"
#: Serve the checkpoint with the lowest validation loss (needs a validation dataset).
BEST_CHECKPOINT = "best"
#: Longest selection accepted (a bound on user input; ``checkpoint-`` + 18 digits fits).
MAX_SELECTION_CHARS = 32

_SELECTION = re.compile(r"final|best|epoch-([1-9][0-9]{0,8})|checkpoint-([1-9][0-9]{0,17})")


class CheckpointNotFound(ValueError):
    """A selection that names no checkpoint of the job (or no valid selection at all)."""


@dataclass(frozen=True)
class Selection:
    """A parsed ``checkpoint:`` value.

    Attributes:
        kind: ``final``, ``best``, ``epoch`` or ``step``.
        number: The epoch (``epoch-N``) or step (``checkpoint-<step>``); None otherwise.
    """

    kind: str
    number: int | None = None


def parse_checkpoint(selection: str) -> Selection | None:
    """Parses ``final``, ``best``, ``epoch-N`` (N >= 1) or ``checkpoint-<step>`` (step >= 1)."""
    if len(selection) > MAX_SELECTION_CHARS:
        return None
    m = _SELECTION.fullmatch(selection)
    if m is None:
        return None
    if m.group(1):
        return Selection("epoch", int(m.group(1)))
    if m.group(2):
        return Selection("step", int(m.group(2)))
    return Selection(selection)


def resolve_checkpoint(
    selection: str, checkpoints: list[dict[str, Any]], final_uri: str | None = None
) -> str:
    """The URI an endpoint serves, from a finished job's checkpoints.

    Args:
        selection: ``final``, ``best``, ``epoch-N`` or ``checkpoint-<step>``.
        checkpoints: The job's kept checkpoints, each ``{"epoch": int, "step": int,
            "uri": str}`` and optionally ``"eval_loss": float`` (what the trainer records per
            checkpoint, or Vertex reports); in any order.
        final_uri: The job's ``final`` checkpoint; when None, ``final`` is the checkpoint of
            the highest step.

    Returns:
        The checkpoint's URI.

    Raises:
        CheckpointNotFound: The selection is not valid, or names no checkpoint of the job
            (the message lists what the job has).
    """
    parsed = parse_checkpoint(selection)
    if parsed is None:
        raise CheckpointNotFound(
            f"checkpoint {selection[:MAX_SELECTION_CHARS]!r} is not final, best, epoch-N or checkpoint-<step>"
        )
    kept = sorted((_checkpoint_entry(c) for c in checkpoints), key=lambda c: c[1])
    if parsed.kind == "final":
        if final_uri:
            return final_uri
        if not kept:
            raise CheckpointNotFound("final: the job has no checkpoints")
        return kept[-1][2]
    if parsed.kind == "epoch":
        found = [c for c in kept if c[0] == parsed.number]
        if not found:
            have = ", ".join(str(c[0]) for c in kept) or "none"
            raise CheckpointNotFound(
                f"{selection}: the job kept no checkpoint of epoch {parsed.number} (epochs kept: {have})"
            )
        return found[-1][2]
    if parsed.kind == "step":
        found = [c for c in kept if c[1] == parsed.number]
        if not found:
            have = ", ".join(f"{CHECKPOINT_PREFIX}{c[1]}" for c in kept) or "none"
            raise CheckpointNotFound(f"{selection}: no checkpoint at that step (kept: {have})")
        return found[0][2]
    scored = [c for c in kept if c[3] is not None]
    if not scored:
        raise CheckpointNotFound(
            "best: no checkpoint has a validation loss (does the job have a validation dataset?)"
        )
    # Lowest loss; on a tie the earlier checkpoint (fewer steps, less overfitting).
    return min(scored, key=lambda c: (c[3], c[1]))[2]


def _checkpoint_entry(c: dict[str, Any]) -> tuple[int, int, str, float | None]:
    epoch, step, uri, loss = c.get("epoch"), c.get("step"), c.get("uri"), c.get("eval_loss")
    if not (isinstance(epoch, int) and isinstance(step, int) and isinstance(uri, str) and uri):
        raise CheckpointNotFound(f"malformed checkpoint record {str(c)[:200]}")
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not math.isfinite(loss):
        loss = None  # absent, or non-finite: never the best
    return epoch, step, uri, None if loss is None else float(loss)
