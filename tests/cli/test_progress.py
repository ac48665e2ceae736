"""``up``'s job progress: the plain lines (stdout not a terminal) as a snapshot, the reader of
``run.json``/``metrics.jsonl``, and the summary after the job."""

from __future__ import annotations

import io
import json

from rich.console import Console

from infra.local.progress import JobView, checkpoint_list
from infra.vertex.progress import JobProgress, describe, merge

RUN = json.dumps({"total_steps": 20, "config": {"epochs": 2}})


def _metrics(steps: int, eval_after: tuple[int, ...] = ()) -> str:
    lines = []
    for s in range(1, steps + 1):
        lines.append(json.dumps({"step": s, "epoch": 1 + (s - 1) // 10, "loss": round(6 - s * 0.25, 4),
                                 "tokens_per_s": 500.0, "tokens": 250}))  # fmt: skip
        if s in eval_after:
            lines.append(json.dumps({"step": s, "epoch": s // 10, "eval_loss": 4.5}))
    return "\n".join(lines) + "\n"


def test_plain_lines_snapshot() -> None:
    out = io.StringIO()
    view = JobView(Console(file=out, force_terminal=False, width=200), "vehicles-llama")
    view.update(JobProgress(state="PENDING"))
    view.update(merge(JobProgress(state="RUNNING"), None, None))
    for steps in (1, 2, 3, 5, 9, 10, 14, 20):
        view.update(merge(JobProgress(state="RUNNING"), RUN, _metrics(steps, (10, 20))))
    final = merge(JobProgress(state="SUCCEEDED"), RUN, _metrics(20, (10, 20)))
    view.update(final)  # terminal: the summary below says it
    final.checkpoints = [
        f"gs://b/run/postprocess/node-0/checkpoints/{n}"
        for n in ("checkpoint-10", "checkpoint-20", "final")
    ]
    view.finish(final, "/home/u/.tunestack/local/jobs/42/loss_curve.png")
    assert out.getvalue().splitlines() == [
        "  job vehicles-llama: PENDING",
        "  job vehicles-llama: RUNNING",
        "  job vehicles-llama: RUNNING  step 1/20 (epoch 1/2)  loss 5.7500  500 tok/s  ETA 0:00:10",
        "  job vehicles-llama: RUNNING  step 2/20 (epoch 1/2)  loss 5.5000  500 tok/s  ETA 0:00:09",
        "  job vehicles-llama: RUNNING  step 5/20 (epoch 1/2)  loss 4.7500  500 tok/s  ETA 0:00:08",
        "  job vehicles-llama: RUNNING  step 9/20 (epoch 1/2)  loss 3.7500  500 tok/s  ETA 0:00:06",
        "  job vehicles-llama: RUNNING  step 10/20 (epoch 1/2)  loss 3.5000  eval loss 4.5000  500 tok/s  ETA 0:00:05",
        "  job vehicles-llama: RUNNING  step 14/20 (epoch 2/2)  loss 2.5000  eval loss 4.5000  500 tok/s  ETA 0:00:03",
        "  job vehicles-llama: RUNNING  step 20/20 (epoch 2/2)  loss 1.0000  eval loss 4.5000  500 tok/s  ETA 0:00:00",
        "  job vehicles-llama: succeeded: train loss 1.0000, eval loss 4.5000 (20 steps)",
        "  checkpoints: gs://b/run/postprocess/node-0/checkpoints/{checkpoint-10, checkpoint-20, final}",
        "  loss curve: /home/u/.tunestack/local/jobs/42/loss_curve.png",
    ]  # fmt: skip


def test_the_same_progress_twice_prints_one_line() -> None:
    out = io.StringIO()
    view = JobView(Console(file=out, force_terminal=False), "j")
    for _ in range(3):
        view.update(merge(JobProgress(state="RUNNING"), RUN, _metrics(4)))
    assert len(out.getvalue().splitlines()) == 1


def test_merge_skips_cut_lines_and_estimates_eta() -> None:
    text = _metrics(4) + '{"step": 5, "lo'  # a line still being written
    p = merge(JobProgress(state="RUNNING"), RUN, text)
    assert (p.step, p.total_steps, p.epochs, p.loss) == (4, 20, 2, 5.0)
    assert p.eta_s == 16 * 0.5  # 16 steps left at 250 tokens / 500 tok/s
    assert merge(JobProgress(), "not json", "garbage\n[1]\n").step is None


def test_describe_without_metrics_is_the_state() -> None:
    assert describe(JobProgress(state="QUEUED")) == "QUEUED"


def test_checkpoint_list_falls_back_to_full_uris() -> None:
    assert checkpoint_list(["gs://a/x/final", "gs://b/y/final"]) == "gs://a/x/final, gs://b/y/final"


def test_terminal_console_draws_a_bar_not_lines() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    view = JobView(console, "j")
    view.update(merge(JobProgress(state="RUNNING"), RUN, _metrics(5)))
    view.finish(merge(JobProgress(state="SUCCEEDED"), RUN, _metrics(20)), None)
    text = out.getvalue()
    assert "job j: succeeded" in text and "5/20" in text
