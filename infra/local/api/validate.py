"""What Vertex checks when a resource is created, checked at create here too.

Shape errors (unknown fields, wrong types) are the proto's (:func:`infra.local.api.wire.parse`);
this module holds the rules above the shape: tuning regions, hyperparameter ranges, label and
display-name rules, and objects that must exist. Each failure names its field, in Vertex's
error JSON (``google.rpc.BadRequest`` field violations), with the status Vertex answers:
``INVALID_ARGUMENT`` for a value that can never be right, ``FAILED_PRECONDITION`` for a
bucket or object that does not exist (yet).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from google.api_core import exceptions as gexc

from infra import catalog, gcs
from infra.local.api.errors import ApiError

#: Longest display name (Vertex: 128 UTF-8 characters).
MAX_DISPLAY_NAME = 128
#: Most labels on one resource, and the longest key or value (Vertex's label rules).
MAX_LABELS = 64
MAX_LABEL_CHARS = 63
#: Largest epochCount Vertex takes for open-model tuning jobs.
MAX_EPOCHS = 1000
#: Largest learningRateMultiplier.
MAX_LR_MULTIPLIER = 1000.0


def invalid(field: str, message: str, status: str = "INVALID_ARGUMENT") -> ApiError:
    """A 400 naming ``field``."""
    return ApiError(400, f"{field}: {message}", status, field=field)


def tuning_location(location: str) -> None:
    """Tuning jobs run only in the tuning regions of the catalog.

    Raises:
        ApiError: 400 INVALID_ARGUMENT otherwise.
    """
    if location not in catalog.TUNING_REGIONS:
        raise invalid(
            "parent",
            f"open-model tuning is not available in {location}; use one of "
            + ", ".join(catalog.TUNING_REGIONS),
        )


def display_name(value: Any, field: str, required: bool = False) -> None:
    """Display names: at most 128 characters, non-empty when required.

    Raises:
        ApiError: 400 INVALID_ARGUMENT.
    """
    if value is None or value == "":
        if required:
            raise invalid(field, "is required")
        return
    if len(str(value)) > MAX_DISPLAY_NAME:
        raise invalid(field, f"must be at most {MAX_DISPLAY_NAME} characters (got {len(value)})")


def labels(value: Any) -> None:
    """Vertex's label rules: at most 64; keys start with a lowercase letter; keys and values
    have at most 63 lowercase letters, digits, ``_`` or ``-``.

    Raises:
        ApiError: 400 INVALID_ARGUMENT naming the label.
    """
    if not value:
        return
    if len(value) > MAX_LABELS:
        raise invalid("labels", f"at most {MAX_LABELS} labels (got {len(value)})")
    for key, val in value.items():
        if not key or not _label_start(key[0]) or not _label_chars(key):
            raise invalid(
                f"labels.{key}",
                "label keys must start with a lowercase letter and hold only lowercase letters, "
                f"digits, '_' and '-' (at most {MAX_LABEL_CHARS} characters)",
            )
        if not _label_chars(val, allow_empty=True):
            raise invalid(
                f"labels.{key}",
                "label values hold only lowercase letters, digits, '_' and '-' "
                f"(at most {MAX_LABEL_CHARS} characters)",
            )


def hyper_parameters(hyper: dict[str, Any], mode: str) -> None:
    """Ranges of ``supervisedTuningSpec.hyperParameters`` for open models.

    Raises:
        ApiError: 400 INVALID_ARGUMENT naming the field.
    """
    f = "supervisedTuningSpec.hyperParameters."
    if "epochCount" in hyper and not 1 <= int(hyper["epochCount"]) <= MAX_EPOCHS:
        raise invalid(
            f + "epochCount", f"must be between 1 and {MAX_EPOCHS} (got {hyper['epochCount']})"
        )
    lrm = hyper.get("learningRateMultiplier")
    if lrm is not None and not 0 < float(lrm) <= MAX_LR_MULTIPLIER:
        raise invalid(
            f + "learningRateMultiplier", f"must be > 0 and <= {MAX_LR_MULTIPLIER:g} (got {lrm})"
        )
    lr = hyper.get("learningRate")
    if lr is not None and not 0 < float(lr) < 1:
        raise invalid(f + "learningRate", f"must be > 0 and < 1 (got {lr})")
    if lr is not None and lrm is not None:
        raise invalid(
            f + "learningRate", "learningRate and learningRateMultiplier are mutually exclusive"
        )
    if "batchSize" in hyper and int(hyper["batchSize"]) < 1:
        raise invalid(f + "batchSize", f"must be >= 1 (got {hyper['batchSize']})")
    size = hyper.get("adapterSize")
    if size not in (None, "ADAPTER_SIZE_UNSPECIFIED"):
        if mode == catalog.FULL:
            raise invalid(f + "adapterSize", "adapterSize applies to PEFT_ADAPTER tuning only")
        allowed = {n for n, e in catalog.ADAPTER_SIZE_ENUM.items() if n in catalog.ADAPTER_SIZES}
        names = {_ADAPTER_NAMES[catalog.ADAPTER_SIZE_ENUM[n]] for n in allowed}
        if size not in names:
            raise invalid(
                f + "adapterSize",
                f"{size} is not available for open models; use one of {', '.join(sorted(names))}",
            )


def gcs_object(client: Any, uri: str, field: str) -> None:
    """``uri`` names an existing object.

    Raises:
        ApiError: 400 INVALID_ARGUMENT for a malformed URI, 400 FAILED_PRECONDITION when the
            bucket or object does not exist.
    """
    parsed = gcs.parse(uri)
    if parsed is None or not parsed.object:
        raise invalid(field, f"must be a gs://BUCKET/OBJECT URI (got {uri!r})")
    bucket(client, uri, field)
    if not _exists(lambda: client.bucket(parsed.bucket).blob(parsed.object).exists()):
        raise invalid(field, f"{uri} does not exist", "FAILED_PRECONDITION")


def gcs_prefix(client: Any, uri: str, field: str) -> None:
    """``uri`` is a prefix with at least one object under it (a checkpoint directory).

    Raises:
        ApiError: 400 FAILED_PRECONDITION when nothing is there.
    """
    parsed = gcs.parse(uri)
    if parsed is None:
        raise invalid(field, f"must be a gs:// URI (got {uri!r})")
    bucket(client, uri, field)
    prefix = parsed.object.rstrip("/") + "/" if parsed.object else ""
    blobs = client.list_blobs(parsed.bucket, prefix=prefix, max_results=1)
    if not _exists(lambda: any(True for _ in blobs)):
        raise invalid(field, f"no objects under {uri}", "FAILED_PRECONDITION")


def bucket(client: Any, uri: str, field: str) -> None:
    """The bucket of ``uri`` exists.

    Raises:
        ApiError: 400 INVALID_ARGUMENT for a malformed URI, 400 FAILED_PRECONDITION when the
            bucket does not exist.
    """
    parsed = gcs.parse(uri)
    if parsed is None:
        raise invalid(field, f"must be a gs:// URI (got {uri!r})")
    if not _exists(lambda: client.bucket(parsed.bucket).exists()):
        raise invalid(field, f"bucket gs://{parsed.bucket} does not exist", "FAILED_PRECONDITION")


_ADAPTER_NAMES = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_FOUR",
    3: "ADAPTER_SIZE_EIGHT",
    4: "ADAPTER_SIZE_SIXTEEN",
    5: "ADAPTER_SIZE_THIRTY_TWO",
    6: "ADAPTER_SIZE_TWO",
}


def _exists(probe: Any) -> bool:
    try:
        return bool(probe())
    except (gexc.NotFound, gexc.Forbidden):
        return False


def _label_start(c: str) -> bool:
    return c.islower() or (c.isalpha() and not c.isupper())


def _label_chars(text: str, allow_empty: bool = False) -> bool:
    if not text:
        return allow_empty
    if len(text) > MAX_LABEL_CHARS:
        return False
    return all(
        c in "_-" or c.isdigit() or _label_start(c) or unicodedata.category(c) == "Mn" for c in text
    )
