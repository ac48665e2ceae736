"""``tunestack validate`` and ``tunestack schema``.

``validate`` reports every problem of one or more specs and their datasets at once, as
``path:line:col: severity[code]: field: message`` lines (or JSON), then what each job will
train on. ``schema`` writes ``specs/schema.json`` for editors from the spec models.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from infra import cost
from infra.checks import Report, validate
from infra.diagnostics import CODES
from infra.spec import Spec

#: Where ``tunestack schema`` writes, relative to the repository root.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "specs" / "schema.json"
# Files smaller than this validate too fast for a progress bar to be worth drawing.
_PROGRESS_MIN_BYTES = 64 << 20


def register(sub: Any) -> None:
    """Adds ``validate`` and ``schema`` to the parser."""
    p = sub.add_parser(
        "validate", help="check specs and their datasets; report every problem at once"
    )
    p.add_argument("specs", nargs="+", metavar="SPEC", help="YAML spec file(s)")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument(
        "--no-datasets", action="store_true", help="check the spec only, not the dataset files"
    )
    p.set_defaults(func=run_validate)

    s = sub.add_parser(
        "schema", help="write specs/schema.json (the JSON schema editors use for specs)"
    )
    s.add_argument(
        "--check", action="store_true", help="exit 1 when the file is stale instead of writing it"
    )
    s.add_argument(
        "--output",
        type=Path,
        default=SCHEMA_PATH,
        help="where to write (default: specs/schema.json)",
    )
    s.add_argument(
        "--markdown",
        action="store_true",
        help="print the spec reference and error-code table as Markdown",
    )
    s.set_defaults(func=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    """Validates every SPEC; prints diagnostics then summaries. Exit 0 valid, 1 invalid."""
    with _progress(args.format == "text") as progress:
        reports = [
            validate(p, strict=args.strict, check_datasets=not args.no_datasets, progress=progress)
            for p in args.specs
        ]
    ok = all(r.ok for r in reports)
    if args.format == "json":
        print(json.dumps(to_json(reports), indent=2))
    else:
        print(render_text(reports), end="")
    return 0 if ok else 1


def to_json(reports: list[Report]) -> dict[str, Any]:
    """The ``--format json`` document: ``{"ok", "diagnostics", "jobs"}`` over all specs."""
    return {
        "ok": all(r.ok for r in reports),
        "diagnostics": [d.to_json() for r in reports for d in r.diagnostics],
        "jobs": [
            {**j.to_json(), "estimated_cost_usd": _job_usd(r, j.name, j.training_tokens)}
            for r in reports
            for j in r.jobs
        ],
    }


def _job_usd(r: Report, name: str, training_tokens: int) -> float | None:
    """The job's estimated training cost in USD (list prices), None without a price."""
    return cost.job_cost(r.spec, name, training_tokens)["usd"] if r.spec else None


def render_text(reports: list[Report]) -> str:
    """Diagnostics, one per line, then a summary per spec and per job."""
    lines = [d.format() for r in reports for d in r.diagnostics]
    if lines:
        lines.append("")
    for r in reports:
        errors = sum(d.severity == "error" for d in r.diagnostics)
        warnings = len(r.diagnostics) - errors
        verdict = "valid" if r.ok else "invalid"
        lines.append(
            f"{r.path}: {verdict} ({_plural(errors, 'error')}, {_plural(warnings, 'warning')})"
        )
        for j in r.jobs:
            kind = "exact" if j.tokens_exact else "estimated"
            fmts = ", ".join(j.formats) or ("no valid example" if j.checked else "data not read")
            lines.append(
                f"  job {j.name}: {j.examples:,} examples ({fmts}), {j.tokens:,} tokens ({kind}) x {_plural(j.epochs, 'epoch')} = {j.training_tokens:,} training tokens, {_plural(j.checkpoints, 'checkpoint')} kept"
            )
            c = cost.job_cost(r.spec, j.name, j.training_tokens) if r.spec else None
            if c and c["usd"] is not None:
                lines.append(f"    {cost.job_line(c)}")
    return "\n".join(lines) + "\n"


def schema_text() -> str:
    """The JSON schema of :class:`Spec`, as ``specs/schema.json`` holds it."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tunestack spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def run_schema(args: argparse.Namespace) -> int:
    """Writes (or with ``--check`` compares) the schema file; ``--markdown`` prints the reference."""
    if args.markdown:
        print(reference_markdown(), end="")
        return 0
    text = schema_text()
    out: Path = args.output
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != text:
            print(f"{out} is stale; run `tunestack schema` to regenerate it", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def reference_markdown() -> str:
    """The spec reference (from the models' field descriptions) and the error-code table."""
    out = [
        "## Spec reference",
        "",
        "Generated from the field descriptions of `infra/spec/models.py` (`tunestack schema --markdown`).",
        "",
    ]
    for key, model in _sections():
        out += [
            f"### `{key}`",
            "",
            (model.__doc__ or "").strip().splitlines()[0],
            "",
            "| Key | Type | Required | Description |",
            "|---|---|---|---|",
        ]
        for name, f in model.model_fields.items():
            out.append(
                f"| `{name}` | {_type_name(f.annotation)} | {'yes' if f.is_required() else 'no'} | {(f.description or '').replace('|', '/')} |"
            )
        out.append("")
    out += [
        "## Error codes",
        "",
        "Stable codes of `tunestack validate` (see `infra/diagnostics.py`).",
        "",
        "| Code | Meaning |",
        "|---|---|",
    ]
    out += [f"| `{code}` | {text.replace('|', '/')} |" for code, text in CODES.items()]
    return "\n".join(out) + "\n"


# --- helpers -------------------------------------------------------------------------------


def _sections() -> list[tuple[str, type[BaseModel]]]:
    out: list[tuple[str, type[BaseModel]]] = [("(top level)", Spec)]
    for name, f in Spec.model_fields.items():
        tp = f.annotation
        for arg in (tp, *typing.get_args(tp)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out.append((name, arg))
    return out


def _type_name(tp: Any) -> str:
    text = str(tp).replace("typing.", "").replace("infra.spec.models.", "")
    if isinstance(tp, type):
        text = tp.__name__
    return text.replace("|", "or").replace("NoneType", "null")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _progress:
    """A rich progress bar on stderr for large dataset files (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Progress | None = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.start()
        return self.update

    def update(self, name: str, done: int, total: int) -> None:
        if self.bar is None or (total and total < _PROGRESS_MIN_BYTES):
            return
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(f"checking {name}", total=total or None)
        self.bar.update(self.tasks[name], completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
