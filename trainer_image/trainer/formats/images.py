"""Image parts: data URLs, gs:// URIs and the image types Vertex accepts."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from trainer.formats.model import IMAGE_MIME_TYPES, Image, Issue, kind


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
    return mime, b64(payload, mime)


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


def image_from_url(url: Any, path: str, issues: list[Issue]) -> Image | None:
    if not isinstance(url, str):
        issues.append(
            Issue("invalid-image-uri", path, f"expected an image URL string, got {kind(url)}")
        )
        return None
    if url.startswith("data:"):
        try:
            mime, data = decode_data_url(url)
        except ValueError as e:
            issues.append(Issue(e.args[0], path, e.args[1]))
            return None
        return Image(mime, data=data)
    return gs_image(url, None, path, issues)


def gs_image(uri: str, declared: str | None, path: str, issues: list[Issue]) -> Image | None:
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


def b64(payload: str, mime: str) -> bytes:
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
