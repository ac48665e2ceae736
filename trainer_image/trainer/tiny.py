"""Tiny random-initialised checkpoints of the real architectures, with offline tokenizers.

Used by tests, the benchmark, the local server's ``--smoke`` mode and the demo: nothing is
downloaded. Each checkpoint is a real transformers architecture (hidden 64, 2 layers, 4 heads /
2 KV heads) saved with ``save_pretrained`` (safetensors), plus a byte-level BPE tokenizer trained
in milliseconds on a built-in corpus (so any text tokenises, no unknown tokens) with the family's
special tokens and a chat template in the family's style.

CLI: ``python -m trainer.tiny FAMILY OUT_DIR [--seed N] [--vision]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    Llama4Config,
    Llama4ForCausalLM,
    Llama4ForConditionalGeneration,
    Llama4Processor,
    Llama4TextConfig,
    Llama4VisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

FAMILIES = ("llama", "gemma3", "qwen3", "llama4")

#: Tokens per image for the tiny Gemma 3 vision model (28x28 pixels, 14-pixel patches).
TINY_IMAGE_SIZE = 28
TINY_IMAGE_TOKENS = 4
#: The tiny Llama 4 vision model: 28x28 tiles, 7-pixel patches (16 per tile), pixel shuffle 0.5
#: (4 patches per token), so 4 ``<|patch|>`` tokens per tile.
TINY_LLAMA4_PATCH_SIZE = 7
LLAMA4_IMAGE_TOKENS = (
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
)

# Chat templates in each family's style (the real ones, minus dates/tools/thinking options).
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{%- endif %}"
)
LLAMA4_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|header_start|>' + message['role'] + '<|header_end|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] | trim }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] | trim }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|header_start|>assistant<|header_end|>\n\n' }}"
    "{%- endif %}"
)
# Gemma folds the system prompt into the first user turn and calls the assistant "model".
GEMMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' %}"
    "{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string %}{{- message['content'] | trim }}"
    "{%- else %}{%- for item in message['content'] %}"
    "{%- if item['type'] == 'image' %}{{- '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' %}{{- item['text'] | trim }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<end_of_turn>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}"
)
# Qwen 3 strips <think>...</think> from assistant turns before the last user turn.
QWEN3_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.last_user = loop.index0 %}{%- endif %}{%- endfor %}"
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and loop.index0 < ns.last_user"
    " and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

# family -> (bos, eos, pad, end-of-turn, extra specials, template, BOS added by the tokenizer)
_SPECIALS: dict[str, tuple[str | None, str, str, str, tuple[str, ...], str, bool]] = {
    "llama": (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        "<|eot_id|>",
        ("<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"),
        LLAMA3_TEMPLATE,
        True,
    ),
    "llama4": (
        "<|begin_of_text|>",
        "<|eot|>",
        "<|finetune_right_pad|>",
        "<|eot|>",
        ("<|end_of_text|>", "<|header_start|>", "<|header_end|>", *LLAMA4_IMAGE_TOKENS),
        LLAMA4_TEMPLATE,
        True,
    ),
    "gemma3": (
        "<bos>",
        "<eos>",
        "<pad>",
        "<end_of_turn>",
        (
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ),
        GEMMA3_TEMPLATE,
        True,
    ),
    "qwen3": (
        None,
        "<|im_end|>",
        "<|endoftext|>",
        "<|im_end|>",
        ("<|im_start|>", "<think>", "</think>"),
        QWEN3_TEMPLATE,
        False,
    ),
}

_CORPUS = (
    "the quick brown fox jumps over the lazy dog. hello world! how are you today? "
    "i am fine, thank you. what is the capital of france? paris is the capital of france. "
    "please repeat after me: red green blue yellow orange purple black white. "
    "one two three four five six seven eight nine ten. user assistant system model answer "
    "question copy the words translate summarize explain why because therefore. "
    "0 1 2 3 4 5 6 7 8 9 , . ; : ! ? ' \" ( ) [ ] { } - _ + = / * & % $ # @ < > |"
)


def build_tiny_checkpoint(
    family: str,
    out_dir: Path,
    *,
    seed: int = 0,
    vision: bool = False,
    hidden_size: int = 64,
    num_layers: int = 2,
    intermediate_size: int = 128,
) -> Path:
    """Writes a tiny random-initialised checkpoint of a real architecture, with a tokenizer.

    Args:
        family: One of ``llama``, ``gemma3``, ``qwen3``, ``llama4`` (Llama4ForCausalLM, text).
        out_dir: Directory to write (created; existing files are overwritten).
        seed: Seed for the random weights (same seed, same weights).
        vision: For ``gemma3``, build Gemma3ForConditionalGeneration with a tiny SigLIP tower
            and save a Gemma3Processor (28x28 images, 4 tokens per image). For ``llama4``, build
            Llama4ForConditionalGeneration with a tiny Llama 4 vision tower and save a
            Llama4Processor (one 28x28 tile, 4 ``<|patch|>`` tokens per image).
        hidden_size: Model width (64 by default; the benchmark uses 256).
        num_layers: Decoder layers.
        intermediate_size: MLP width.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: for an unknown family, or ``vision`` on a family other than gemma3/llama4.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    if vision and family not in ("gemma3", "llama4"):
        raise ValueError("vision tiny checkpoints exist for gemma3 and llama4 only")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer(family)
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    dims = {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": hidden_size // 4,
        "vocab_size": len(tok),
        "max_position_embeddings": 8192,
        **ids,
    }
    torch.manual_seed(seed)
    model: PreTrainedModel
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**dims, tie_word_embeddings=False))
    elif family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**dims, tie_word_embeddings=True))
    elif family == "llama4":
        l4 = Llama4TextConfig(
            **dims,
            intermediate_size_mlp=intermediate_size,
            num_local_experts=2,
            num_experts_per_tok=1,
            interleave_moe_layer_step=2,
            attention_chunk_size=8192,
        )
        if not vision:
            model = Llama4ForCausalLM(l4)
        else:
            # Pixel shuffle multiplies the width by 4: the tower's MLP input is 4x its width.
            l4v = Llama4VisionConfig(
                hidden_size=32,
                intermediate_size=128,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=TINY_IMAGE_SIZE,
                patch_size=TINY_LLAMA4_PATCH_SIZE,
                vision_output_dim=64,
                projector_input_dim=64,
                projector_output_dim=64,
            )
            model = Llama4ForConditionalGeneration(
                Llama4Config(
                    text_config=l4.to_dict(),
                    vision_config=l4v.to_dict(),
                    boi_token_index=_token_id(tok, "<|image_start|>"),
                    eoi_token_index=_token_id(tok, "<|image_end|>"),
                    image_token_index=_token_id(tok, "<|patch|>"),
                    **ids,
                )
            )
    else:
        text = Gemma3TextConfig(**dims, sliding_window=64, query_pre_attn_scalar=hidden_size // 4)
        if not vision:
            model = Gemma3ForCausalLM(text)
        else:
            vis = SiglipVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=TINY_IMAGE_SIZE,
                patch_size=14,
            )
            cfg = Gemma3Config(
                text_config=text.to_dict(),
                vision_config=vis.to_dict(),
                mm_tokens_per_image=TINY_IMAGE_TOKENS,
                boi_token_index=_token_id(tok, "<start_of_image>"),
                eoi_token_index=_token_id(tok, "<end_of_image>"),
                image_token_index=_token_id(tok, "<image_soft_token>"),
                **ids,
            )
            model = Gemma3ForConditionalGeneration(cfg)
            # transformers initialises the projector to zeros, so images would be invisible.
            with torch.no_grad():
                proj = model.model.multi_modal_projector.mm_input_projection_weight
                proj.normal_(0.0, 0.1)
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    if vision and family == "llama4":
        # Llama4ImageProcessor needs torchvision; the tiny checkpoint uses a PIL processor that
        # resizes every image to one 28x28 tile (the trainer reads ``aspect_ratios`` when the
        # real processor tiles).
        proc4 = Llama4Processor(
            image_processor=SiglipImageProcessorPil(
                size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
            ),
            tokenizer=tok,
            patch_size=TINY_LLAMA4_PATCH_SIZE,
            chat_template=tok.chat_template,
        )
        proc4.save_pretrained(out_dir)
    elif vision:
        proc = Gemma3Processor(
            image_processor=Gemma3ImageProcessorPil(
                size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
            ),
            tokenizer=tok,
            chat_template=tok.chat_template,
            image_seq_length=TINY_IMAGE_TOKENS,
        )
        proc.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _token_id(tok: PreTrainedTokenizerFast, token: str) -> int:
    i = tok.convert_tokens_to_ids(token)
    assert isinstance(i, int)
    return i


def build_tiny_tokenizer(family: str, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the family's special tokens and chat template.

    Llama and Gemma tokenizers add BOS when asked for special tokens (as the real ones do), so
    the double-BOS trap is real in tests; Qwen has no BOS.

    Args:
        family: One of :data:`FAMILIES`.
        vocab_size: BPE vocabulary size including the 256 byte tokens.

    Returns:
        The tokenizer (not saved).
    """
    bos, eos, pad, _eot, extra, template, adds_bos = _SPECIALS[family]
    specials = [t for t in (bos, eos, pad, *extra) if t is not None]
    specials = list(dict.fromkeys(specials))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if adds_bos and bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, backend.token_to_id(bos))],
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    kwargs: dict[str, object] = {}
    if family == "gemma3":
        # Gemma3Processor reads these attributes from the tokenizer.
        kwargs["extra_special_tokens"] = {
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        }
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        chat_template=template,
        model_max_length=8192,
        **kwargs,
    )
    return tok


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.tiny FAMILY OUT_DIR``: writes a tiny checkpoint and prints its path."""
    p = argparse.ArgumentParser(prog="python -m trainer.tiny", description=__doc__.split("\n")[0])
    p.add_argument("family", choices=FAMILIES)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vision", action="store_true", help="gemma3 and llama4: the vision class")
    args = p.parse_args(argv)
    try:
        out = build_tiny_checkpoint(args.family, args.out_dir, seed=args.seed, vision=args.vision)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
