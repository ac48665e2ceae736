"""Token counts: exact with a Hugging Face tokenizer, else estimated.

Exact counts are the trainer's own encoding (:func:`trainer.encoding.count_tokens`: its chat
template or fallback template, its BOS handling), so an exact ``sequence-too-long`` is an
example the trainer drops as over-long.

The estimate (4 characters a token, a few tokens of template per turn, a fixed cost per image)
is deliberately simple and always labelled as an estimate wherever it is shown.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

#: Characters per token for estimates (English prose averages ~4 with Llama/Gemma/Qwen vocabularies).
CHARS_PER_TOKEN = 4
#: Template tokens per turn for estimates (role header and end-of-turn markers).
TOKENS_PER_TURN = 4
#: Tokens per image for estimates (Llama 4: 144 per 336px tile; assume a global view + 3 tiles).
TOKENS_PER_IMAGE = 576


class TokenizerUnavailable(Exception):
    """The tokenizer cannot be loaded offline (not a local directory, not in the HF cache)."""


def estimate_tokens(chars: int, turns: int, images: int) -> int:
    """A rough token count for ``chars`` characters of text in ``turns`` turns and ``images`` images."""
    return -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_TURN * turns + TOKENS_PER_IMAGE * images


def load_tokenizer(name: str, base: Path | None = None) -> Any:
    """Loads a tokenizer from a local directory (relative to ``base``) or the local HF cache.

    Never downloads: validation must work offline and must not pull model files.

    Raises:
        TokenizerUnavailable: with the reason, when it cannot be loaded.
    """
    path = Path(name).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    target = str(path) if path.is_dir() else name
    return _load(target)


@functools.lru_cache(maxsize=8)
def _load(target: str) -> Any:
    # transformers is heavy to import; only validations that name a tokenizer pay for it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers import AutoTokenizer  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise TokenizerUnavailable(f"transformers is not installed ({e})") from None
    try:
        return AutoTokenizer.from_pretrained(target, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any loader failure means "not available offline"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TokenizerUnavailable(f"cannot load tokenizer {target!r} offline: {first}") from None
