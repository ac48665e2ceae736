"""What validation found: per-file and per-job summaries and the overall report (data only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.diagnostics import Diagnostic
from infra.spec import Spec


@dataclass
class FileSummary:
    """One dataset file, as streamed.

    Attributes:
        uri: The path or gs:// URI as written in the spec.
        local_path: The resolved local file; None for gs:// files.
        examples: Lines that parsed into an example of a known format.
        tokens: Tokens over all examples (exact with a tokenizer, else an estimate).
        tokens_exact: Whether ``tokens`` was counted with the dataset's tokenizer.
        formats: Formats seen, in order of first appearance.
        image_buckets: Buckets of gs:// images the examples reference, sorted.
        sha256: Hex digest of the file's bytes (computed while streaming); None when unread.
        checked: False when the file could not be read (e.g. gs:// without an emulator).
        bytes: Size of the file in bytes as streamed.
        text_only_examples: Examples with no image.
        image_examples: Examples with at least one image.
    """

    uri: str
    local_path: Path | None
    examples: int = 0
    tokens: int = 0
    tokens_exact: bool = False
    formats: list[str] = field(default_factory=list)
    image_buckets: list[str] = field(default_factory=list)
    sha256: str | None = None
    checked: bool = False
    bytes: int = 0
    text_only_examples: int = 0
    image_examples: int = 0


@dataclass
class JobSummary:
    """What one tuning job will train on and keep.

    Attributes:
        name: The job name.
        examples: Training examples.
        tokens: Tokens in the training set.
        tokens_exact: Whether ``tokens`` is an exact count.
        epochs: Epochs.
        training_tokens: Billed training tokens: tokens x epochs.
        checkpoints: Checkpoints the job keeps: min(epochs, 10).
        formats: Formats of the training file.
        checked: Whether the training file was read (not for gs:// files without an
            emulator, nor with ``check_datasets=False``).
    """

    name: str
    examples: int
    tokens: int
    tokens_exact: bool
    epochs: int
    training_tokens: int
    checkpoints: int
    formats: list[str] = field(default_factory=list)
    checked: bool = False

    def to_json(self) -> dict[str, object]:
        """The job object of ``tunestack validate --format json``."""
        return {
            "name": self.name,
            "examples": self.examples,
            "tokens": self.tokens,
            "tokens_exact": self.tokens_exact,
            "epochs": self.epochs,
            "training_tokens": self.training_tokens,
            "checkpoints": self.checkpoints,
        }


@dataclass
class Report:
    """The outcome of :func:`infra.checks.validate` for one spec file.

    Attributes:
        ok: No errors (and, under ``strict``, no warnings).
        diagnostics: Every finding, spec file first, then dataset files, each by line.
        spec: The parsed spec; None when the file did not load.
        path: The spec file.
        jobs: One summary per tuning job (empty when the spec did not load).
        files: Dataset file summaries keyed by the path or URI as written in the spec.
    """

    ok: bool
    diagnostics: list[Diagnostic]
    spec: Spec | None
    path: Path
    jobs: list[JobSummary] = field(default_factory=list)
    files: dict[str, FileSummary] = field(default_factory=dict)
