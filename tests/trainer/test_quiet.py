"""The trainer is quiet by default: no library FutureWarning, ``--no-progress`` silences every
progress bar (ours and Hugging Face's), and every flag has help text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from trainer.config import build_parser

REPO = Path(__file__).resolve().parents[2]


def test_no_progress_run_prints_no_bars_and_no_future_warnings(
    tiny: Callable[..., Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'trainer_image'}"}
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--base-model", str(tiny("llama")),
         "--train-data", str(REPO / "specs/data/local-demo/train.jsonl"),
         "--output-dir", str(tmp_path / "out"), "--tuning-mode", "PEFT_ADAPTER",
         "--epochs", "1", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "FutureWarning" not in text and "Warning:" not in text, text
    assert "it/s]" not in text and "%|" not in text, text  # no tqdm bar at all
    assert "done:" in text


def test_every_trainer_flag_has_help() -> None:
    parser = build_parser()
    missing = [
        a.option_strings for a in parser._actions if a.option_strings and not (a.help or "").strip()
    ]
    assert not missing
