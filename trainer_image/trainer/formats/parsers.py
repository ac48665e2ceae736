"""The per-format parsers: each turns one decoded object into turns, collecting issues."""

from __future__ import annotations

import difflib
from typing import Any

from trainer.formats.images import b64, gs_image, image_from_url
from trainer.formats.model import CHAT, FAMILY, IMAGE_MIME_TYPES, Image, Issue, Role, Turn, kind

_ROLES: tuple[str, ...] = ("system", "user", "assistant")
_CONTENT_ROLES: tuple[str, ...] = ("user", "assistant")

TurnAt = tuple[Turn, str]  # a turn and the field path it came from


def _text(v: Any, path: str, issues: list[Issue]) -> str | None:
    if not isinstance(v, str):
        issues.append(Issue("invalid-value", path, f"expected a string, got {kind(v)}"))
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


def parse_prompt_completion(obj: dict[str, Any], issues: list[Issue]) -> list[TurnAt] | None:
    """The two turns of a prompt/completion example, or None when one is unusable."""
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


def parse_chat(obj: dict[str, Any], issues: list[Issue]) -> list[TurnAt] | None:
    """The turns of a (multimodal) chat example, or None when a message is unusable."""
    for k in sorted(set(obj) - {"messages"}):
        issues.append(Issue("unknown-field", k, f"unknown key {k!r} in a chat example"))
    msgs = obj["messages"]
    if not isinstance(msgs, list):
        issues.append(
            Issue("invalid-value", "messages", f"expected a list of messages, got {kind(msgs)}")
        )
        return None
    if not msgs:
        issues.append(Issue("missing-assistant-turn", "messages", "the conversation is empty"))
        return None
    turns: list[TurnAt] = []
    ok = True
    for i, m in enumerate(msgs):
        path = f"messages[{i}]"
        if not isinstance(m, dict):
            issues.append(Issue("invalid-value", path, f"expected a message object, got {kind(m)}"))
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
            got = p.get("type") if isinstance(p, dict) else kind(p)
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
        img = image_from_url(url, f"{pp}.image_url.url", issues)
        if img is not None:
            images.append(img)
    text = "\n".join(texts)
    # A content whose only parts were refused already has its issues; "empty" would mislead.
    if not texts and not images and len(issues) == issues_before:
        issues.append(Issue("empty-content", path, "content has no text and no image"))
    return text, tuple(images)


def is_image_part(p: dict[str, Any]) -> bool:
    """Whether a GenerateContent part holds an image (file or inline data)."""
    return any(k in p for k in ("file_data", "fileData", "inline_data", "inlineData"))


def _get(d: dict[str, Any], snake: str, camel: str) -> Any:
    return d.get(snake, d.get(camel))


def parse_generate_content(obj: dict[str, Any], issues: list[Issue]) -> list[TurnAt] | None:
    """The turns of a (multimodal) GenerateContent example, or None when one is unusable."""
    for k in sorted(set(obj) - {"contents", "systemInstruction", "system_instruction"}):
        issues.append(Issue("unknown-field", k, f"unknown key {k!r} in a GenerateContent example"))
    turns: list[TurnAt] = []
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
            Issue("invalid-value", "contents", f"expected a list of contents, got {kind(contents)}")
        )
        return None
    if not contents:
        issues.append(Issue("missing-assistant-turn", "contents", "the conversation is empty"))
        return None
    for i, c in enumerate(contents):
        path = f"contents[{i}]"
        if not isinstance(c, dict):
            issues.append(Issue("invalid-value", path, f"expected a content object, got {kind(c)}"))
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
                    f"expected a list of parts, got {kind(parts)}",
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
            issues.append(Issue("invalid-value", pp, f"expected a part object, got {kind(p)}"))
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
            img = gs_image(
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
                images.append(Image(mime.lower(), data=b64(data, mime.lower())))
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


def check_order(turns: list[TurnAt], fmt: str, issues: list[Issue]) -> None:
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
