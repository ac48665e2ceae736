"""``tunestack plan``: what `pulumi up` would register, offline, for review.

Runs the real program (:func:`infra.emit.program.build`) under Pulumi's mocks, no credentials
needed, and prints the registrations as text, the JSON contract, or a Markdown review comment
(resource table, mermaid dependency graph, training tokens per job). With ``--diff-against``
(an older spec, or a plan JSON saved earlier) every changed resource is classified as create,
update (in place), replace (delete + create: for a tuning job, a new billed job) or delete, with
the fields causing it and its effects (:mod:`infra.plan.changes`, from the providers' own input
declarations), the jobs it bills and the training-token delta. Invalid specs fail with the same
diagnostics as ``validate``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from infra import cost
from infra.checks import validate
from infra.plan import COMPONENTS
from infra.plan.changes import DELETE, REPLACE, diff_plans

__all__ = ["diff_plans", "plan_document", "register", "render_diff_markdown", "render_diff_text"]

#: The marks of each action in the text and Markdown views.
MARKS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}


def register(sub: Any) -> None:
    """Adds ``plan`` to the parser."""
    p = sub.add_parser(
        "plan", help="show what `pulumi up` would register (offline, no credentials)"
    )
    p.add_argument("spec", metavar="SPEC", help="YAML spec file")
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format (default: text)",
    )
    p.add_argument(
        "--diff-against",
        metavar="OLD_SPEC_OR_PLAN_JSON",
        help="show only what changes relative to an older spec or a saved `plan --format json`",
    )
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """Plans SPEC (and the old spec or plan with --diff-against); prints it. Exit 0 or 1."""
    doc = plan_document(args.spec)
    if doc is None:
        return 1
    if args.diff_against:
        old = _load_old(args.diff_against)
        if old is None:
            return 1
        diff = {**diff_plans(old, doc), "cost": cost.cost_delta(old.get("cost"), doc.get("cost"))}
        if args.format == "json":
            print(json.dumps(diff, indent=2))
        elif args.format == "markdown":
            print(render_diff_markdown(args.spec, diff), end="")
        else:
            print(render_diff_text(args.spec, diff), end="")
        return 0
    if args.format == "json":
        print(json.dumps(doc, indent=2))
    elif args.format == "markdown":
        print(render_markdown(args.spec, doc), end="")
    else:
        print(render_text(args.spec, doc), end="")
    return 0


def plan_document(spec: str | Path) -> dict[str, Any] | None:
    """The plan JSON of a spec, or None after printing its diagnostics when it is invalid."""
    console = Console(stderr=True)
    if not console.is_terminal:  # a terminal gets the spinner below
        print(f"planning {spec} under Pulumi mocks...", file=sys.stderr, flush=True)
    report = validate(spec)
    for d in report.diagnostics:
        print(d.format(), file=sys.stderr)
    if not report.ok:
        errors = sum(d.severity == "error" for d in report.diagnostics)
        print(f"{spec}: invalid ({errors} error(s)); nothing planned", file=sys.stderr)
        return None
    with console.status(f"planning {spec} under Pulumi mocks..."):
        # Imported here, after the first line: the Pulumi SDK takes over a second to import.
        offline = importlib.import_module("infra.emit.offline")
        doc = offline.run_offline(spec, report).to_json()
    if report.spec is not None:
        doc["cost"] = cost.plan_cost(report.spec, doc["jobs"])
    return doc


def render_text(spec: str | Path, doc: dict[str, Any]) -> str:
    """Human-readable plan: resources by component, then jobs and endpoints."""
    resources = doc["resources"]
    lines = [
        f"{spec}: {len([r for r in resources if r['parent'] is not None])} resources in {len([r for r in resources if r['parent'] is None])} components"
    ]
    # Components in the order things happen (foundation, storage, tuning, serving).
    rank = {name: i for i, name in enumerate(COMPONENTS)}
    components = sorted(
        (r for r in resources if r["parent"] is None), key=lambda r: rank.get(r["name"], len(rank))
    )
    for component in components:
        lines.append(f"\n{component['name']} ({component['type']})")
        for r in (r for r in resources if r["parent"] == component["name"]):
            flags = " [protected]" if r["protect"] else ""
            deps = f"  <- {', '.join(r['depends_on'])}" if r["depends_on"] else ""
            lines.append(f"  + {r['name']}: {r['type']}{flags}{deps}")
    if doc["jobs"]:
        lines.append("\njobs (in quota order)")
        for j in doc["jobs"]:
            lines.append(f"  {j['name']}: {_job_line(j)}")
            if (c := _cost_of(doc, "jobs", j["name"])) and c["usd"] is not None:
                lines.append(f"    {cost.job_line(c)}")
    if doc["endpoints"]:
        lines.append("\nendpoints")
        for e in doc["endpoints"]:
            lines.append(f"  {e['name']}: {_endpoint_line(e)}")
            if (c := _cost_of(doc, "endpoints", e["name"])) and c["usd_per_hour_min"] is not None:
                lines.append(f"    {cost.endpoint_line(c)}")
    if "cost" in doc:
        total = doc["cost"]
        lines.append(
            f"\nestimated cost (list prices, an estimate): training {cost.money(total['training_usd'])}, "
            f"serving {cost.money(total['serving_usd_per_hour_min'])}/hour at min replicas"
            + ("" if _priced(total) else f" ({cost.NO_PRICE})")
        )
    return "\n".join(lines) + "\n"


def render_markdown(spec: str | Path, doc: dict[str, Any]) -> str:
    """A review comment: resource table, mermaid dependency graph, training tokens per job."""
    resources = [r for r in doc["resources"] if r["parent"] is not None]
    out = [f"### tunestack plan: `{spec}`", "", f"{len(resources)} resources.", ""]
    out += ["| Resource | Type | Component | Depends on | Protected |", "|---|---|---|---|---|"]
    for r in resources:
        out.append(
            f"| `{r['name']}` | `{r['type']}` | {r['parent']} | {_md_list(r['depends_on'])} | {'yes' if r['protect'] else ''} |"
        )
    out += ["", "```mermaid", "graph LR"]
    for r in resources:
        out.append(f'  {_node(r["name"])}["{r["name"]}"]')
    for r in resources:
        for d in r["depends_on"]:
            out.append(f"  {_node(d)} --> {_node(r['name'])}")
    out += ["```", ""]
    out += _md_jobs(doc)
    if "cost" in doc:
        out += _md_cost(doc["cost"])
    return "\n".join(out) + "\n"


def render_diff_text(spec: str | Path, diff: dict[str, Any]) -> str:
    """The diff as ``+`` create, ``~`` update, ``-/+`` replace, ``-`` delete lines (fields,
    then each effect), the jobs it bills and the token delta."""
    changes = diff["changes"]
    lines = [f"{spec}: {_summary(changes)}"]
    for c in changes:
        fields = f" ({', '.join(c['fields'])})" if c["fields"] else ""
        loud = "  <- REPLACED" if c["action"] == REPLACE else ""
        lines.append(
            f"  {MARKS[c['action']]:>3} {c['name']}: {c['type']} {c['action']}{fields}{loud}"
        )
        lines += [f"        {e}" for e in c["effects"]]
    for j in diff["jobs"]:
        lines.append(
            f"  job {j['name']}: training tokens {_num(j['old'])} -> {_num(j['new'])} ({_signed(j['delta'])})"
        )
    if diff["billed_jobs"]:
        lines.append(
            f"  billed: {len(diff['billed_jobs'])} job(s) to submit ({', '.join(diff['billed_jobs'])}), {_num(diff['billed_training_tokens'])} training tokens"
        )
    t = diff["training_tokens"]
    lines.append(f"  training tokens: {_num(t['old'])} -> {_num(t['new'])} ({_signed(t['delta'])})")
    if "cost" in diff:
        lines.append(f"  {_cost_delta_line(diff['cost'])}")
    return "\n".join(lines) + "\n"


def render_diff_markdown(spec: str | Path, diff: dict[str, Any]) -> str:
    """A review comment of the diff: one table of changes (replacements in bold with a
    warning sign), their effects, the billed jobs and the token delta."""
    changes = diff["changes"]
    out = [f"### tunestack plan: `{spec}`", "", f"{_summary(changes, bold=True)}.", ""]
    if not changes:
        out += ["No resource changes.", ""]
    else:
        out += ["| | Action | Resource | Type | Fields | Effects |", "|---|---|---|---|---|---|"]
        for c in changes:
            action = c["action"]
            if action == REPLACE:
                action = "⚠️ **replace**"
            elif action == DELETE:
                action = "**delete**"
            out.append(
                f"| {MARKS[c['action']]} | {action} | `{c['name']}` | `{c['type']}` | {_md_list(c['fields'])} | {'<br>'.join(_cell(e) for e in c['effects'])} |"
            )
        out.append("")
    if diff["billed_jobs"]:
        out.append(
            f"**Billed:** {len(diff['billed_jobs'])} tuning job(s) will be submitted ({_md_list(diff['billed_jobs'])}), {_num(diff['billed_training_tokens'])} training tokens.\n"
        )
    t = diff["training_tokens"]
    out.append(f"Training tokens: {_num(t['old'])} → {_num(t['new'])} (**{_signed(t['delta'])}**)")
    if "cost" in diff:
        out += ["", _cost_delta_line(diff["cost"])]
    if diff["jobs"]:
        out += [
            "",
            "| Job | Old training tokens | New training tokens | Delta |",
            "|---|---:|---:|---:|",
        ]
        out += [
            f"| `{j['name']}` | {_num(j['old'])} | {_num(j['new'])} | {_signed(j['delta'])} |"
            for j in diff["jobs"]
        ]
    return "\n".join(out) + "\n"


def _summary(changes: list[dict[str, Any]], bold: bool = False) -> str:
    counts = {a: sum(c["action"] == a for c in changes) for a in MARKS}
    words = {
        "create": "to create",
        "update": "to update in place",
        "replace": "to replace",
        "delete": "to delete",
    }
    return ", ".join(
        f"**{n}** {words[a]}" if bold else f"{n} {words[a]}" for a, n in counts.items()
    )


# --- helpers -------------------------------------------------------------------------------


def _cost_of(doc: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    return next((c for c in doc.get("cost", {}).get(section, []) if c["name"] == name), None)


def _priced(c: dict[str, Any]) -> bool:
    return c["training_usd"] is not None and c["serving_usd_per_hour_min"] is not None


def _md_cost(c: dict[str, Any]) -> list[str]:
    out = ["| Cost (estimate, list prices) | Figure |", "|---|---|"]
    out += [f"| job `{j['name']}` | {cost.job_line(j).removeprefix('cost: ')} |" for j in c["jobs"]]
    out += [
        f"| endpoint `{e['name']}` | {cost.endpoint_line(e).removeprefix('cost: ')} |"
        for e in c["endpoints"]
    ]
    return out + [""]


def _cost_delta_line(d: dict[str, Any]) -> str:
    t, s = d["training_usd"], d["serving_usd_per_hour_min"]
    return (
        f"estimated cost (an estimate): training {cost.money(t['old'])} -> {cost.money(t['new'])} "
        f"({cost.signed_money(t['delta'])}), serving {cost.money(s['old'])}/h -> "
        f"{cost.money(s['new'])}/h ({cost.signed_money(s['delta'])}/h)"
    )


def _load_old(path: str) -> dict[str, Any] | None:
    if path.endswith(".json"):
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(
                f"{path}:0:0: error[file-unreadable]: not a plan JSON document: {e}",
                file=sys.stderr,
            )
            return None
        if not isinstance(doc, dict) or "resources" not in doc:
            print(
                f"{path}:0:0: error[invalid-value]: not a `tunestack plan --format json` document",
                file=sys.stderr,
            )
            return None
        return doc
    return plan_document(path)


def _md_jobs(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if doc["jobs"]:
        out += [
            "| Job | Examples | Tokens | Epochs | Training tokens | Checkpoints | After |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for j in doc["jobs"]:
            tokens = _num(j["tokens"]) + ("" if j["tokens_exact"] else " (est.)")
            out.append(
                f"| `{j['name']}` | {_num(j['examples'])} | {tokens} | {j['epochs']} | {_num(j['training_tokens'])} | {j['checkpoints']} | {_md_list(j['after'])} |"
            )
        out.append(
            f"\nTotal training tokens: **{_num(_total(j['training_tokens'] for j in doc['jobs']))}**\n"
        )
    if doc["endpoints"]:
        out += [
            "| Endpoint | Serves | Machine | Accelerators | Weights (GB) | Fits | Canary |",
            "|---|---|---|---|---:|---|---|",
        ]
        for e in doc["endpoints"]:
            fits = {True: "yes", False: "**no**", None: "unknown"}[e["fits"]]
            canary = f"{e['canary_percent']}%" if e.get("canary_percent") else ""
            out.append(
                f"| `{e['name']}` | {e.get('serves', '')} | {e['machine_type']} | {e['accelerator_count']} x {e['accelerator_type']} | {_num(e['weights_gb'])} | {fits} | {canary} |"
            )
        out.append("")
    return out


def _job_line(j: dict[str, Any]) -> str:
    if j["tokens"] is None:
        after = f", after {', '.join(j['after'])}" if j["after"] else ""
        return f"training data not read (gs:// without access): tokens unknown, {j['epochs']} epochs, {j['checkpoints']} checkpoints{after}"
    kind = "exact" if j["tokens_exact"] else "estimated"
    after = f", after {', '.join(j['after'])}" if j["after"] else ""
    return f"{_num(j['examples'])} examples, {_num(j['tokens'])} tokens ({kind}) x {j['epochs']} epochs = {_num(j['training_tokens'])} training tokens, {j['checkpoints']} checkpoints{after}"


def _endpoint_line(e: dict[str, Any]) -> str:
    fits = {True: "fits", False: "DOES NOT FIT", None: "fit unknown"}[e["fits"]]
    line = f"{e['machine_type']}, {e['accelerator_count']} x {e['accelerator_type']}, weights {_num(e['weights_gb'])} GB ({fits})"
    if e.get("canary_percent"):
        line += f", canary {e['canary_percent']}% for a new model"
    return line + (f"\n    serves {e['serves']}" if e.get("serves") else "")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _node(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _md_list(items: list[str]) -> str:
    return ", ".join(f"`{i}`" for i in items)


def _num(value: Any) -> str:
    if value is None:
        return "?"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _signed(value: int) -> str:
    return f"{value:+,}"


def _total(values: Any) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)
