"""The ``tunestack`` command line. Each subcommand lives in its own module with ``register``.

Exit codes: 0 success, 1 invalid input or a failed check, 2 usage error. User errors never
print a traceback.
"""

from __future__ import annotations

import argparse
import sys

from infra.cli import doctor, local, plan, validate

COMMANDS = (validate, plan, local, doctor)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by tests that check workflow files' commands)."""
    parser = argparse.ArgumentParser(prog="tunestack", description="Open-model fine-tuning on Vertex AI as code.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tunestack`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
