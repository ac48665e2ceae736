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

This module is pure (no I/O) and shared: the trainer uses it to build training examples and
``infra`` uses it to validate datasets, so both agree on what an example means.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]

PROMPT_COMPLETION = "prompt_completion"
CHAT = "chat"
MULTIMODAL_CHAT = "multimodal_chat"
GENERATE_CONTENT = "generate_content"
MULTIMODAL_GENERATE_CONTENT = "multimodal_generate_content"
FORMATS = (PROMPT_COMPLETION, CHAT, MULTIMODAL_CHAT, GENERATE_CONTENT, MULTIMODAL_GENERATE_CONTENT)

#: Formats that are the same family: one file may hold text and multimodal variants of a family.
FAMILY = {
    PROMPT_COMPLETION: PROMPT_COMPLETION,
    CHAT: CHAT,
    MULTIMODAL_CHAT: CHAT,
    GENERATE_CONTENT: GENERATE_CONTENT,
    MULTIMODAL_GENERATE_CONTENT: GENERATE_CONTENT,
}

IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/webp")
_ROLES: tuple[str, ...] = ("system", "user", "assistant")
_CONTENT_ROLES: tuple[str, ...] = ("user", "assistant")


@dataclass(frozen=True)
class Image:
    """An image part: a gs:// URI, or inline bytes decoded from base64."""

    mime_type: str
    uri: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class Turn:
    """One turn. ``text`` joins the turn's text parts with newlines; images keep their order."""

    role: Role
    text: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class Example:
    """A normalised example: optional system turn first, then user/assistant turns."""

    format: str
    turns: tuple[Turn, ...]

    @property
    def family(self) -> str:
        return FAMILY[self.format]

    @property
    def has_images(self) -> bool:
        return any(t.images for t in self.turns)

    @property
    def text_chars(self) -> int:
        return sum(len(t.text) for t in self.turns)


@dataclass(frozen=True)
class Issue:
    """A problem with one example. ``field`` is a dotted path inside the example."""

    code: str
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass
class ParseResult:
    """What :func:`parse_example` found: the example (None when unusable) and its issues."""

    example: Example | None
    issues: list[Issue] = field(default_factory=list)


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
            _is_image_part(p)
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
        turns = _parse_prompt_completion(obj, issues)
    elif FAMILY[fmt] == CHAT:
        turns = _parse_chat(obj, issues)
    else:
        turns = _parse_generate_content(obj, issues)
    if turns is not None:
        _check_order(turns, fmt, issues)
    if any(i.severity == "error" for i in issues) or turns is None:
        return ParseResult(None, issues)
    return ParseResult(Example(fmt, tuple(t for t, _ in turns)), issues)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """Decodes ``data:image/<type>;base64,<data>`` into (mime type, bytes).

    Raises:
        ValueError: with an issue code as its first argument when the URL is malformed.
    """
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError(
            "invalid-image-uri", "a data URL must look like data:image/jpeg;base64,<data>"
        )
    mime = head[5:-7].lower()
    if mime not in IMAGE_MIME_TYPES:
        raise ValueError(
            "unsupported-image-type",
            f"image type {mime or '(none)'!r} is not one of {', '.join(IMAGE_MIME_TYPES)}",
        )
    return mime, _b64(payload, mime)


def sniff_image(data: bytes) -> str | None:
    """The image MIME type that the magic bytes say, or None when they match none we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def mime_from_uri(uri: str) -> str | None:
    """Guesses an image type from a URI's extension (gs:// images carry no declared type)."""
    ext = uri.rsplit(".", 1)[-1].lower() if "." in uri.rsplit("/", 1)[-1] else ""
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
    }.get(ext)


# --- helpers -------------------------------------------------------------------------------

_TurnAt = tuple[Turn, str]  # a turn and the field path it came from


def _kind(v: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(v), type(v).__name__)


def _text(v: Any, path: str, issues: list[Issue]) -> str | None:
    if not isinstance(v, str):
        issues.append(Issue("invalid-value", path, f"expected a string, got {_kind(v)}"))
        return None
    if not v.strip():
        issues.append(Issue("empty-content", path, "content is empty or whitespace only"))
    return v


def _role(v: Any, path: str, allowed: tuple[str, ...], issues: list[Issue]) -> Role | None:
    if isinstance(v, str) and v in allowed:
        return v  # type: ignore[return-value]
    hint = ""
    if isinstance(v, str):
        alias = {
            "human": "user",
            "gpt": "assistant",
            "model": "assistant",
            "bot": "assistant",
            "ai": "assistant",
        }.get(v.lower())
        close = alias or next(iter(difflib.get_close_matches(v, allowed, n=1)), None)
        hint = f"; did you mean '{close}'?" if close else ""
    issues.append(
        Issue("invalid-role", path, f"role {v!r} is not one of {', '.join(allowed)}{hint}")
    )
    return None


def _parse_prompt_completion(obj: dict[str, Any], issues: list[Issue]) -> list[_TurnAt] | None:
    extra = sorted(set(obj) - {"prompt", "completion"})
    for k in extra:
        issues.append(
            Issue("unknown-field", k, f"unknown key {k!r} in a prompt/completion example")
        )
    prompt = _text(obj["prompt"], "prompt", issues)
    completion = _text(obj["completion"], "completion", issues)
    if prompt is None or completion is None:
        return None
    return [(Turn("user", prompt), "prompt"), (Turn("assistant", completion), "completion")]


def _parse_chat(obj: dict[str, Any], issues: list[Issue]) -> list[_TurnAt] | None:
    for k in sorted(set(obj) - {"messages"}):
        issues.append(Issue("unknown-field", k, f"unknown key {k!r} in a chat example"))
    msgs = obj["messages"]
    if not isinstance(msgs, list):
        issues.append(
            Issue("invalid-value", "messages", f"expected a list of messages, got {_kind(msgs)}")
        )
        return None
    if not msgs:
        issues.append(Issue("missing-assistant-turn", "messages", "the conversation is empty"))
        return None
    turns: list[_TurnAt] = []
    ok = True
    for i, m in enumerate(msgs):
        path = f"messages[{i}]"
        if not isinstance(m, dict):
            issues.append(
                Issue("invalid-value", path, f"expected a message object, got {_kind(m)}")
            )
            ok = False
            continue
        for k in sorted(set(m) - {"role", "content"}):
            issues.append(Issue("unknown-field", f"{path}.{k}", f"unknown key {k!r} in a message"))
        if "role" not in m or "content" not in m:
            missing = "role" if "role" not in m else "content"
            issues.append(
                Issue("missing-field", f"{path}.{missing}", f"a message needs '{missing}'")
            )
            ok = False
            continue
        role = _role(m["role"], f"{path}.role", _ROLES, issues)
        content = m["content"]
        if isinstance(content, list):
            text, images = _chat_parts(content, f"{path}.content", issues)
        else:
            text, images = _text(content, f"{path}.content", issues), ()
        if role is None or text is None:
            ok = False
            continue
        turns.append((Turn(role, text, images), path))
    return turns if ok else None


def _chat_parts(
    parts: list[Any], path: str, issues: list[Issue]
) -> tuple[str | None, tuple[Image, ...]]:
    if not parts:
        issues.append(Issue("empty-content", path, "content list is empty"))
        return "", ()
    texts: list[str] = []
    images: list[Image] = []
    issues_before = len(issues)
    for j, p in enumerate(parts):
        pp = f"{path}[{j}]"
        if not isinstance(p, dict) or p.get("type") not in ("text", "image_url"):
            got = p.get("type") if isinstance(p, dict) else _kind(p)
            issues.append(
                Issue(
                    "invalid-value",
                    pp,
                    f"a content part must be {{'type': 'text'}} or {{'type': 'image_url'}}, got {got!r}",
                )
            )
            continue
        if p["type"] == "text":
            t = _text(p.get("text"), f"{pp}.text", issues)
            if t is not None:
                texts.append(t)
            continue
        iu = p.get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else iu
        img = _image_from_url(url, f"{pp}.image_url.url", issues)
        if img is not None:
            images.append(img)
    text = "\n".join(texts)
    # A content whose only parts were refused already has its issues; "empty" would mislead.
    if not texts and not images and len(issues) == issues_before:
        issues.append(Issue("empty-content", path, "content has no text and no image"))
    return text, tuple(images)


def _image_from_url(url: Any, path: str, issues: list[Issue]) -> Image | None:
    if not isinstance(url, str):
        issues.append(
            Issue("invalid-image-uri", path, f"expected an image URL string, got {_kind(url)}")
        )
        return None
    if url.startswith("data:"):
        try:
            mime, data = decode_data_url(url)
        except ValueError as e:
            issues.append(Issue(e.args[0], path, e.args[1]))
            return None
        return Image(mime, data=data)
    return _gs_image(url, None, path, issues)


def _gs_image(uri: str, declared: str | None, path: str, issues: list[Issue]) -> Image | None:
    if uri.startswith(("http://", "https://")):
        issues.append(
            Issue(
                "invalid-image-uri",
                path,
                "http(s) image URLs are not fetched by Vertex; upload the image to Cloud Storage and use gs://",
            )
        )
        return None
    if not uri.startswith("gs://") or len(uri) <= 5 or "/" not in uri[5:] or uri.endswith("/"):
        issues.append(
            Issue(
                "invalid-image-uri",
                path,
                f"{uri[:80]!r} is not gs://bucket/object or a data:image/...;base64 URL",
            )
        )
        return None
    mime = (declared or mime_from_uri(uri) or "").lower()
    if mime not in IMAGE_MIME_TYPES:
        issues.append(
            Issue(
                "unsupported-image-type",
                path,
                f"image type {mime or '(unknown extension)'!r} is not one of {', '.join(IMAGE_MIME_TYPES)}",
            )
        )
        return None
    return Image(mime, uri=uri)


def _b64(payload: str, mime: str) -> bytes:
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid-base64", "image data is not valid base64") from None
    sniffed = sniff_image(data)
    if sniffed != mime:
        raise ValueError(
            "invalid-base64",
            f"decoded bytes are {sniffed or 'not an image'}, but the declared type is {mime}",
        )
    return data


def _is_image_part(p: dict[str, Any]) -> bool:
    return any(k in p for k in ("file_data", "fileData", "inline_data", "inlineData"))


def _get(d: dict[str, Any], snake: str, camel: str) -> Any:
    return d.get(snake, d.get(camel))


def _parse_generate_content(obj: dict[str, Any], issues: list[Issue]) -> list[_TurnAt] | None:
    for k in sorted(set(obj) - {"contents", "systemInstruction", "system_instruction"}):
        issues.append(Issue("unknown-field", k, f"unknown key {k!r} in a GenerateContent example"))
    turns: list[_TurnAt] = []
    ok = True
    si_key = "systemInstruction" if "systemInstruction" in obj else "system_instruction"
    si = obj.get(si_key)
    if si is not None:
        parts = si.get("parts") if isinstance(si, dict) else None
        if not isinstance(parts, list):
            issues.append(
                Issue("invalid-value", f"{si_key}.parts", "systemInstruction needs a 'parts' list")
            )
            ok = False
        else:
            text, images = _gc_parts(parts, f"{si_key}.parts", issues)
            if images:
                issues.append(
                    Issue(
                        "invalid-value",
                        f"{si_key}.parts",
                        "a system instruction cannot hold images",
                    )
                )
            if text is None:
                ok = False
            else:
                turns.append((Turn("system", text), si_key))
    contents = obj["contents"]
    if not isinstance(contents, list):
        issues.append(
            Issue(
                "invalid-value", "contents", f"expected a list of contents, got {_kind(contents)}"
            )
        )
        return None
    if not contents:
        issues.append(Issue("missing-assistant-turn", "contents", "the conversation is empty"))
        return None
    for i, c in enumerate(contents):
        path = f"contents[{i}]"
        if not isinstance(c, dict):
            issues.append(
                Issue("invalid-value", path, f"expected a content object, got {_kind(c)}")
            )
            ok = False
            continue
        for k in sorted(set(c) - {"role", "parts"}):
            issues.append(Issue("unknown-field", f"{path}.{k}", f"unknown key {k!r} in a content"))
        if "role" not in c or "parts" not in c:
            missing = "role" if "role" not in c else "parts"
            issues.append(
                Issue("missing-field", f"{path}.{missing}", f"a content needs '{missing}'")
            )
            ok = False
            continue
        role = _role(c["role"], f"{path}.role", _CONTENT_ROLES, issues)
        parts = c["parts"]
        if not isinstance(parts, list):
            issues.append(
                Issue(
                    "invalid-value",
                    f"{path}.parts",
                    f"expected a list of parts, got {_kind(parts)}",
                )
            )
            ok = False
            continue
        text, images = _gc_parts(parts, f"{path}.parts", issues)
        if role is None or text is None:
            ok = False
            continue
        turns.append((Turn(role, text, images), path))
    return turns if ok else None


def _gc_parts(
    parts: list[Any], path: str, issues: list[Issue]
) -> tuple[str | None, tuple[Image, ...]]:
    if not parts:
        issues.append(Issue("empty-content", path, "parts list is empty"))
        return "", ()
    texts: list[str] = []
    images: list[Image] = []
    issues_before = len(issues)
    for j, p in enumerate(parts):
        pp = f"{path}[{j}]"
        if not isinstance(p, dict):
            issues.append(Issue("invalid-value", pp, f"expected a part object, got {_kind(p)}"))
            continue
        if "text" in p:
            t = _text(p["text"], f"{pp}.text", issues)
            if t is not None:
                texts.append(t)
            continue
        fd_key = next((k for k in ("file_data", "fileData") if k in p), None)
        if fd_key:
            fd = p[fd_key]
            if not isinstance(fd, dict):
                issues.append(
                    Issue(
                        "invalid-value",
                        f"{pp}.{fd_key}",
                        "file_data must be an object with mime_type and file_uri",
                    )
                )
                continue
            uri = _get(fd, "file_uri", "fileUri")
            mime = _get(fd, "mime_type", "mimeType")
            if not isinstance(uri, str):
                issues.append(
                    Issue(
                        "invalid-image-uri",
                        f"{pp}.{fd_key}.file_uri",
                        "file_data needs a file_uri string",
                    )
                )
                continue
            img = _gs_image(
                uri, mime if isinstance(mime, str) else None, f"{pp}.{fd_key}.file_uri", issues
            )
            if img is not None:
                images.append(img)
            continue
        id_key = next((k for k in ("inline_data", "inlineData") if k in p), None)
        if id_key:
            idd = p[id_key]
            mime = _get(idd, "mime_type", "mimeType") if isinstance(idd, dict) else None
            data = idd.get("data") if isinstance(idd, dict) else None
            if not isinstance(mime, str) or mime.lower() not in IMAGE_MIME_TYPES:
                issues.append(
                    Issue(
                        "unsupported-image-type",
                        f"{pp}.{id_key}.mime_type",
                        f"image type {mime!r} is not one of {', '.join(IMAGE_MIME_TYPES)}",
                    )
                )
                continue
            if not isinstance(data, str):
                issues.append(
                    Issue(
                        "invalid-base64", f"{pp}.{id_key}.data", "inline_data needs base64 'data'"
                    )
                )
                continue
            try:
                images.append(Image(mime.lower(), data=_b64(data, mime.lower())))
            except ValueError as e:
                issues.append(Issue(e.args[0], f"{pp}.{id_key}.data", e.args[1]))
            continue
        issues.append(
            Issue(
                "invalid-value",
                pp,
                f"a part needs 'text', 'file_data' or 'inline_data' (keys: {', '.join(sorted(p)) or 'none'})",
            )
        )
    if not texts and not images and len(issues) == issues_before:
        issues.append(Issue("empty-content", path, "parts hold no text and no image"))
    return "\n".join(texts), tuple(images)


def _check_order(turns: list[_TurnAt], fmt: str, issues: list[Issue]) -> None:
    """System first (at most one), then user/assistant alternating, ending on assistant."""
    prev: str | None = None  # the last user/assistant role; a misplaced system turn is skipped
    for k, (t, path) in enumerate(turns):
        if t.role == "system":
            if k != 0:
                issues.append(
                    Issue("role-order", f"{path}.role", "a system message must come first")
                )
            continue
        if prev is None and t.role != "user":
            issues.append(
                Issue("role-order", f"{path}.role", "the conversation must start with a user turn")
            )
        elif t.role == prev:
            issues.append(
                Issue(
                    "role-order",
                    f"{path}.role",
                    f"two {t.role} turns in a row; merge them or add the missing turn between",
                )
            )
        prev = t.role
    if not any(t.role == "assistant" for t, _ in turns):
        where = "messages" if FAMILY[fmt] == CHAT else "contents"
        issues.append(
            Issue(
                "missing-assistant-turn", where, "no assistant turn: there is nothing to learn from"
            )
        )
    elif turns[-1][0].role != "assistant":
        issues.append(
            Issue("role-order", f"{turns[-1][1]}.role", "the last turn must be the assistant's")
        )
