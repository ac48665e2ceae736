"""The ``tunestack`` command line. Each subcommand lives in its own module with ``register``.

Exit codes: 0 success, 1 invalid input or a failed check, 2 usage error. User errors never
print a traceback.

Command modules are imported on demand: ``up``/``serve`` pull in torch and transformers and
``plan`` the Pulumi SDK, which would make ``tunestack validate`` take seconds to start.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from types import ModuleType

#: Which module registers which subcommands, in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "infra.cli.validate": ("validate", "schema"),
    "infra.cli.plan": ("plan",),
    "infra.cli.local": ("serve", "up", "down", "demo"),
    "infra.cli.doctor": ("doctor",),
    "infra.cli.serving": ("chat", "predict"),
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


#: Set to 1 to see the traceback of an unexpected error (normally one line, exit 1).
DEBUG_ENV = "TUNESTACK_DEBUG"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tunestack`` console script.

    Whatever happens, the user sees one line: Ctrl-C at any point exits 130, a lost
    connection or any other failure exits 1 (the traceback only with ``TUNESTACK_DEBUG=1``).
    """
    try:
        args_in = sys.argv[1:] if argv is None else argv
        owner = next((m for m, cmds in COMMANDS.items() if args_in and args_in[0] in cmds), None)
        parser = build_parser([owner] if owner else None)
        args = parser.parse_args(args_in)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tunestack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tunestack plan | head`
        return 1
    except Exception as e:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: {describe(e)}", file=sys.stderr)
        return 1


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so the command unwinds like a Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def run() -> int:
    """The console script: :func:`main` with SIGTERM handled like Ctrl-C, then an exit that a
    late signal cannot turn into a crash.

    SIGTERM (``kill``, ``timeout``, a service manager) unwinds the command and exits 143 with
    one line, as Ctrl-C exits 130. Once the command has its exit status, both are ignored:
    Python puts the default handlers back while it shuts down, so a signal arriving then would
    kill the process by the signal (status -2 or -15, no message) instead of exiting with the
    status the command printed.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = main()
    except KeyboardInterrupt:
        print("tunestack: interrupted", file=sys.stderr)
        code = 130
    except Terminated:
        print("tunestack: terminated", file=sys.stderr)
        code = 143
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return code


def describe(error: BaseException) -> str:
    """One line for an unexpected failure: a lost connection says what to do."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain and len(chain) < 20:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        name = type(e).__name__
        if isinstance(e, ConnectionError) or "ConnectionError" in name or "Unavailable" in name:
            return (
                f"lost the connection to the local API or storage ({_first_line(e)}): is "
                "`tunestack serve` still running? Start it again (or re-run `tunestack up "
                "--local`, which starts one) and retry"
            )
    return f"{type(error).__name__}: {_first_line(error)} (set {DEBUG_ENV}=1 for the traceback)"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
