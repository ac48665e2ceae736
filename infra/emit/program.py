"""The program: spec file -> checks -> plan -> emitted resources and stack outputs.

``infra/__main__.py`` (``pulumi up``) and ``tunestack plan`` (under Pulumi's mocks) both call
:func:`build`, so what a reviewer sees is what the real program registers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from infra import checks
from infra.checks import Report
from infra.emit.components import emit
from infra.plan import Plan, build_plan


@dataclass
class Built:
    """What :func:`build` registered: the plan and the stack outputs (Pulumi Outputs)."""

    plan: Plan
    outputs: dict[str, Any]


def build(spec_path: str | Path, report: Report | None = None) -> Built:
    """Registers the spec's resources with the running Pulumi engine (real or mocked).

    Args:
        spec_path: The YAML spec (dataset paths are relative to its folder).
        report: Its :func:`infra.checks.validate` report, when already computed (the CLI
            shows it first); every rule is a check there, so an ``ok`` report always plans.

    Returns:
        The plan and the stack outputs, which are also exported.

    Raises:
        pulumi.RunError: The spec is invalid; every diagnostic was logged as an error or
            warning and nothing was registered or uploaded.
    """
    report = report or checks.validate(spec_path)
    if not report.ok or report.spec is None:
        for d in report.diagnostics:
            (pulumi.log.error if d.severity == "error" else pulumi.log.warn)(d.format())
        errors = sum(d.severity == "error" for d in report.diagnostics)
        raise pulumi.RunError(
            f"{spec_path}: {errors} error(s); nothing was created or uploaded (run `tunestack validate {spec_path}`)"
        )
    plan = build_plan(report.spec, report, spec_path)
    # The SDK's dependency-cycle check walks each new dependency's transitive closure
    # recursively; a long quota chain (jobs one after another) is that deep.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000 + 10 * len(plan.jobs)))
    outputs = emit(plan)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return Built(plan=plan, outputs=outputs)
