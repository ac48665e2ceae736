"""What a run reports: ``metrics.jsonl`` (one line per logged step and per epoch evaluation),
``loss_curve.png``, and the progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def truncate_metrics(node: Path, step: int) -> None:
    """Drops metrics past the resume point (steps an interrupted run logged after its last
    checkpoint are trained again and logged again)."""
    path = node / "metrics.jsonl"
    if not path.exists():
        return
    keep = [x for x in path.read_text().splitlines() if x and json.loads(x)["step"] <= step]
    path.write_text("".join(x + "\n" for x in keep))


def append_metrics(node: Path, rec: dict[str, Any]) -> None:
    """Appends one JSON line to ``metrics.jsonl``."""
    node.mkdir(parents=True, exist_ok=True)
    with (node / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def plot(node: Path) -> None:
    """Writes loss_curve.png from metrics.jsonl (train loss per step, eval loss per epoch)."""
    import matplotlib  # noqa: PLC0415  (only the main process plots)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    recs = [json.loads(x) for x in (node / "metrics.jsonl").read_text().splitlines() if x]
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in recs if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(node / "loss_curve.png", dpi=100)
    plt.close(fig)


def progress_bar(console: Console, *, enabled: bool) -> Progress:
    """The training progress bar (disabled: renders nothing)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )
