"""Loading a spec: YAML with source positions -> :class:`Spec`, or diagnostics.

PyYAML's composer gives every node its line and column; we build plain Python data from the
node tree ourselves so that we can (a) remember where every key sits, (b) report duplicate
keys, which ``yaml.safe_load`` silently resolves to the last one, and (c) point each pydantic
error at the line of the offending key. Every problem is reported, not just the first.
"""

from __future__ import annotations

import copy
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from infra.diagnostics import Diagnostic, Positions, Reporter, did_you_mean, locate, shorten
from infra.spec import Spec

#: Largest spec file read (bytes); a spec is a few KiB. Beyond: ``spec-too-large``.
MAX_SPEC_BYTES = 1024 * 1024
#: Most YAML nodes in one spec, aliases counted at every use (an alias bomb expands
#: exponentially: it is refused while building, never expanded). Beyond: ``spec-too-large``.
MAX_YAML_NODES = 20_000
#: Deepest nesting of mappings and sequences. Beyond: ``nesting-too-deep``.
MAX_YAML_DEPTH = 32


class _TooLarge(Exception):
    """The document breaks a size limit (code, message, YAML mark)."""

    def __init__(self, code: str, message: str, mark: Any) -> None:
        super().__init__(message)
        self.code = code
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses nesting deeper than :data:`MAX_YAML_DEPTH`.

    PyYAML composes recursively (two frames per level), so a deep document would otherwise
    end in RecursionError; aliases are not expanded while composing (see ``_Builder``).
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            self._depth += 1
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise _TooLarge(
                        "nesting-too-deep",
                        f"the spec nests deeper than {MAX_YAML_DEPTH} levels",
                        self.peek_event().start_mark,
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


@dataclass
class Loaded:
    """The result of :func:`load_spec`.

    Attributes:
        path: The spec file, as given.
        spec: The validated spec; None when any error was found.
        diagnostics: Every problem found while reading and validating the file's shape.
        positions: Dotted field path (``tuning_jobs[0].epochs``) -> 1-based (line, column)
            of its key (of the item itself for list items); ``""`` is the document.
        partial: When unknown keys are the only shape errors, the spec without them, so the
            semantic and dataset checks can still run and every mistake is reported in one go.
            Never deployable: ``spec`` stays None.
    """

    path: Path
    spec: Spec | None
    diagnostics: list[Diagnostic]
    positions: Positions = field(default_factory=dict)
    partial: Spec | None = None

    def position(self, path: str) -> tuple[int, int]:
        """Where ``path`` is, or where its closest written ancestor is (defaults are unwritten)."""
        return locate(self.positions, path)


def load_spec(path: str | Path) -> Loaded:
    """Reads a spec file and validates its shape against :class:`Spec`.

    Semantic rules (references, catalog lookups, naming rules) are not checked here; see
    :mod:`infra.checks`.

    Args:
        path: The YAML spec file.

    Returns:
        A :class:`Loaded`; ``spec`` is None when there is any error.
    """
    p = Path(path)
    display = str(path)
    report = Reporter(display)
    try:
        text = _read_spec(p, display).decode("utf-8")
    except _TooLarge as e:
        report.error(e.code, "", str(e), line=0)
    except FileNotFoundError:
        report.error("file-not-found", "", f"spec file {display} does not exist", line=0)
    except IsADirectoryError:
        report.error("file-unreadable", "", f"{display} is a directory, not a spec file", line=0)
    except OSError as e:
        report.error("file-unreadable", "", f"cannot read {display}: {e.strerror or e}", line=0)
    except UnicodeDecodeError as e:
        line, col = _byte_position(e.object, e.start)
        report.error(
            "invalid-encoding", "", f"the spec is not UTF-8 ({e.reason})", line=line, column=col
        )
    else:
        return load_text(text, display, p)
    return Loaded(p, None, report.diagnostics)


def load_text(text: str, display: str, path: Path | None = None) -> Loaded:
    """Like :func:`load_spec` for YAML text already in memory (``display`` names it in messages)."""
    p = path or Path(display)
    report = Reporter(display)
    if len(text) > MAX_SPEC_BYTES:
        message = f"the spec is over the limit of {MAX_SPEC_BYTES} bytes"
        report.error("spec-too-large", "", message, line=0)
        return Loaded(p, None, report.diagnostics)
    try:
        docs = list(yaml.compose_all(text, Loader=_BoundedLoader))
    except _TooLarge as e:
        line, col = (e.mark.line + 1, e.mark.column + 1) if e.mark else (0, 0)
        report.error(e.code, "", str(e), line=line, column=col)
        return Loaded(p, None, report.diagnostics)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = " ".join(str(x) for x in (e.context, e.problem) if x) or str(e)
        report.error("invalid-yaml", "", f"not valid YAML: {msg}", line=line, column=col)
        return Loaded(p, None, report.diagnostics)
    except yaml.YAMLError as e:
        report.error("invalid-yaml", "", f"not valid YAML: {e}", line=1, column=1)
        return Loaded(p, None, report.diagnostics)
    docs = [d for d in docs if d is not None]
    if len(docs) > 1:
        m = docs[1].start_mark
        report.error(
            "invalid-yaml",
            "",
            "a spec is one YAML document; remove the second '---' document",
            line=m.line + 1,
            column=m.column + 1,
        )
        return Loaded(p, None, report.diagnostics)
    builder = _Builder(report)
    try:
        data: Any = builder.build(docs[0], "") if docs else {}
    except _TooLarge as e:
        line, col = (e.mark.line + 1, e.mark.column + 1) if e.mark else (0, 0)
        report.error(e.code, "", str(e), line=line, column=col)
        return Loaded(p, None, report.diagnostics)
    positions = builder.positions
    positions.setdefault("", (1, 1))
    report.positions = positions
    if data is None:
        data = {}
    if not isinstance(data, dict):
        report.error(
            "invalid-value", "", "a spec must be a mapping with a 'project' key", line=1, column=1
        )
        return Loaded(p, None, report.diagnostics, positions)
    spec: Spec | None = None
    partial: Spec | None = None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        _pydantic_diagnostics(e, data, report)
        partial = _without_unknown_keys(data, e)
    if report.diagnostics:
        partial = partial or spec
        spec = None
    return Loaded(p, spec, report.diagnostics, positions, partial)


def dotted(loc: tuple[Any, ...]) -> str:
    """``("tuning_jobs", 0, "epochs")`` -> ``tuning_jobs[0].epochs``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --- helpers -------------------------------------------------------------------------------


def _read_spec(p: Path, display: str) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_SPEC_BYTES`.

    A FIFO or device is refused before it is opened (opening a FIFO blocks until a writer
    comes; /dev/zero never ends).
    """
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(display)
    if not stat.S_ISREG(mode):
        raise _TooLarge("file-unreadable", f"{display} is not a regular file", None)
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise _TooLarge(
            "spec-too-large", f"the spec is over the limit of {MAX_SPEC_BYTES} bytes", None
        )
    return data


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col


class _Builder:
    """Turns a composed node tree into Python data, recording positions and duplicate keys."""

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.positions: Positions = {}
        self._constructor = yaml.constructor.SafeConstructor()
        self._nodes = 0
        self._depth = 0

    def build(self, node: yaml.Node, path: str) -> Any:
        # Aliases are shared nodes: each use is built (and counted) again, so the count
        # bounds the expansion of an alias bomb as well as a document that is just long.
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise _TooLarge(
                "spec-too-large",
                f"the spec has over {MAX_YAML_NODES} values (counting each use of an alias)",
                node.start_mark,
            )
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:  # reachable through aliases only
                raise _TooLarge(
                    "nesting-too-deep",
                    f"the spec nests deeper than {MAX_YAML_DEPTH} levels",
                    node.start_mark,
                )
            return self._build_collection(node, path)
        finally:
            self._depth -= 1

    def _build_collection(self, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            seen: dict[Any, tuple[int, int]] = {}
            for key_node, value_node in node.value:
                key = (
                    self._scalar(key_node)
                    if isinstance(key_node, yaml.ScalarNode)
                    else shorten(str(key_node.value))
                )
                pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                child = f"{path}.{key}" if path else str(key)
                if key in seen:
                    first = seen[key][0]
                    self.report.error(
                        "duplicate-key",
                        child,
                        f"key {key!r} appears twice in this mapping (first on line {first}); remove one",
                        line=pos[0],
                        column=pos[1],
                    )
                    continue
                seen[key] = pos
                self.positions[child] = pos
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                self.positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(self.build(item, child))
            return items
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            # An unconstructible scalar (e.g. a bad timestamp) stays text; pydantic judges it.
            return node.value


def _pydantic_diagnostics(e: ValidationError, data: Any, report: Reporter) -> None:
    """Reports each pydantic error at its key's line (a missing key at its parent's)."""
    for err in e.errors(include_url=False):
        loc = tuple(err["loc"])
        fld = dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = shorten(str(loc[-1]))
            allowed = _fields_at(loc[:-1])
            hint = did_you_mean(key, allowed) or (
                f" (known keys: {', '.join(allowed)})" if allowed else ""
            )
            report.error("unknown-field", fld, f"unknown key '{key}'{hint}")
        elif kind == "missing":
            line, col = locate(report.positions or {}, dotted(loc[:-1]))
            report.error(
                "missing-field", fld, f"required key '{loc[-1]}' is missing", line=line, column=col
            )
        else:
            msg = err["msg"]
            got = _value_at(data, loc)
            if kind == "literal_error" and isinstance(got, str):
                expected = [str(x) for x in typing.get_args(_annotation_at(loc))]
                msg = f"{shorten(got)!r} is not one of {', '.join(expected)}" + did_you_mean(
                    shorten(got), expected
                )
            elif got is not _MISSING and not isinstance(got, dict | list):
                msg = f"{msg} (got {shorten(repr(got))})"
            report.error("invalid-value", fld, msg)


_MISSING = object()


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _unwrap(tp: Any) -> Any:
    """The model or item type under Optional[...], list[...], Annotated[...]."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _annotation_at(loc: tuple[Any, ...]) -> Any:
    tp: Any = Spec
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return Any
    return _unwrap(tp)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    tp = _annotation_at(loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _without_unknown_keys(data: dict[str, Any], error: ValidationError) -> Spec | None:
    """The spec with its unknown keys dropped, when those are its only shape errors."""
    errors = error.errors()
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    pruned = copy.deepcopy(data)
    for e in errors:
        node: Any = pruned
        *parents, key = e["loc"]
        for part in parents:
            node = node[part]
        node.pop(key, None)
    try:
        return Spec.model_validate(pruned)
    except ValidationError:
        return None
