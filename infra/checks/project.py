"""The project rules: id, number, region, labels, the bootstrap settings, and the APIs.

``create`` / ``billing_account`` / ``folder_id`` / ``org_id`` are checked here with the rest,
so a spec ``tunestack validate`` accepts is one the plan can create or adopt as written.
"""

from __future__ import annotations

import re

from infra import catalog
from infra.checks.names import check_labels
from infra.diagnostics import Reporter, did_you_mean
from infra.spec import Spec

_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PROJECT_NUMBER = re.compile(r"[0-9]{1,20}")
_BILLING_ACCOUNT = re.compile(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}")
_NUMERIC_ID = re.compile(r"^[0-9]{1,20}$")
_API = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.googleapis\.com")

#: The parent settings and the prefix each may be written with.
_PARENTS = (("folder_id", "folders/"), ("org_id", "organizations/"))


def check_project(r: Reporter, spec: Spec) -> None:
    """Records every problem of ``spec.project`` and ``spec.apis`` on ``r``."""
    p = spec.project
    if not _PROJECT_ID.fullmatch(p.id) or p.id.endswith("-"):
        r.error(
            "invalid-project-id",
            "project.id",
            f"{p.id!r} is not a project id: 6-30 characters, a lowercase letter first, then lowercase letters, digits or '-', not ending in '-'",
        )
    if p.number is not None and not _PROJECT_NUMBER.fullmatch(p.number):
        r.error(
            "invalid-value",
            "project.number",
            f"{p.number!r} is not a project number (digits only; quote it in YAML)",
        )
    if p.region not in catalog.TUNING_REGIONS:
        r.error(
            "unsupported-region",
            "project.region",
            f"{p.region!r} does not run open-model tuning; use one of {', '.join(catalog.TUNING_REGIONS)}{did_you_mean(p.region, catalog.TUNING_REGIONS)}",
        )
    check_labels(r, p.labels, "project.labels")
    if p.create:
        if not p.billing_account:
            r.error(
                "missing-field", "project.billing_account", "create: true needs billing_account"
            )
        if (p.folder_id is None) == (p.org_id is None):
            r.error(
                "missing-field" if p.folder_id is None else "invalid-value",
                "project.create",
                "create: true needs exactly one of folder_id and org_id",
            )
    if p.billing_account is not None and not _BILLING_ACCOUNT.fullmatch(p.billing_account):
        r.error(
            "invalid-value",
            "project.billing_account",
            f"{p.billing_account!r} is not a billing account id (XXXXXX-XXXXXX-XXXXXX, hex digits)",
        )
    _bootstrap(r, spec)
    for i, api in enumerate(spec.apis):
        if not _API.fullmatch(api):
            r.error(
                "invalid-value",
                f"apis[{i}]",
                f"{api!r} is not a service name like aiplatform.googleapis.com",
            )


def _bootstrap(r: Reporter, spec: Spec) -> None:
    """The creation settings only apply to a created project, and parents are numeric ids."""
    p = spec.project
    if not p.create:
        for field in ("billing_account", "folder_id", "org_id"):
            if getattr(p, field):
                r.error(
                    "invalid-value",
                    f"project.{field}",
                    f"{field} only applies with create: true; an adopted project keeps its own (remove it, or set create: true)",
                )
    for field, prefix in _PARENTS:
        value = getattr(p, field)
        if value and not _NUMERIC_ID.match(value.removeprefix(prefix)):
            r.error(
                "invalid-value",
                f"project.{field}",
                f"{value!r} is not a numeric {field.removesuffix('_id')} id (e.g. 123456789012)",
            )
