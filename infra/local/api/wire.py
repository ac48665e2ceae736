"""Request bodies parsed into the real proto types and resources rendered through them.

Bodies parse into ``aiplatform_v1beta1`` types (unknown fields are errors, enums by name or
number, int64 as strings), so shape errors surface here the way Vertex reports them;
responses are those protos as JSON (enums as numbers when the client asks with
``$alt=json;enum-encoding=int``, as Google's SDK does).
"""

from __future__ import annotations

import json
from typing import Any

from google.cloud.aiplatform_v1 import types as v1  # registers the v1 Any types we answer with
from google.cloud.aiplatform_v1beta1 import types as v1beta1
from google.longrunning import operations_pb2
from google.protobuf import json_format

from infra.local.api.errors import ApiError
from infra.local.api.middleware import loads_strict

TYPE_PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1beta1."
_V1_TYPES = v1  # imported for its side effect: v1 payload types in the descriptor pool
#: The ``@type`` of an empty operation response.
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"

#: The type name of a list of operations (google.longrunning, not aiplatform).
LIST_OPERATIONS = "google.longrunning.ListOperationsResponse"

#: A handler's answer: the v1beta1 type name and its JSON ("" for an Operation).
Rendered = tuple[str, dict[str, Any]]


def json_body(body: bytes) -> Any:
    """The JSON of a request body (``{}`` when empty).

    Raises:
        ApiError: 400 when it is not JSON, holds NaN/Infinity or nests too deep.
    """
    return loads_strict(body or b"{}")


def parse(message_type: Any, body: bytes) -> dict[str, Any]:
    """Parses a body into the real proto type (Vertex's shape checks), back to camelCase JSON.

    Raises:
        ApiError: 400 on invalid JSON or a shape the proto refuses.
    """
    json_body(body)
    try:
        msg = message_type.from_json(body.decode() or "{}", ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise ApiError(400, f"Invalid JSON payload received. {e}") from None
    pb = message_type.pb(msg)
    _known_enums(pb, "")
    return json_format.MessageToDict(pb, use_integers_for_enums=False)


def _known_enums(pb: Any, path: str) -> None:
    """Refuses enum numbers the proto does not define (``tuningMode: 99``), which the proto
    parser keeps and every client later fails to read.

    Raises:
        ApiError: 400 naming the field.
    """
    for field, value in pb.ListFields():
        name = f"{path}{field.json_name}"
        values = value if field.label == field.LABEL_REPEATED else [value]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue
            for v in values:
                _known_enums(v, name + ".")
        elif field.enum_type is not None:
            for v in values:
                if field.enum_type.values_by_number.get(v) is None:
                    known = ", ".join(e.name for e in field.enum_type.values)
                    raise ApiError(
                        400,
                        f"Invalid value at '{name}' ({field.enum_type.name}): {v}; known: {known}",
                        field=name,
                    )


def render(result: Rendered, ints: bool, version: str) -> dict[str, Any]:
    """A stored resource through its proto type, so responses are exactly the proto's JSON.

    Args:
        result: The handler's ``(type name, JSON)``.
        ints: Enums as numbers (``$alt=json;enum-encoding=int``).
        version: ``v1``, ``v1beta1`` or ``ui``: a v1 client gets v1 payload types.
    """
    type_name, data = result
    if not type_name:
        return _render_operation(data, ints, version)
    if type_name == "google.protobuf.Empty":
        return {}
    if type_name == LIST_OPERATIONS:
        ops = [_render_operation(op, ints, version) for op in data.get("operations", [])]
        token = data.get("nextPageToken")
        return {"operations": ops, **({"nextPageToken": token} if token else {})}
    message_type = getattr(v1beta1, type_name)
    pb = json_format.ParseDict(data, message_type.pb()(), ignore_unknown_fields=False)
    return json_format.MessageToDict(pb, use_integers_for_enums=ints)


def _render_operation(op: dict[str, Any], ints: bool, version: str) -> dict[str, Any]:
    # A v1 client unpacks operation payloads as v1 types, a v1beta1 (and /ui/) client as v1beta1.
    if version == "v1":
        op = json.loads(
            json.dumps(op).replace(
                '"' + TYPE_PREFIX, '"type.googleapis.com/google.cloud.aiplatform.v1.'
            )
        )
    pb = json_format.ParseDict(op, operations_pb2.Operation(), ignore_unknown_fields=False)
    return json_format.MessageToDict(pb, use_integers_for_enums=ints)
