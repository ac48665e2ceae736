"""The trainer's configuration: one documented dataclass, filled from flags and/or a config file.

Each field is declared once, with its help text in ``metadata``: the ``python -m trainer`` flags
(``--field-name``), their ``--help``, and the type checks are generated from the fields. Flags
mirror a Vertex tuning job (``--epochs``, ``--learning-rate-multiplier``, ``--adapter-size``
...). ``--config file.yaml|json`` supplies the same fields by name (underscores or dashes); flags
given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer import storage

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


def _opt(default: Any, help: str, **cli: Any) -> Any:  # noqa: A002  (argparse's own name)
    """A field with its help text; ``cli`` holds extra flag settings (``choices``,
    ``exclusive``: the name of a group of flags that cannot be given together)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything one training run needs. Each field's ``help`` is its user documentation
    (shown by ``python -m trainer --help``)."""

    base_model: str = _opt(
        "", "Local Hugging Face checkpoint dir, gs://bucket/path or /gcs/bucket/path. Required."
    )
    train_data: str = _opt(
        "", "Training JSONL (local, gs:// or /gcs/) in one of the five Vertex formats. Required."
    )
    output_dir: str = _opt(
        "", "Local dir or gs:// URI; artifacts go under postprocess/node-0/. Required."
    )
    validation_data: str | None = _opt(
        None, "Optional JSONL; eval loss is computed on it after every epoch."
    )
    base_model_id: str | None = _opt(
        None, "Catalog id (e.g. meta/llama3_1@llama-3.1-8b); recorded in metadata only."
    )
    tuning_mode: str = _opt(
        PEFT_ADAPTER,
        "FULL or PEFT_ADAPTER (LoRA). Default PEFT_ADAPTER.",
        choices=(FULL, PEFT_ADAPTER),
    )
    epochs: int = _opt(1, "Passes over the training data. Default 1.")
    learning_rate: float | None = _opt(
        None,
        "Peak learning rate; default 1e-4 for PEFT_ADAPTER, 1e-5 for FULL.",
        exclusive="learning_rate",
    )
    learning_rate_multiplier: float | None = _opt(
        None,
        "Scales the default learning rate; exclusive with --learning-rate.",
        exclusive="learning_rate",
    )
    adapter_size: int = _opt(8, "LoRA rank (1, 2, 4, 8, 16, 32). Default 8. LoRA alpha = 2 * rank.")
    max_seq_length: int | None = _opt(
        None,
        "Longest example in tokens; default from the architecture (2048 for Llama 4, else "
        "8192). Longer examples are dropped and counted (see --overlong).",
    )
    overlong: str = _opt(
        "drop",
        "drop (default: the example is skipped and counted) or truncate (cut to "
        "max_seq_length; kept only if a supervised token survives).",
        choices=("drop", "truncate"),
    )
    seed: int = _opt(42, "Seed for adapter init, data order and dropout. Default 42.")
    packing: bool = _opt(False, "Pack several examples per row (contamination-free). Default off.")
    batch_size: int = _opt(4, "Examples (or packed rows) per micro-batch per process. Default 4.")
    gradient_accumulation_steps: int = _opt(1, "Micro-batches per optimizer step. Default 1.")
    gradient_checkpointing: bool = _opt(
        False, "Recompute activations in backward to save memory. Default off."
    )
    warmup_ratio: float = _opt(0.03, "Fraction of steps with linear warm-up. Default 0.03.")
    weight_decay: float = _opt(0.0, "AdamW weight decay. Default 0.0.")
    max_grad_norm: float = _opt(1.0, "Gradient clipping norm (0 disables). Default 1.0.")
    lora_dropout: float = _opt(
        0.0, "Dropout on LoRA inputs. Default 0.0 (deterministic, and faster)."
    )
    shuffle: bool = _opt(True, "Shuffle the training data every epoch (seeded). Default on.")
    dtype: str = _opt(
        "auto",
        "auto (bf16 on CUDA, fp32 on CPU), bfloat16 or float32. Default auto.",
        choices=("auto", "bfloat16", "float32"),
    )
    num_threads: int = _opt(0, "torch CPU threads (0 leaves torch's default). Default 0.")
    log_every: int = _opt(1, "Log a metrics line every N optimizer steps. Default 1.")
    progress: bool = _opt(True, "Show a rich progress bar. Default on.")
    metrics_push_seconds: float = _opt(
        10.0,
        "Upload metrics.jsonl to the output at most every N seconds while training (live "
        "progress for `tunestack up` and `tunestack status`; 0: only at checkpoints). Default 10.",
    )
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def validate(self) -> list[str]:
        """Every problem with the configuration, as ``field: message`` strings (empty if ok).

        Numeric fields are type-checked first (from their annotations); the range rules
        below skip a value that is not a number at all (it could not be compared).
        """
        errs = _type_errors(self)

        def ok(name: str) -> bool:
            return isinstance(getattr(self, name), int | float)

        for name in ("base_model", "train_data", "output_dir"):
            if not getattr(self, name):
                errs.append(f"{name}: is required (--{name.replace('_', '-')})")
        if self.tuning_mode not in (FULL, PEFT_ADAPTER):
            errs.append(f"tuning_mode: {self.tuning_mode!r} is not FULL or PEFT_ADAPTER")
        if ok("epochs") and self.epochs < 1:
            errs.append("epochs: must be >= 1")
        if self.learning_rate is not None and self.learning_rate_multiplier is not None:
            errs.append("learning_rate: give learning_rate or learning_rate_multiplier, not both")
        if ok("learning_rate") and self.learning_rate is not None and self.learning_rate <= 0:
            errs.append("learning_rate: must be > 0")
        m = self.learning_rate_multiplier
        if ok("learning_rate_multiplier") and m is not None and m <= 0:
            errs.append("learning_rate_multiplier: must be > 0")
        if self.adapter_size not in ADAPTER_SIZES:
            errs.append(f"adapter_size: {self.adapter_size} is not one of {ADAPTER_SIZES}")
        if ok("max_seq_length") and self.max_seq_length is not None and self.max_seq_length < 8:
            errs.append("max_seq_length: must be >= 8")
        if self.overlong not in ("drop", "truncate"):
            errs.append(f"overlong: {self.overlong!r} is not drop or truncate")
        for name in ("batch_size", "gradient_accumulation_steps", "log_every"):
            if ok(name) and getattr(self, name) < 1:
                errs.append(f"{name}: must be >= 1")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            errs.append(f"dtype: {self.dtype!r} is not auto, bfloat16 or float32")
        errs += _path_errors(self)
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
    """The ``python -m trainer`` argument parser, one flag per :class:`TrainConfig` field.

    Every default is None (see :func:`parse`): a flag not given leaves the config file's value
    or the field's default. Booleans get ``--x/--no-x``; ``choices`` and exclusive groups come
    from the field's metadata.
    """
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Supervised fine-tuning (FULL or LoRA) on Vertex AI dataset formats.",
        argument_default=None,
    )
    p.add_argument("--config", help="YAML or JSON file with any of the fields below")
    groups: dict[str, Any] = {}
    for f, kind in _fields():
        kw: dict[str, Any] = {"help": f.metadata["help"]}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is not str:
            kw["type"] = kind
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        target: Any = p
        if "exclusive" in f.metadata:
            name = f.metadata["exclusive"]
            if name not in groups:
                groups[name] = p.add_mutually_exclusive_group()
            target = groups[name]
        target.add_argument("--" + f.name.replace("_", "-"), **kw)
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
    names = [f.name for f, _ in _fields()]
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
    errs.extend(cfg.validate())
    if errs:
        raise ConfigError("\n".join(errs))
    return cfg


def _fields() -> list[tuple[dataclasses.Field[Any], type]]:
    """(field, value type) of every user-facing field; ``X | None`` gives X."""
    hints = typing.get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        out.append((f, hint))
    return out


def _type_errors(cfg: TrainConfig) -> list[str]:
    """``field: expected ...`` for every numeric field whose value has the wrong type
    (a config file can hold anything; flags are converted by argparse)."""
    errs = []
    for f, kind in _fields():
        v = getattr(cfg, f.name)
        if v is None and f.default is None:
            continue
        if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
            errs.append(f"{f.name}: expected an integer, got {v!r}")
        elif kind is float and (not isinstance(v, int | float) or isinstance(v, bool)):
            errs.append(f"{f.name}: expected a number, got {v!r}")
    return errs


def _path_errors(cfg: TrainConfig) -> list[str]:
    """gs:// URIs that escape their bucket; local inputs that are not files; an output file."""
    errs = []
    for name in ("base_model", "train_data", "validation_data", "output_dir"):
        value = getattr(cfg, name)
        if isinstance(value, str) and value.startswith("gs://"):
            problem = storage.escape_problem(value)
            if problem:
                errs.append(f"{name}: {value[:200]!r} {problem}")
    for name in ("train_data", "validation_data"):
        value = getattr(cfg, name)
        if isinstance(value, str) and value and not value.startswith("gs://"):
            problem = storage.local_file_problem(Path(value))
            if problem and problem != "does not exist":  # reported when fetched, as before
                errs.append(f"{name}: {value} {problem}")
    out = cfg.output_dir
    if isinstance(out, str) and out and not out.startswith("gs://"):
        p = Path(out)
        if p.exists() and not p.is_dir():
            errs.append(f"output_dir: {out} exists and is not a directory")
        elif any(a.exists() and not a.is_dir() for a in p.parents):
            errs.append(f"output_dir: {out} is under a file, not a directory")
    return errs
