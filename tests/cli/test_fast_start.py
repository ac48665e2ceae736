"""Fast start: the commands that neither train nor serve never import torch, transformers,
the Pulumi SDK or the Vertex GAPIC client before their first line (bench/cli_startup.py
times them; this test pins the cause, imports, so it cannot be flaky)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "pulumi", "google.cloud.aiplatform_v1beta1")
PROBE = (
    "import atexit, sys, infra.cli\n"
    "atexit.register(lambda: print('HEAVY', [m for m in {heavy!r} if m in sys.modules], file=sys.stderr))\n"
    "sys.exit(infra.cli.main({argv!r}))\n"
)

#: Commands whose whole run (not only the first line) stays light.
LIGHT = [
    ["models", "--format", "json"],
    ["up", "specs/dev.yaml"],
    ["down", "specs/local-demo.yaml", "--local"],
    ["serve", "--stop"],
    ["logs", "123", "--local"],
    ["logs", "projects/p/locations/us-central1/customJobs/1"],
    ["validate", "specs/local-demo.yaml"],
    ["status", "specs/local-demo.yaml", "--local"],
]
# doctor imports its check modules (the Vertex client among them) after printing its first
# line; bench/cli_startup.py times that one.


@pytest.mark.parametrize("argv", LIGHT, ids=[" ".join(a) for a in LIGHT])
def test_light_commands_import_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TUNESTACK_HOME": str(tmp_path),
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'trainer_image'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, argv=argv)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    heavy = [line for line in out.stderr.splitlines() if line.startswith("HEAVY")]
    assert heavy == ["HEAVY []"], out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_every_parser_module_registers_without_heavy_imports() -> None:
    code = (
        "import sys, infra.cli\ninfra.cli.build_parser()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'trainer_image'}"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    # plan's module imports the checks only; the Pulumi SDK comes with planning itself.
    assert out.stdout.strip() == "[]", out.stderr
