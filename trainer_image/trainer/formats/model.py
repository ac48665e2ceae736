"""The normalised example every format parses into, and the format names."""

from __future__ import annotations

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


def kind(v: Any) -> str:
    """How an issue names the JSON type of ``v`` (``an array``, ``a string``, ...)."""
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(v), type(v).__name__)
