"""``tunestack demo`` end to end, then every "next:" command exactly as it printed them.

A newcomer copies those lines; each must work as given, and the suggested ``chat`` must get
the trained answer (the demo's learning criterion), not noise from a prompt it was not
trained on.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local import demo
from tests.operator.test_up_status import ENTRY, REPO


def _tunestack(home: Path, line: str) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(line.split("  #", 1)[0])
    assert argv[0] == "tunestack", line
    env = {**os.environ, "TUNESTACK_HOME": str(home),
           "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'trainer_image'}"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *argv[1:]],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_demos_next_commands_work_as_printed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        run = _tunestack(home, "tunestack demo")
        assert run.returncode == 0, run.stderr[-3000:]
        lines = run.stdout.splitlines()
        assert any(ln.strip().startswith("tuned model") for ln in lines), run.stdout
        nexts = [ln.strip() for ln in lines[lines.index("next:") + 1 :] if ln.startswith("  ")]
        assert [ln.split()[1] for ln in nexts] == ["status", "chat", "down"], nexts
        status, chat, down = nexts
        out = _tunestack(home, status)
        assert out.returncode == 0 and "vehicles-llama" in out.stdout, out.stderr
        example = demo.find_example(REPO / "specs" / "data" / "local-demo" / "train.jsonl")
        out = _tunestack(home, f"{chat.split('  #', 1)[0]} --message {shlex.quote(demo.QUESTION)}")
        assert out.returncode == 0, out.stderr
        assert demo.word_overlap(out.stdout, example.answer) >= demo.MIN_OVERLAP, out.stdout
        out = _tunestack(home, down)
        assert out.returncode == 0, out.stderr
        assert "undeployed and deleted" in out.stdout
    finally:
        _tunestack(home, "tunestack serve --stop")
