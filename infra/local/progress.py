"""How ``up`` shows a training job: a live rich bar on a terminal, plain lines otherwise.

Both read :class:`~infra.vertex.progress.JobProgress` (the job's own ``metrics.jsonl``). Plain
lines are rationed so that a log file stays readable: one when the job starts running, one
per 10% of the steps and one per state change, then the summary.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from infra import catalog
from infra.vertex.progress import JobProgress, describe

#: Plain mode prints a line each time this share of the steps is done.
PLAIN_STEP_SHARE = 0.10


class JobView:
    """The display of one job while ``up`` waits for it.

    Args:
        console: Where it goes; a terminal gets the live bar, anything else plain lines.
        name: The spec's job name.
    """

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.name = name
        self._last: tuple[object, ...] | None = None
        self._bucket = -1
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def update(self, p: JobProgress) -> None:
        """Shows the latest progress (a bar update, or a plain line when one is due)."""
        if self.console.is_terminal:
            self._update_bar(p)
            return
        if "JOB_STATE_" + p.state in catalog.TERMINAL_JOB_STATES:
            return  # finish() prints the outcome
        bucket = (
            int(p.step / p.total_steps / PLAIN_STEP_SHARE)
            if p.step is not None and p.total_steps
            else -1
        )
        key = (p.state,)
        if key != self._last or bucket > self._bucket:
            self._last, self._bucket = key, max(bucket, self._bucket)
            self.console.print(f"  job {self.name}: {describe(p)}", markup=False, highlight=False)

    def finish(self, p: JobProgress, loss_curve: str | None) -> None:
        """Stops the bar and prints the final losses, the checkpoints and the loss curve."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        losses = []
        if p.loss is not None:
            losses.append(f"train loss {p.loss:.4f}")
        if p.eval_loss is not None:
            losses.append(f"eval loss {p.eval_loss:.4f}")
        done = f" ({p.step} steps)" if p.step is not None else ""
        tail = f": {', '.join(losses)}{done}" if losses else done
        lines = [f"  job {self.name}: {p.state.lower()}{tail}"]
        if p.checkpoints:
            lines.append(f"  checkpoints: {checkpoint_list(p.checkpoints)}")
        if loss_curve:
            lines.append(f"  loss curve: {loss_curve}")
        for line in lines:
            self.console.print(line, markup=False, highlight=False)

    def _update_bar(self, p: JobProgress) -> None:
        if self._bar is None:
            self._bar = Progress(
                TextColumn(f"[bold]job {self.name}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task(self.name, total=None, info="")
            self._bar.start()
        assert self._task is not None
        info = describe(p).removeprefix(p.state).strip()
        self._bar.update(
            self._task,
            total=p.total_steps,
            completed=p.step or 0,
            info=f"{p.state}  {info}" if p.state != "RUNNING" else info,
        )


def checkpoint_list(uris: list[str]) -> str:
    """``gs://.../checkpoints/{checkpoint-6, checkpoint-12, final}`` for URIs in one folder."""
    folders = {u.rsplit("/", 1)[0] for u in uris}
    if len(folders) != 1:
        return ", ".join(uris)
    names = ", ".join(u.rsplit("/", 1)[1] for u in uris)
    return f"{folders.pop()}/{{{names}}}"
