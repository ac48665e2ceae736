"""The five Vertex AI open-model dataset formats, parsed into one normalised conversation.

Formats (one JSON object per JSONL line):

- ``prompt_completion``: ``{"prompt": str, "completion": str}``
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}]}``
- ``multimodal_chat``: chat whose ``content`` is a list of ``{"type": "text", "text"}`` and
  ``{"type": "image_url", "image_url": {"url": "gs://..."|"data:image/...;base64,...", "detail"}}``
- ``generate_content``: ``{"systemInstruction": {"parts": [{"text"}]}, "contents": [{"role":
  "user"|"assistant", "parts": [{"text"}]}]}``
- ``multimodal_generate_content``: GenerateContent with ``file_data``/``fileData``
  (``mime_type``, ``file_uri``) or ``inline_data``/``inlineData`` (``mime_type``, ``data``) parts.

This package is pure (no I/O) and shared: the trainer uses it to build training examples and
``infra`` uses it to validate datasets, so both agree on what an example means.

Modules: :mod:`~trainer.formats.model` (the normalised example and format names),
:mod:`~trainer.formats.parsers` (one parser per format family), :mod:`~trainer.formats.images`
(image parts). This module names the format of a line and parses it.
"""

from __future__ import annotations

from typing import Any

from trainer.formats.images import decode_data_url, mime_from_uri, sniff_image
from trainer.formats.model import (
    CHAT,
    FAMILY,
    FORMATS,
    GENERATE_CONTENT,
    IMAGE_MIME_TYPES,
    MULTIMODAL_CHAT,
    MULTIMODAL_GENERATE_CONTENT,
    PROMPT_COMPLETION,
    Example,
    Image,
    Issue,
    ParseResult,
    Role,
    Turn,
)
from trainer.formats.model import kind as _kind
from trainer.formats.parsers import (
    check_order,
    is_image_part,
    parse_chat,
    parse_generate_content,
    parse_prompt_completion,
)

__all__ = [
    "CHAT",
    "FAMILY",
    "FORMATS",
    "GENERATE_CONTENT",
    "IMAGE_MIME_TYPES",
    "MULTIMODAL_CHAT",
    "MULTIMODAL_GENERATE_CONTENT",
    "PROMPT_COMPLETION",
    "Example",
    "Image",
    "Issue",
    "ParseResult",
    "Role",
    "Turn",
    "decode_data_url",
    "detect_format",
    "mime_from_uri",
    "parse_example",
    "sniff_image",
]


def detect_format(obj: dict[str, Any]) -> str | None:
    """Names the format of a decoded JSON object by its keys, or None when it is in none."""
    if "messages" in obj:
        msgs = obj["messages"]
        if isinstance(msgs, list) and any(
            isinstance(m, dict) and isinstance(m.get("content"), list) for m in msgs
        ):
            return MULTIMODAL_CHAT
        return CHAT
    if "contents" in obj:
        contents = obj["contents"]
        if isinstance(contents, list) and any(
            is_image_part(p)
            for c in contents
            if isinstance(c, dict)
            for p in (c.get("parts") or [])
            if isinstance(p, dict)
        ):
            return MULTIMODAL_GENERATE_CONTENT
        return GENERATE_CONTENT
    if "prompt" in obj and "completion" in obj:
        return PROMPT_COMPLETION
    return None


def parse_example(obj: Any) -> ParseResult:
    """Parses one decoded JSONL value into an :class:`Example`, collecting every issue.

    Args:
        obj: The decoded JSON value of one line (the caller reports non-objects itself, but
            a non-dict is handled and reported as ``not-an-object``).

    Returns:
        A :class:`ParseResult`; ``example`` is None when an error makes the example unusable.
    """
    if not isinstance(obj, dict):
        return ParseResult(
            None, [Issue("not-an-object", "", f"expected a JSON object, got {_kind(obj)}")]
        )
    fmt = detect_format(obj)
    if fmt is None:
        keys = ", ".join(sorted(obj)) or "none"
        return ParseResult(
            None,
            [
                Issue(
                    "unknown-format",
                    "",
                    f"not a Vertex dataset format (keys: {keys}); expected 'messages', 'contents' or 'prompt'+'completion'",
                )
            ],
        )
    issues: list[Issue] = []
    if fmt == PROMPT_COMPLETION:
        turns = parse_prompt_completion(obj, issues)
    elif FAMILY[fmt] == CHAT:
        turns = parse_chat(obj, issues)
    else:
        turns = parse_generate_content(obj, issues)
    if turns is not None:
        check_order(turns, fmt, issues)
    if any(i.severity == "error" for i in issues) or turns is None:
        return ParseResult(None, issues)
    return ParseResult(Example(fmt, tuple(t for t, _ in turns)), issues)
