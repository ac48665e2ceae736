"""Naming and reference rules the spec checks share: bucket names, labels, duplicate names,
bucket references and gs:// URIs.

Each helper records its findings on a :class:`~infra.diagnostics.Reporter` bound to the spec
file and its key positions, so every diagnostic points at the key's line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from infra import gcs
from infra.diagnostics import Reporter, did_you_mean, locate, shorten
from infra.spec import Spec

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Cloud Storage bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return f"must be 3-63 characters (is {len(name)})"
    if not _BUCKET_CHARS.fullmatch(name):
        return "may only hold lowercase letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold '..', '.-' or '-.'"
    try:
        ipaddress.ip_address(name)
        return "must not be an IP address"
    except ValueError:
        pass
    if name.startswith("goog"):
        return "must not start with 'goog'"
    if "google" in name or "g00gle" in name:
        return "must not contain 'google'"
    return None


def check_labels(r: Reporter, labels: dict[str, str], path: str) -> None:
    """GCP label rules for the keys and values of ``labels`` (at ``path``)."""
    for k, v in labels.items():
        if not _LABEL_KEY.fullmatch(k):
            r.error(
                "invalid-value",
                f"{path}.{k}",
                f"label key {k!r} must start with a lowercase letter and hold at most 63 lowercase letters, digits, '_' or '-'",
            )
        if not _LABEL_VALUE.fullmatch(v):
            r.error(
                "invalid-value",
                f"{path}.{k}",
                f"label value {v!r} may hold at most 63 lowercase letters, digits, '_' or '-'",
            )


def check_duplicates(r: Reporter, names: Iterable[str], list_path: str, what: str) -> None:
    """Each name used again in the list at ``list_path`` (pointing at the first use's line)."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            line = locate(r.positions or {}, f"{list_path}[{first[name]}].name")[0]
            r.error(
                "duplicate-name",
                f"{list_path}[{i}].name",
                f"{what} name {name!r} is already used (line {line})",
            )
        else:
            first[name] = i


def check_bucket_ref(r: Reporter, spec: Spec, name: str, field: str, what: str) -> None:
    """``name`` is one of the spec's buckets (their IAM grants are derived from the list)."""
    names = [b.name for b in spec.buckets]
    if name not in names:
        r.error(
            "unknown-reference",
            field,
            f"{what} bucket {name!r} is not declared in buckets: (add it, with create: false for an existing bucket, so its IAM grants can be derived){did_you_mean(name, names)}",
        )


def check_gs_uri(
    r: Reporter, spec: Spec, uri: str, field: str, what: str, *, need_object: bool
) -> None:
    """A gs:// URI: well formed, and its bucket declared."""
    gs = gcs.parse(uri)
    if gs is None:
        r.error("invalid-uri", field, f"{uri!r} is not a gs://bucket/path URI")
        return
    problem = bucket_name_problem(gs.bucket)
    if problem:
        r.error("invalid-uri", field, f"{uri!r}: bucket name {gs.bucket!r} {problem}")
        return
    if escape := gcs.escape_problem(uri):
        r.error("invalid-uri", field, f"{shorten(uri)!r} {escape}")
        return
    if need_object and (not gs.object or gs.object.endswith("/")):
        r.error(
            "invalid-uri",
            field,
            f"{uri!r} names no object; give the file, e.g. gs://{gs.bucket}/data/train.jsonl",
        )
        return
    if "//" in gs.object:
        r.error("invalid-uri", field, f"{uri!r} holds an empty path segment ('//')")
        return
    check_bucket_ref(r, spec, gs.bucket, field, what)
