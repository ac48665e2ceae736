"""Vertex list filters and pages over the stored resources of one parent."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from infra.local.api.errors import ApiError
from infra.local.state import Store

#: Resources per page when the client does not say.
DEFAULT_PAGE_SIZE = 100
#: Largest page a client can ask for (larger sizes are served as this, as Vertex caps them).
MAX_PAGE_SIZE = 1000


def compile_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """Vertex list filters: ``labels.k="v"``, ``labels.k:*``, ``state=...``, ``display_name=...``
    joined by AND. Anything else is a 400, not a silently ignored filter.

    Raises:
        ApiError: 400 on a clause outside that subset.
    """
    clauses = [c.strip() for c in re.split(r"\s+AND\s+", text.strip()) if c.strip()]
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for clause in clauses:
        m = re.fullmatch(r'labels\.([\w-]+)\s*(=|:)\s*"?([^"]*)"?', clause)
        if m:
            key, op, value = m.groups()
            tests.append(_label_test(key, None if op == ":" and value == "*" else value))
            continue
        m = re.fullmatch(r'(state|display_name|displayName)\s*=\s*"?([^"]*)"?', clause)
        if m:
            attr = {"state": "state", "display_name": "displayName", "displayName": "displayName"}[
                m[1]
            ]
            tests.append(_field_test(attr, m[2]))
            continue
        raise ApiError(
            400,
            f'Unsupported filter {clause!r}: the local API filters on labels.KEY="VALUE", labels.KEY:*, state and display_name',
        )
    return lambda r: all(t(r) for t in tests)


def page(
    store: Store,
    collection: str,
    parent: str,
    query: dict[str, str],
    honour_filter: bool = True,
) -> tuple[list[dict[str, Any]], str]:
    """One page of a collection under ``parent``, newest first, and the next page token.

    Args:
        store: The state store.
        collection: The collection to list.
        parent: ``projects/P/locations/L``.
        query: The request's ``filter``, ``pageSize`` and ``pageToken``.
        honour_filter: False only under fault injection (a server that ignores filters);
            the filter is still checked.
    """
    match = compile_filter(query.get("filter", ""))
    items = [
        e["resource"]
        for _, e in store.items(collection)
        if e["resource"]["name"].startswith(parent + "/")
        and (not honour_filter or match(e["resource"]))
    ]
    items.reverse()  # newest first, as Vertex lists
    token = query.get("pageToken", "")
    if token and not (token.isdigit() and 0 < int(token) <= len(items)):
        raise ApiError(400, f"Invalid page token {token[:64]!r}", field="pageToken")
    start = int(token) if token else 0
    raw_size = query.get("pageSize", "")
    if raw_size and not raw_size.lstrip("-").isdigit():
        raise ApiError(
            400, f"pageSize must be an integer (got {raw_size[:64]!r})", field="pageSize"
        )
    if raw_size and int(raw_size) < 0:
        raise ApiError(400, f"pageSize must be >= 0 (got {raw_size})", field="pageSize")
    size = (
        min(int(raw_size), MAX_PAGE_SIZE) if raw_size and int(raw_size) > 0 else DEFAULT_PAGE_SIZE
    )
    chunk = items[start : start + size]
    return chunk, str(start + size) if start + size < len(items) else ""


def _label_test(key: str, value: str | None) -> Callable[[dict[str, Any]], bool]:
    """``labels.KEY="VALUE"`` (or ``labels.KEY:*`` when value is None)."""

    def test(resource: dict[str, Any]) -> bool:
        labels = resource.get("labels", {})
        return key in labels if value is None else labels.get(key) == value

    return test


def _field_test(attr: str, value: str) -> Callable[[dict[str, Any]], bool]:
    def test(resource: dict[str, Any]) -> bool:
        return bool(resource.get(attr) == value)

    return test
