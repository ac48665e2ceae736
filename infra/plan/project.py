"""Project bootstrap checks: ``create`` / ``billing_account`` / ``folder_id`` / ``org_id``.

A pure function over the spec (and the loader's source positions, so each finding points at
its YAML line). The program and ``tunestack plan`` refuse a spec with any of these errors.
"""

from __future__ import annotations

import re

from infra.diagnostics import Diagnostic
from infra.load import Positions, locate
from infra.spec.models import Spec

NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")


def project_diagnostics(
    spec: Spec, path: str, positions: Positions | None = None
) -> list[Diagnostic]:
    """Checks the project bootstrap settings for consistency.

    Args:
        spec: The parsed spec.
        path: The spec file, as the user named it (diagnostics carry it).
        positions: ``Loaded.positions`` (dotted field path -> 1-based line, column).

    Returns:
        Errors with code ``invalid-value``, in field order.
    """
    p = spec.project
    out: list[Diagnostic] = []

    def error(code: str, field: str, message: str) -> None:
        line, column = locate(positions or {}, f"project.{field}")
        out.append(Diagnostic("error", code, path, line, column, f"project.{field}", message))

    # create: true needing billing_account and exactly one of folder_id/org_id, the billing
    # account format and the project id/number are checked by infra.checks; these are the
    # bootstrap rules it leaves to the plan.
    if not p.create:
        for field in ("billing_account", "folder_id", "org_id"):
            if getattr(p, field):
                error(
                    "invalid-value",
                    field,
                    f"{field} only applies with create: true; an adopted project keeps its own (remove it, or set create: true)",
                )
    for field, prefix in (("folder_id", "folders/"), ("org_id", "organizations/")):
        value = getattr(p, field)
        if value and not NUMERIC_ID.match(value.removeprefix(prefix)):
            error(
                "invalid-value",
                field,
                f"{value!r} is not a numeric {field.removesuffix('_id')} id (e.g. 123456789012)",
            )
    return out
