"""Fuzzing with a larger budget than CI: the properties of tests/hardening/test_fuzz.py.

    python bench/fuzz.py [--examples 2000] [-k validate]

Runs the same hypothesis properties (specs through validate and plan, bodies through every
API route, object names through the storage door) with ``--examples`` per property and
prints the time each took and what failed; hypothesis prints a minimal failing example.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property")
    parser.add_argument("-k", default="", help="pytest -k expression (one property)")
    args = parser.parse_args()
    env = {
        **os.environ,
        "TUNESTACK_FUZZ_EXAMPLES": str(args.examples),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "trainer_image")]),
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0"]
    cmd += ["tests/hardening/test_fuzz.py", *(["-k", args.k] if args.k else [])]
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    print(
        f"fuzz: {args.examples} examples per property, {time.perf_counter() - start:.0f} s, "
        f"{'no failures' if code == 0 else 'FAILURES above'}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
