"""Time to first line of each ``tunestack`` command that neither trains nor serves.

Runs every command 5 times (``--runs``) in a fresh interpreter against a scratch
``$TUNESTACK_HOME`` (no server running, so nothing is stopped or changed) and prints the
median seconds until the first byte of output, next to ``python -c pass``::

    python bench/cli_startup.py [--runs 5] [--budget 1.5]

Exit status 1 when a command's median exceeds ``--budget`` seconds (the issue's 1.5 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys, infra.cli; sys.exit(infra.cli.main())"]
#: The commands, as a user types them after ``tunestack``.
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("validate", "specs/local-demo.yaml", "--no-datasets"),
    ("plan", "specs/local-demo.yaml"),
    ("models",),
    ("status", "specs/local-demo.yaml", "--local"),
    ("logs", "no-such-job", "--local"),
    ("doctor", "specs/local-demo.yaml", "--local"),
    ("up", "specs/dev.yaml"),
    ("down", "specs/local-demo.yaml", "--local"),
    ("serve", "--stop"),
)


def main() -> int:
    """Prints one line per command: median seconds to first line, and the budget verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command. Default: 5")
    parser.add_argument(
        "--budget", type=float, default=1.5, help="seconds allowed to the first line. Default: 1.5"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "TUNESTACK_HOME": home,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'trainer_image'}",
        }
        floor = _median([sys.executable, "-c", "print()"], env, args.runs)
        print(f"{'python -c pass':<46} {floor:6.2f} s")
        slow = 0
        for command in COMMANDS:
            seconds = _median([*CLI, *command], env, args.runs)
            verdict = "ok" if seconds <= args.budget else f"OVER {args.budget:.1f} s"
            slow += seconds > args.budget
            print(f"{'tunestack ' + ' '.join(command):<46} {seconds:6.2f} s  {verdict}")
    return 1 if slow else 0


def _median(argv: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(_first_line(argv, env) for _ in range(runs))


def _first_line(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to the first byte on stdout or stderr (then the rest is drained)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.communicate(timeout=120)
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
