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
from infra.diagnostics import Diagnostic
from infra.emit.components import emit
from infra.load import load_spec
from infra.plan import Plan, build_plan, project_diagnostics


@dataclass
class Checked:
    """A spec's validation report plus the plan layer's project bootstrap checks.

    Attributes:
        report: What ``tunestack validate`` reports.
        diagnostics: Every finding (the report's and the bootstrap checks'), spec file first.
        ok: Nothing blocks planning.
    """

    report: Report
    diagnostics: list[Diagnostic]
    ok: bool


@dataclass
class Built:
    """What :func:`build` registered: the plan and the stack outputs (Pulumi Outputs)."""

    plan: Plan
    outputs: dict[str, Any]


def check(spec_path: str | Path, strict: bool = False) -> Checked:
    """Validates a spec (and its datasets) and checks the project bootstrap settings.

    Args:
        spec_path: The YAML spec.
        strict: Warnings block too.

    Returns:
        The findings; ``ok`` is False when any blocks.
    """
    report = checks.validate(spec_path, strict=strict)
    diagnostics = list(report.diagnostics)
    if report.spec is not None:
        found = project_diagnostics(report.spec, str(spec_path))
        if found:
            # Only re-read the YAML (for line numbers) when there is something to point at.
            found = project_diagnostics(report.spec, str(spec_path), load_spec(spec_path).positions)
        diagnostics += found
    display = str(spec_path)
    # Spec-file findings first, by position; dataset findings keep the report's order.
    diagnostics.sort(
        key=lambda d: (d.file != display, (d.line, d.column) if d.file == display else (0, 0))
    )
    blocking = any(d.severity == "error" or strict for d in diagnostics)
    return Checked(report=report, diagnostics=diagnostics, ok=report.ok and not blocking)


def build(spec_path: str | Path, checked: Checked | None = None) -> Built:
    """Registers the spec's resources with the running Pulumi engine (real or mocked).

    Args:
        spec_path: The YAML spec (dataset paths are relative to its folder).
        checked: A :func:`check` result already computed (the CLI shows it first).

    Returns:
        The plan and the stack outputs, which are also exported.

    Raises:
        pulumi.RunError: The spec is invalid; every diagnostic was logged as an error or
            warning and nothing was registered or uploaded.
    """
    checked = checked or check(spec_path)
    if not checked.ok or checked.report.spec is None:
        for d in checked.diagnostics:
            (pulumi.log.error if d.severity == "error" else pulumi.log.warn)(d.format())
        errors = sum(d.severity == "error" for d in checked.diagnostics)
        raise pulumi.RunError(
            f"{spec_path}: {errors} error(s); nothing was created or uploaded (run `tunestack validate {spec_path}`)"
        )
    plan = build_plan(checked.report.spec, checked.report, spec_path)
    # The SDK's dependency-cycle check walks each new dependency's transitive closure
    # recursively; a long quota chain (jobs one after another) is that deep.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000 + 10 * len(plan.jobs)))
    outputs = emit(plan)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return Built(plan=plan, outputs=outputs)
