"""The ``tunestack`` command line. Each subcommand lives in its own module with ``register``.

Exit codes: 0 success, 1 invalid input or a failed check, 2 usage error. User errors never
print a traceback.

Command modules are imported on demand: ``up``/``serve`` pull in torch and transformers and
``plan`` the Pulumi SDK, which would make ``tunestack validate`` take seconds to start.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

#: Which module registers which subcommands, in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "infra.cli.validate": ("validate", "schema"),
    "infra.cli.plan": ("plan",),
    "infra.cli.local": ("serve", "up", "down", "demo"),
    "infra.cli.doctor": ("doctor",),
    "infra.cli.models": ("models",),
    "infra.cli.status": ("status",),
    "infra.cli.logs": ("logs",),
}


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with the subcommands of ``modules`` (default: all of them).

    Tests that check the workflow files' commands use the full parser.
    """
    parser = argparse.ArgumentParser(
        prog="tunestack", description="Open-model fine-tuning on Vertex AI as code."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules or list(COMMANDS):
        _module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tunestack`` console script."""
    args_in = sys.argv[1:] if argv is None else argv
    owner = next((m for m, cmds in COMMANDS.items() if args_in and args_in[0] in cmds), None)
    parser = build_parser([owner] if owner else None)
    args = parser.parse_args(args_in)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
