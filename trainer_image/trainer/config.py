"""The trainer's configuration: one documented dataclass, filled from flags and/or a config file.

Flags mirror a Vertex tuning job (``--epochs``, ``--learning-rate-multiplier``, ``--adapter-size``
...). ``--config file.yaml|json`` supplies the same fields by name (underscores or dashes); flags
given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FULL = "FULL"
PEFT_ADAPTER = "PEFT_ADAPTER"
ADAPTER_SIZES = (1, 2, 4, 8, 16, 32)

#: Longest example in tokens by Hugging Face ``model_type`` when ``--max-seq-length`` is not
#: given. Mirrors the Vertex catalog (infra/catalog.py, which the trainer must not import):
#: Llama 4 Scout tunes at 2048, every other catalog model at 8192. A test checks the two agree.
MAX_SEQ_LENGTH_BY_MODEL_TYPE = {"llama4": 2048, "llama4_text": 2048}
DEFAULT_MAX_SEQ_LENGTH = 8192

#: Learning rate when neither ``--learning-rate`` nor a multiplier is given; the multiplier
#: scales these (Vertex's ``learningRateMultiplier`` scales its recommended rate the same way).
DEFAULT_LEARNING_RATE = {FULL: 1e-5, PEFT_ADAPTER: 1e-4}

#: LoRA targets: every linear projection of attention and MLP (what QLoRA found necessary to
#: match full fine-tuning). Vision towers and the LM head are never adapted.
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A user error in flags or the config file (reported without a traceback, exit 1)."""


@dataclass
class TrainConfig:
    """Everything one training run needs. Field docs are the user documentation.

    Attributes:
        base_model: Local Hugging Face checkpoint dir, ``gs://bucket/path`` or ``/gcs/bucket/path``.
        train_data: JSONL file (local, gs:// or /gcs/) in one of the five Vertex formats.
        output_dir: Local dir or gs:// URI; artifacts go under ``postprocess/node-0/``.
        validation_data: Optional JSONL; eval loss is computed on it after every epoch.
        base_model_id: Catalog id (e.g. ``meta/llama3_1@llama-3.1-8b``); recorded only.
        tuning_mode: ``FULL`` or ``PEFT_ADAPTER`` (LoRA). Default PEFT_ADAPTER.
        epochs: Passes over the training data. Default 1.
        learning_rate: Peak learning rate; default 1e-4 for PEFT_ADAPTER, 1e-5 for FULL.
        learning_rate_multiplier: Scales the default learning rate; exclusive with learning_rate.
        adapter_size: LoRA rank (1, 2, 4, 8, 16, 32). Default 8. LoRA alpha = 2 * rank.
        max_seq_length: Longest example in tokens; default from the architecture (2048 for
            Llama 4, else 8192). Longer examples are dropped and counted (``overlong``).
        overlong: ``drop`` (default: the example is skipped and counted) or ``truncate``
            (cut to max_seq_length; kept only if a supervised token survives).
        seed: Seed for weights init of adapters, data order and dropout. Default 42.
        packing: Pack several examples per row (contamination-free). Default off.
        batch_size: Examples (or packed rows) per micro-batch per process. Default 4.
        gradient_accumulation_steps: Micro-batches per optimizer step. Default 1.
        gradient_checkpointing: Recompute activations in backward to save memory. Default off.
        warmup_ratio: Fraction of steps with linear warm-up. Default 0.03.
        weight_decay: AdamW weight decay. Default 0.0.
        max_grad_norm: Gradient clipping norm (0 disables). Default 1.0.
        lora_dropout: Dropout on LoRA inputs. Default 0.0 (deterministic, and faster).
        shuffle: Shuffle the training data every epoch (seeded). Default on.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bfloat16`` or ``float32``.
        num_threads: torch CPU threads (0 leaves torch's default). Default 0.
        log_every: Log a metrics line every N optimizer steps. Default 1.
        progress: Show a rich progress bar. Default on.
    """

    base_model: str = ""
    train_data: str = ""
    output_dir: str = ""
    validation_data: str | None = None
    base_model_id: str | None = None
    tuning_mode: str = PEFT_ADAPTER
    epochs: int = 1
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None
    adapter_size: int = 8
    max_seq_length: int | None = None
    overlong: str = "drop"
    seed: int = 42
    packing: bool = False
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_dropout: float = 0.0
    shuffle: bool = True
    dtype: str = "auto"
    num_threads: int = 0
    log_every: int = 1
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def validate(self) -> list[str]:
        """Every problem with the configuration, as ``field: message`` strings (empty if ok)."""
        errs: list[str] = []
        for name in ("base_model", "train_data", "output_dir"):
            if not getattr(self, name):
                errs.append(f"{name}: is required (--{name.replace('_', '-')})")
        if self.tuning_mode not in (FULL, PEFT_ADAPTER):
            errs.append(f"tuning_mode: {self.tuning_mode!r} is not FULL or PEFT_ADAPTER")
        if self.epochs < 1:
            errs.append("epochs: must be >= 1")
        if self.learning_rate is not None and self.learning_rate_multiplier is not None:
            errs.append("learning_rate: give learning_rate or learning_rate_multiplier, not both")
        if self.learning_rate is not None and self.learning_rate <= 0:
            errs.append("learning_rate: must be > 0")
        if self.learning_rate_multiplier is not None and self.learning_rate_multiplier <= 0:
            errs.append("learning_rate_multiplier: must be > 0")
        if self.adapter_size not in ADAPTER_SIZES:
            errs.append(f"adapter_size: {self.adapter_size} is not one of {ADAPTER_SIZES}")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            errs.append("max_seq_length: must be >= 8")
        if self.overlong not in ("drop", "truncate"):
            errs.append(f"overlong: {self.overlong!r} is not drop or truncate")
        for name in ("batch_size", "gradient_accumulation_steps", "log_every"):
            if getattr(self, name) < 1:
                errs.append(f"{name}: must be >= 1")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            errs.append(f"dtype: {self.dtype!r} is not auto, bfloat16 or float32")
        return errs

    def peak_learning_rate(self) -> float:
        """The learning rate after applying the default and the multiplier."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATE[self.tuning_mode] * (self.learning_rate_multiplier or 1.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the fields (for run metadata)."""
        d = dataclasses.asdict(self)
        d.pop("extra", None)
        return d


def default_max_seq_length(model_type: str) -> int:
    """The catalog's max sequence length for a Hugging Face ``model_type``."""
    return MAX_SEQ_LENGTH_BY_MODEL_TYPE.get(model_type, DEFAULT_MAX_SEQ_LENGTH)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m trainer`` argument parser (every default is None: see :func:`parse`)."""
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Supervised fine-tuning (FULL or LoRA) on Vertex AI dataset formats.",
        argument_default=None,
    )
    p.add_argument("--config", help="YAML or JSON file with any of the fields below")
    p.add_argument("--base-model", help="HF checkpoint dir, gs:// or /gcs/ path")
    p.add_argument("--base-model-id", help="catalog id (informational, recorded in metadata)")
    p.add_argument("--train-data", help="training JSONL (local, gs:// or /gcs/)")
    p.add_argument("--validation-data", help="validation JSONL (optional)")
    p.add_argument("--output-dir", help="local dir or gs:// URI")
    p.add_argument("--tuning-mode", choices=(FULL, PEFT_ADAPTER))
    p.add_argument("--epochs", type=int)
    lr = p.add_mutually_exclusive_group()
    lr.add_argument("--learning-rate", type=float)
    lr.add_argument("--learning-rate-multiplier", type=float)
    p.add_argument("--adapter-size", type=int, help="LoRA rank (1, 2, 4, 8, 16, 32)")
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--overlong", choices=("drop", "truncate"))
    p.add_argument("--seed", type=int)
    p.add_argument("--packing", action=argparse.BooleanOptionalAction)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--gradient-accumulation-steps", type=int)
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--max-grad-norm", type=float)
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction)
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"))
    p.add_argument("--num-threads", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction)
    return p


def parse(argv: list[str] | None = None) -> TrainConfig:
    """Builds a :class:`TrainConfig` from flags and an optional ``--config`` file.

    Raises:
        ConfigError: with every problem found, one per line.
    """
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values.update(load_config_file(Path(args.config)))
    for k, v in vars(args).items():
        if k != "config" and v is not None:
            values[k] = v
    return from_dict(values)


def load_config_file(path: Path) -> dict[str, Any]:
    """Reads a YAML/JSON config file into a dict with underscore keys.

    Raises:
        ConfigError: when the file is missing, unparsable or not a mapping.
    """
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A validated :class:`TrainConfig` from a dict of field values.

    Raises:
        ConfigError: listing unknown fields (with a suggestion) and invalid values.
    """
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]
    errs: list[str] = []
    known: dict[str, Any] = {}
    for k, v in values.items():
        if k in names:
            known[k] = v
            continue
        close = difflib.get_close_matches(k, names, n=1)
        errs.append(f"{k}: unknown field" + (f"; did you mean '{close[0]}'?" if close else ""))
    if "tuning_mode" in known and isinstance(known["tuning_mode"], str):
        known["tuning_mode"] = known["tuning_mode"].upper()
    try:
        cfg = TrainConfig(**known)
    except TypeError as e:
        raise ConfigError(str(e)) from None
    for f in dataclasses.fields(TrainConfig):
        v = getattr(cfg, f.name)
        ints = ("epochs", "adapter_size", "batch_size", "gradient_accumulation_steps")
        if f.name in ints and (not isinstance(v, int) or isinstance(v, bool)):
            errs.append(f"{f.name}: expected an integer, got {v!r}")
    errs.extend(cfg.validate())
    if errs:
        raise ConfigError("\n".join(errs))
    return cfg
