"""From a parsed example to the exact token ids and labels the trainer trains on (torch-free).

The trainer (:mod:`trainer.data`) encodes every example here, and infra's ``validate``
(``infra/checks/tokens.py``) counts tokens with :func:`count_tokens` from here, so an exact
``sequence-too-long`` is precisely an example the trainer drops as over-long.

The rules, and why:

- The model's own chat template renders the conversation. A tokenizer without one gets
  :data:`FALLBACK_CHAT_TEMPLATE` (``User: ...``/``Assistant: ...`` blocks, the assistant's text
  ending with the EOS token, which then is the end-of-turn token).
- A turn's text parts are already joined with newlines by :mod:`trainer.formats`.
- The template owns BOS: text is tokenised with ``add_special_tokens=False``, and a doubled BOS
  at the start is collapsed to one.
- Labels are computed from turn boundaries, never from ``{% generation %}`` markers (the stock
  Llama 3 / Qwen 3 / Gemma 3 templates have none, which makes ``return_assistant_tokens_mask``
  silently all zeros). For each assistant turn, the conversation before it is rendered with the
  generation prompt; the assistant's tokens start where that prefix ends (located by character
  offsets in the full rendering) and run through the first end-of-turn token, which is
  supervised so the model learns to stop. Template text after it (e.g. a newline) is not.
- Vision models: each image placeholder the template renders expands to the processor's image
  sequence (one fixed string, or one per image for Llama 4's tiling).
- An example with no supervised token is skipped (``no-supervised-tokens``). Over-long examples
  (more tokens than ``max_seq_length``) are dropped by default; ``overlong="truncate"`` cuts them
  and keeps them when a supervised token survives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.formats import Example, Image

#: Label of a position that is not supervised (PyTorch's cross-entropy ``ignore_index``).
IGNORE = -100

FALLBACK_CHAT_TEMPLATE = (
    "{{- bos_token or '' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'user' %}{{- 'User: ' + message['content'] + '\n\n' }}"
    "{%- else %}{{- 'Assistant: ' + message['content'] + eos_token + '\n\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant: ' }}{%- endif %}"
)


@dataclass
class Encoded:
    """One tokenised example. ``labels`` is -100 where the token is not supervised."""

    input_ids: list[int]
    labels: list[int]
    images: tuple[Image, ...] = ()

    @property
    def n_supervised(self) -> int:
        """Tokens whose label is supervised."""
        return sum(1 for x in self.labels if x != IGNORE)


def count_tokens(tokenizer: Any, example: Example) -> int:
    """Exact length of the token ids the trainer builds for a text example.

    The same rendering (chat template or :data:`FALLBACK_CHAT_TEMPLATE`), the same
    tokenisation and the same BOS handling as :meth:`Encoder.encode`, before any over-long
    policy applies. The tokenizer is not modified. Images are not counted (their turns
    render as text only; callers add an estimate).
    """
    msgs = [{"role": t.role, "content": t.text} for t in example.turns]
    text = render(tokenizer, msgs, generation_prompt=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return len(ids) - _doubled_bos(ids, tokenizer.bos_token_id)


def render(tokenizer: Any, msgs: list[dict[str, Any]], *, generation_prompt: bool) -> str:
    """The chat template's text for ``msgs`` (:data:`FALLBACK_CHAT_TEMPLATE` when the
    tokenizer has no template of its own)."""
    if not msgs:  # never for parsed examples: they start with a system or user turn
        return ""
    own = getattr(tokenizer, "chat_template", None)
    return str(
        tokenizer.apply_chat_template(
            msgs,
            tokenize=False,
            add_generation_prompt=generation_prompt,
            chat_template=None if own else FALLBACK_CHAT_TEMPLATE,
        )
    )


class Encoder:
    """Turns examples into :class:`Encoded` with the rules in the module docstring.

    Args:
        tokenizer: A Hugging Face tokenizer; given :data:`FALLBACK_CHAT_TEMPLATE` if it has
            none (so the checkpoint's saved tokenizer renders conversations the same way).
        max_seq_length: Longest example in tokens.
        overlong: ``drop`` or ``truncate``.
        image_sequence: For vision models, the text each image placeholder expands to (the
            processor's ``full_image_sequence``), or a function of the image giving it (Llama 4
            tiles each image into a number of tokens that depends on its size); None for
            text-only models.
        image_placeholder: The text the chat template renders for an image (default: the
            tokenizer's ``boi_token``, as Gemma 3's template writes).
    """

    def __init__(
        self,
        tokenizer: Any,
        max_seq_length: int,
        overlong: str = "drop",
        image_sequence: str | Callable[[Image], str] | None = None,
        image_placeholder: str | None = None,
    ) -> None:
        self.tok = tokenizer
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.max_seq_length = max_seq_length
        self.overlong = overlong
        self.image_sequence = image_sequence
        self.image_placeholder = (
            (image_placeholder or getattr(tokenizer, "boi_token", None)) if image_sequence else None
        )
        self._sequences: list[str] = []
        self.eot_id = self._end_of_turn_id()

    def encode(self, example: Example) -> Encoded | str:
        """The encoded example, or the reason it is skipped (``no-supervised-tokens``,
        ``overlong``, ``images-unsupported``)."""
        if example.has_images and self.image_sequence is None:
            return "images-unsupported"
        msgs = self._messages(example)
        images = tuple(img for t in example.turns for img in t.images)
        self._sequences = (
            [self.image_sequence(img) for img in images] if callable(self.image_sequence) else []
        )
        full_text = self._render(msgs, generation_prompt=False)
        enc = self.tok(full_text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
        drop = _doubled_bos(ids, self.tok.bos_token_id)
        ids, offsets = ids[drop:], offsets[drop:]
        labels = [IGNORE] * len(ids)
        for i, turn in enumerate(example.turns):
            if turn.role != "assistant":
                continue
            prefix = self._render(msgs[:i], generation_prompt=True)
            start = self._start_token(prefix, full_text, offsets, ids)
            end = start
            while end < len(ids) and ids[end] != self.eot_id:
                end += 1
            end = min(end + 1, len(ids))  # the end-of-turn token is supervised
            labels[start:end] = ids[start:end]
        if len(ids) > self.max_seq_length:
            if self.overlong == "drop":
                return "overlong"
            ids, labels = ids[: self.max_seq_length], labels[: self.max_seq_length]
        out = Encoded(ids, labels, images)
        if out.n_supervised == 0:
            return "no-supervised-tokens"
        return out

    # --- helpers ---------------------------------------------------------------------------

    def _messages(self, example: Example) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = []
        for t in example.turns:
            if self.image_sequence is None:
                msgs.append({"role": t.role, "content": t.text})
                continue
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in t.images]
            if t.text:
                parts.append({"type": "text", "text": t.text})
            msgs.append({"role": t.role, "content": parts})
        return msgs

    def _render(self, msgs: list[dict[str, Any]], *, generation_prompt: bool) -> str:
        text = render(self.tok, msgs, generation_prompt=generation_prompt)
        if self.image_sequence and self.image_placeholder:
            if isinstance(self.image_sequence, str):
                text = text.replace(self.image_placeholder, self.image_sequence)
            else:  # one sequence per image, in order (a prefix holds the first images)
                pieces = text.split(self.image_placeholder)
                seqs = self._sequences
                text = pieces[0] + "".join(
                    (seqs[k] if k < len(seqs) else self.image_placeholder) + p
                    for k, p in enumerate(pieces[1:])
                )
        return text

    def _start_token(
        self, prefix: str, full: str, offsets: list[tuple[int, int]], ids: list[int]
    ) -> int:
        if full.startswith(prefix):
            cut = len(prefix)
            for k, (_s, e) in enumerate(offsets):
                if e > cut:
                    return k
            return len(ids)
        # The template renders earlier turns differently once later turns exist (e.g. Qwen 3
        # strips <think> from history): fall back to the longest common token prefix.
        pids = self.tok(prefix, add_special_tokens=False)["input_ids"]
        k = 0
        while k < min(len(pids), len(ids)) and pids[k] == ids[k]:
            k += 1
        return k

    def _end_of_turn_id(self) -> int:
        """The special token that closes an assistant turn in this template."""
        probe: list[dict[str, Any]] = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ]
        if self.image_sequence is not None:
            probe = [
                {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
                for m in probe
            ]
        prefix = self.tok.apply_chat_template(probe[:1], tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(probe, tokenize=False)
        rest = full[len(prefix) :] if full.startswith(prefix) else full
        special = set(self.tok.all_special_ids) | {
            i for i, t in self.tok.added_tokens_decoder.items() if t.special
        }
        for i in self.tok(rest, add_special_tokens=False)["input_ids"]:
            if i in special:
                return int(i)
        return int(self.tok.eos_token_id)


def _doubled_bos(ids: list[int], bos: int | None) -> int:
    """How many leading tokens to drop so a doubled BOS at the start becomes one (a template
    that adds BOS on top of text that already has one)."""
    drop = 0
    while bos is not None and len(ids) - drop >= 2 and ids[drop] == bos == ids[drop + 1]:
        drop += 1
    return drop
