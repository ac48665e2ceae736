"""``tunestack status SPEC [--local] [--format json]``: what the spec's jobs and endpoints are
doing now, on the local API or on Vertex AI (Application Default Credentials).

Jobs are found by the ``managed-by: tunestack`` label and their display name (the spec's job
name; the newest wins), endpoints by their display name (the spec's endpoint name and the
deployment tag), so ``status`` needs no Pulumi state. A job's progress, losses and
checkpoints come from its own outputs (:mod:`infra.vertex.progress`).

Fast start: the first line is printed before the Vertex client is imported.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from infra.local import daemon


def register(sub: Any) -> None:
    """Adds ``status``."""
    p = sub.add_parser(
        "status", help="the spec's jobs (state, progress, losses, checkpoints) and endpoints"
    )
    p.add_argument("spec", type=Path, help="the YAML spec")
    p.add_argument("--local", action="store_true", help="ask the local API instead of Vertex AI")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 with the status, 1 on an invalid spec or an unreachable API."""
    where = "the local API" if args.local else "Vertex AI"
    if args.format == "text":
        print(f"status of {args.spec} on {where}", flush=True)
    checks = importlib.import_module("infra.checks")
    report = checks.validate(args.spec, check_datasets=False)
    if not report.ok or report.spec is None:
        for d in report.diagnostics:
            print(d.format(), file=sys.stderr)
        print(f"error: {args.spec}: invalid spec", file=sys.stderr)
        return 1
    spec = report.spec
    if args.local and daemon.running() is None:
        print(
            "error: no local API is running (start it with `tunestack up SPEC --local`)",
            file=sys.stderr,
        )
        return 1
    collect = importlib.import_module("infra.cli.status_collect")
    try:
        data = collect.collect(spec, local=args.local)
    except collect.StatusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    data = {"spec": str(args.spec), **data}
    if args.format == "json":
        print(json.dumps(data, indent=2))
    else:
        print(render_text(data), end="")
    return 0


def render_text(data: dict[str, Any]) -> str:
    """The text form of :func:`~infra.cli.status_collect.collect`'s answer."""
    out = []
    out.append("jobs:" if data["jobs"] else "jobs: none in the spec")
    for j in data["jobs"]:
        if j["job"] is None:
            out.append(f"  {j['name']}: not submitted")
            continue
        p = j["progress"]
        out.append(f"  {j['name']}: {_progress_line(p)}")
        out.append(f"    {j['job']}")
        for uri in p["checkpoints"]:
            out.append(f"    checkpoint {uri}")
        if p["loss_curve"]:
            out.append(f"    loss curve {p['loss_curve']}")
    out.append("endpoints:" if data["endpoints"] else "endpoints: none in the spec")
    for e in data["endpoints"]:
        if e["endpoint"] is None:
            out.append(f"  {e['name']}: not deployed")
            continue
        out.append(f"  {e['name']}: {e['endpoint']}")
        for d in e["deployed_models"]:
            share = e["traffic_split"].get(d["id"], 0)
            out.append(
                f"    {d['model']} (deployed model {d['id']}): {share}% of traffic, "
                f"replicas {d['min_replicas']}-{d['max_replicas']}, "
                f"{d['machine_type']} x {d['accelerator_count']} {d['accelerator_type']}"
            )
        if not e["deployed_models"]:
            out.append("    no model deployed")
    return "\n".join(out) + "\n"


def _progress_line(p: dict[str, Any]) -> str:
    parts = [p["state"]]
    if p["step"] is not None:
        parts.append(f"step {p['step']}/{p['total_steps'] or '?'}")
    if p["epoch"] is not None:
        parts.append(f"epoch {p['epoch']}/{p['epochs'] or '?'}")
    if p["loss"] is not None:
        parts.append(f"loss {p['loss']:.4f}")
    if p["eval_loss"] is not None:
        parts.append(f"eval loss {p['eval_loss']:.4f}")
    return "  ".join(parts)
