"""``tunestack doctor SPEC [--local] [--format text|json]``: live, read-only pre-flight checks.

Exit 0 when no check fails (``cannot-check`` results are shown but do not fail the run), 1 when
one fails or the spec does not load, 2 on usage errors.

Fast start: the check modules (google-auth, the storage and Vertex clients) are imported after
the first line is printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console

from infra.diagnostics import sort_key
from infra.doctor.results import CheckResult, GroupedPrinter, exit_code, print_summary
from infra.load import load_spec


def register(sub: Any) -> None:
    """Adds ``doctor`` to the parser."""
    p = sub.add_parser(
        "doctor",
        help="check that a project (or the local stack) is ready for a spec",
        description=(
            "Live, read-only checks with Application Default Credentials: credentials, project "
            "ACTIVE, billing, APIs, service agents, bucket permissions, region, the concurrent "
            "tuning-jobs quota and the jobs running now. Each result is pass, fail or "
            "cannot-check, with the fix. Exit 0 when nothing fails."
        ),
    )
    p.add_argument("spec", help="the YAML spec")
    p.add_argument(
        "--local",
        action="store_true",
        help="check the local API and storage emulator instead of GCP",
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Loads the spec, runs the checks with a spinner, prints the report; returns the exit code."""
    loaded = load_spec(args.spec)
    if loaded.spec is None:
        for d in sorted(loaded.diagnostics, key=sort_key):
            print(d.format(), file=sys.stderr)
        return 1
    if args.format == "text":
        where = "the local stack" if args.local else "GCP (Application Default Credentials)"
        print(f"doctor: {args.spec} against {where}", flush=True)
    if args.local:
        checks = importlib.import_module("infra.doctor.local").run_local_checks(loaded.spec)
    else:
        checks = importlib.import_module("infra.doctor.cloud").run_cloud_checks(loaded.spec)
    if args.format == "json":
        results = _collect(checks, Console(stderr=True))
        report = {
            "spec": str(args.spec),
            "target": "local" if args.local else "gcp",
            "ok": exit_code(results) == 0,
            "checks": [r.to_json() for r in results],
        }
        print(json.dumps(report, indent=2))
        return exit_code(results)
    console = Console(highlight=False, soft_wrap=True)
    results = _collect(checks, console, show=True)
    print_summary(results, console)
    return exit_code(results)


def _collect(
    checks: Iterator[CheckResult], console: Console, show: bool = False
) -> list[CheckResult]:
    # Each check is a network round trip (several per API and region): a spinner says which
    # check is running while results print as they arrive.
    results: list[CheckResult] = []
    printer = GroupedPrinter(console)
    with console.status("running doctor checks...") as status:
        for result in checks:
            results.append(result)
            if show:
                printer.add(result)
            status.update(f"running doctor checks... ({len(results)} done, last: {result.check})")
        printer.flush()
    return results
