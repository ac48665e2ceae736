"""Diagnostics: every user error and warning, with location and a stable code.

Codes are part of the public contract (scripts match on them); never rename one. The README's
error-code table is checked against :data:`CODES` by a test. Every layer that finds problems
(the loader, the spec checks, the dataset checks) records them through one :class:`Reporter`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]

#: Dotted field path (``tuning_jobs[0].epochs``) -> 1-based (line, column) of its key in the
#: YAML file (of the item itself for list items); ``""`` is the document.
Positions = dict[str, tuple[int, int]]

#: Every stable code and what it means.
CODES: dict[str, str] = {
    # spec shape
    "unknown-field": "A key the spec language does not have (with a 'did you mean').",
    "missing-field": "A required key is absent.",
    "invalid-value": "A value of the wrong type or outside its allowed range.",
    "invalid-yaml": "The spec file is not valid YAML.",
    "duplicate-key": "The same key appears twice in one YAML mapping or JSON object.",
    # spec semantics
    "unsupported-model": "base_model is not an open model Vertex can tune.",
    "unsupported-tuning-mode": "The model does not support that tuning mode.",
    "unsupported-region": "The region does not run open-model tuning.",
    "invalid-bucket-name": "The bucket name breaks Cloud Storage naming rules.",
    "invalid-project-id": "The project id breaks GCP project id rules.",
    "unknown-reference": "A reference to a dataset, bucket or job that the spec does not define.",
    "duplicate-name": "Two items of one list share a name.",
    "invalid-adapter-size": "adapter_size is not 1, 4, 8, 16 or 32, or is set for FULL tuning.",
    "learning-rate-conflict": "learning_rate and learning_rate_multiplier are both set.",
    "accelerator-mismatch": "The accelerator type or count does not match the machine type.",
    "endpoint-too-small": "The weights (bf16) do not fit the endpoint's accelerator memory.",
    "kv-cache-headroom": "The weights leave under 20% of accelerator memory for the KV cache.",
    "invalid-uri": "A URI that is not a valid gs:// URI (or local path where one is allowed).",
    "public-member": "An IAM grant to allUsers or allAuthenticatedUsers.",
    "invalid-checkpoint": "An endpoint checkpoint that is not final, best, epoch-N or checkpoint-STEP, or an epoch the job does not keep.",
    "best-needs-validation": "checkpoint: best on a job without a validation dataset (best = lowest validation loss).",
    "checkpoint-step-unchecked": "checkpoint-STEP names a training step, known only after training (epoch-N is checked now).",
    # datasets
    "file-not-found": "A dataset file that does not exist.",
    "empty-dataset": "A dataset with no examples.",
    "invalid-encoding": "Not UTF-8, a byte-order mark, or a lone surrogate.",
    "invalid-json": "A line that is not one JSON value (trailing commas, pretty-printed JSON, blank lines).",
    "not-an-object": "A line whose JSON value is not an object (e.g. a top-level array).",
    "non-finite-number": "NaN or Infinity, which JSON does not allow.",
    "unknown-format": "An example in none of the five Vertex formats.",
    "mixed-formats": "Examples of several formats in one file.",
    "invalid-role": "A role other than system, user or assistant (user/model in GenerateContent).",
    "role-order": "System not first, consecutive same-role turns, or a conversation not ending on an assistant turn.",
    "missing-assistant-turn": "A conversation with no assistant turn to learn from.",
    "empty-content": "Empty or whitespace-only content.",
    "sequence-too-long": "An example longer than the model's max sequence length (error when counted exactly, warning when estimated).",
    "images-not-supported": "Images in a dataset for a text-only model.",
    "unsupported-image-type": "An image type other than JPEG, PNG or WEBP.",
    "invalid-image-uri": "An image URI that is not gs:// or data:image/...;base64 (http(s) URLs are refused).",
    "invalid-base64": "Base64 image data that does not decode, or whose bytes are not its declared type.",
    "text-examples-dropped": "Llama 4 Scout data mixing text-only and image examples: Vertex drops the text ones.",
    # files and usage
    "file-unreadable": "A file that exists but cannot be read.",
    "line-too-long": "A dataset line over the size limit (32 MiB); JSONL files are read line by line.",
    "tokenizer-unavailable": "The dataset's tokenizer cannot be loaded offline; token counts are estimated.",
    # input limits
    "spec-too-large": "A spec file over 1 MiB, or over 20000 YAML values (each use of an alias counted).",
    "nesting-too-deep": "Mappings and sequences nested deeper than 32 levels.",
}

#: Longest value quoted in a message (characters); longer ones are cut with ``...``.
MAX_VALUE_CHARS = 200
#: Longest message of one diagnostic (characters); the rest is cut with ``...``.
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class Diagnostic:
    """One finding about user input.

    Attributes:
        severity: ``error`` blocks; ``warning`` is reported (``--strict`` makes it block).
        code: A stable kebab-case key of :data:`CODES`.
        file: Path of the file the finding is in, as the user named it.
        line: 1-based line, 0 when unknown.
        column: 1-based column, 0 when unknown.
        field: Dotted field path (``tuning_jobs[0].adapter_size``, ``messages[2].role``).
        message: What is wrong and how to fix it.
    """

    severity: Severity
    code: str
    file: str
    line: int
    column: int
    field: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown diagnostic code {self.code!r}")
        if len(self.message) > MAX_MESSAGE_CHARS:  # frozen: the one place a message is cut
            object.__setattr__(self, "message", shorten(self.message, MAX_MESSAGE_CHARS))
        if len(self.field) > MAX_MESSAGE_CHARS:
            object.__setattr__(self, "field", shorten(self.field, MAX_MESSAGE_CHARS))

    def format(self) -> str:
        """``path:line:col: error[code]: field.path: message``."""
        field = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {field}{self.message}"

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Reporter:
    """Collects the diagnostics of one file, located by field path or by explicit position.

    Every builder of diagnostics uses this one argument order: ``(severity,) code, field,
    message``, with ``line`` / ``column`` as keywords when the caller knows them (a dataset
    line, a YAML mark). Without a ``line`` the field is looked up in ``positions`` (the
    loader's map; the nearest written ancestor for defaults), or is 0:0 when there is none.

    Attributes:
        file: The file every diagnostic is about, as the user named it.
        positions: The loader's field positions, or None when there are none (dataset files).
        diagnostics: What was recorded, in order.
    """

    def __init__(self, file: str, positions: Positions | None = None) -> None:
        self.file = file
        self.positions = positions
        self.diagnostics: list[Diagnostic] = []

    def error(
        self,
        code: str,
        field: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        """Records an error (see :meth:`add`)."""
        self.add("error", code, field, message, line=line, column=column)

    def warning(
        self,
        code: str,
        field: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        """Records a warning (see :meth:`add`)."""
        self.add("warning", code, field, message, line=line, column=column)

    def add(
        self,
        severity: Severity,
        code: str,
        field: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        """Records one diagnostic.

        Args:
            severity: ``error`` or ``warning``.
            code: A key of :data:`CODES`.
            field: Dotted field path (``""`` for the file as a whole).
            message: What is wrong and how to fix it.
            line: 1-based line; None locates ``field`` through ``positions``.
            column: 1-based column (0 when unknown); with no ``line`` it comes from the lookup.
        """
        self.append(self.make(severity, code, field, message, line=line, column=column))

    def make(
        self,
        severity: Severity,
        code: str,
        field: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> Diagnostic:
        """The diagnostic :meth:`add` would record, without recording it."""
        if line is None:
            line, found = locate(self.positions, field) if self.positions is not None else (0, 0)
            column = found if column is None else column
        return Diagnostic(severity, code, self.file, line, column or 0, field, message)

    def append(self, diagnostic: Diagnostic) -> None:
        """Records a diagnostic built elsewhere (subclasses may cap or count here)."""
        self.diagnostics.append(diagnostic)


def locate(positions: Positions, path: str) -> tuple[int, int]:
    """Position of ``path``, else of its nearest ancestor that is written in the file."""
    while path:
        if path in positions:
            return positions[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return positions.get("", (1, 1))


def has_errors(diagnostics: list[Diagnostic], strict: bool = False) -> bool:
    """True when any diagnostic blocks (warnings block too under ``strict``)."""
    return any(d.severity == "error" or strict for d in diagnostics)


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.column, d.code)


def shorten(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters, cut with ``...`` when longer."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice (prefix matches count), else ``""``."""
    options = [str(c) for c in choices]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close and word:
        close = [c for c in options if c.lower().startswith(word.lower())][:1]
    return f"; did you mean '{close[0]}'?" if close else ""
