"""``python -m trainer`` / ``tunestack-trainer``: fine-tune a model on a Vertex-format dataset.

Example::

    python -m trainer --base-model ./tiny --train-data train.jsonl --output-dir ./out \\
        --tuning-mode PEFT_ADAPTER --epochs 3 --adapter-size 8

Exit codes: 0 done (or already done by this configuration), 1 invalid configuration or data,
or an output written by a different run config (``error:`` lines on stderr, nothing written),
2 usage.
"""

from __future__ import annotations

import sys

from trainer.config import ConfigError, parse
from trainer.recipe import DataError
from trainer.runconfig import RunConfigMismatch
from trainer.train import run


def main(argv: list[str] | None = None) -> int:
    """Parses flags, runs training, and maps user errors to exit code 1 without a traceback."""
    try:
        cfg = parse(argv)
    except ConfigError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    try:
        return run(cfg)
    except DataError as e:
        for line in str(e).splitlines():
            print(line if ": error[" in line else f"error: {line}", file=sys.stderr)
        return 1
    except RunConfigMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"error: not found: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
