"""The five Vertex dataset formats, parsed into one normalised conversation."""

from __future__ import annotations

import base64

import pytest
from trainer.formats import (
    CHAT,
    FAMILY,
    FORMATS,
    GENERATE_CONTENT,
    MULTIMODAL_CHAT,
    MULTIMODAL_GENERATE_CONTENT,
    PROMPT_COMPLETION,
    decode_data_url,
    detect_format,
    parse_example,
    sniff_image,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def codes(obj: object) -> list[tuple[str, str]]:
    return [(i.code, i.field) for i in parse_example(obj).issues]


def test_every_format_parses_to_turns() -> None:
    cases = {
        PROMPT_COMPLETION: {"prompt": "Q", "completion": "A"},
        CHAT: {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "Q"},
                {"role": "assistant", "content": "A"},
            ]
        },
        MULTIMODAL_CHAT: {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "gs://b/x.jpg", "detail": "low"},
                        },
                        {"type": "text", "text": "Q"},
                    ],
                },
                {"role": "assistant", "content": "A"},
            ]
        },
        GENERATE_CONTENT: {
            "systemInstruction": {"parts": [{"text": "S"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Q"}]},
                {"role": "assistant", "parts": [{"text": "A"}]},
            ],
        },
        MULTIMODAL_GENERATE_CONTENT: {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"file_data": {"mime_type": "image/png", "file_uri": "gs://b/x.png"}},
                        {"inline_data": {"mime_type": "image/png", "data": PNG_URL.split(",")[1]}},
                        {"text": "Q"},
                    ],
                },
                {"role": "assistant", "parts": [{"text": "A"}]},
            ]
        },
    }
    assert set(cases) == set(FORMATS)
    for fmt, obj in cases.items():
        assert detect_format(obj) == fmt
        result = parse_example(obj)
        assert result.issues == [], (fmt, result.issues)
        ex = result.example
        assert ex is not None and ex.format == fmt and ex.family == FAMILY[fmt]
        assert ex.turns[-1].role == "assistant" and ex.turns[-1].text == "A"
        assert ex.has_images == (fmt in (MULTIMODAL_CHAT, MULTIMODAL_GENERATE_CONTENT))
    mm = parse_example(cases[MULTIMODAL_GENERATE_CONTENT]).example
    assert mm is not None
    assert [i.uri for i in mm.turns[0].images] == ["gs://b/x.png", None]
    assert mm.turns[0].images[1].data == PNG


def test_text_and_multimodal_share_a_family() -> None:
    assert (
        FAMILY[CHAT] == FAMILY[MULTIMODAL_CHAT]
        and FAMILY[GENERATE_CONTENT] == FAMILY[MULTIMODAL_GENERATE_CONTENT]
    )
    assert len(set(FAMILY.values())) == 3


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([1], [("not-an-object", "")]),
        ({"text": "x"}, [("unknown-format", "")]),
        ({"messages": [{"role": "bot", "content": "a"}]}, [("invalid-role", "messages[0].role")]),
        ({"messages": []}, [("missing-assistant-turn", "messages")]),
        (
            {"messages": [{"role": "user", "content": "a"}]},
            [("missing-assistant-turn", "messages")],
        ),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
            [("missing-field", "messages[0].content")],
        ),
        ({"prompt": " ", "completion": "b"}, [("empty-content", "prompt")]),
        ({"prompt": "a", "completion": "b", "x": 1}, [("unknown-field", "x")]),
        (
            {"contents": [{"role": "model", "parts": [{"text": "a"}]}]},
            [("invalid-role", "contents[0].role")],
        ),
    ],
)
def test_issues_name_the_field(obj: object, expected: list[tuple[str, str]]) -> None:
    assert codes(obj) == expected


def test_image_rules() -> None:
    def mm(url: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
                {"role": "assistant", "content": "A"},
            ]
        }

    f = "messages[0].content[0].image_url.url"
    assert codes(mm("https://x/y.jpg")) == [("invalid-image-uri", f)]
    assert codes(mm("gs://b/y.gif")) == [("unsupported-image-type", f)]
    assert codes(mm("data:image/png;base64,@@@")) == [("invalid-base64", f)]
    jpeg_bytes_as_png = "data:image/png;base64," + base64.b64encode(b"\xff\xd8\xff\xe0").decode()
    assert codes(mm(jpeg_bytes_as_png)) == [("invalid-base64", f)]
    assert codes(mm(PNG_URL)) == []


def test_decode_and_sniff() -> None:
    assert decode_data_url(PNG_URL) == ("image/png", PNG)
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(b"GIF89a") is None
    with pytest.raises(ValueError) as e:
        decode_data_url("data:image/bmp;base64,AAAA")
    assert e.value.args[0] == "unsupported-image-type"
