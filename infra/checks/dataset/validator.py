"""The state of one validation pass over a file (or a worker's range of it).

:class:`Validator` counts examples, tokens and format runs, merges ranges validated apart,
judges what needs the whole file (mixed formats, Llama 4's dropped text examples, an empty
file) and is the one place the dataset diagnostics are made (:meth:`Validator.add`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainer import formats

from infra import catalog
from infra.checks.dataset.reading import MAX_LINE_BYTES
from infra.checks.report import FileSummary
from infra.diagnostics import Diagnostic, Reporter, Severity

#: Diagnostics of one code shown per file; the rest are summed up in one closing line.
MAX_PER_CODE = 50


@dataclass
class Validator(Reporter):
    """What one pass found so far; :meth:`finish` turns it into a summary and diagnostics.

    A :class:`~infra.diagnostics.Reporter` for one dataset file (diagnostics located by line),
    whose :meth:`append` caps each code at MAX_PER_CODE shown.
    """

    file: str
    model: catalog.Model | None
    tokenizer: Any
    max_seq_length: int | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    positions: None = None  # dataset diagnostics carry their line; no field positions
    examples: int = 0
    nonblank: int = 0
    tokens: int = 0
    # Runs of consecutive examples of one format family: [family, first line, count, lines];
    # "lines" samples up to MAX_PER_CODE + 1 of them. Mixed formats are judged in finish(),
    # so that ranges validated apart can be merged first.
    runs: list[list[Any]] = field(default_factory=list)
    bom_line: int = 1  # the line a byte-order mark would start (0: this range has none)
    formats: dict[str, None] = field(default_factory=dict)
    image_buckets: set[str] = field(default_factory=set)
    image_examples: int = 0
    text_only: int = 0
    first_text_only: int = 0
    inexact: bool = False
    shown: dict[str, int] = field(default_factory=dict)
    hidden: dict[str, tuple[Severity, int, int]] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        """The format family the file started with (None before the first example)."""
        return self.runs[0][0] if self.runs else None

    def append(self, d: Diagnostic, hidden: int = 1) -> None:
        """Keeps ``d`` unless MAX_PER_CODE of its code are shown; then only counts it."""
        n = self.shown.get(d.code, 0)
        if n >= MAX_PER_CODE:
            sev, first, count = self.hidden.get(d.code, (d.severity, d.line, 0))
            self.hidden[d.code] = (sev, min(first, d.line), count + hidden)
            return
        self.shown[d.code] = n + 1
        self.diagnostics.append(d)

    def run(self, family: str, line: int, count: int) -> None:
        """Records ``count`` consecutive examples of ``family`` from ``line`` on."""
        last = self.runs[-1] if self.runs else None
        if last is None or last[0] != family:
            last = [family, line, 0, []]
            self.runs.append(last)
        last[2] += count
        room = MAX_PER_CODE + 1 - len(last[3])
        if room > 0:
            last[3].extend(range(line, line + min(count, room)))

    def partial(self, lines: int) -> dict[str, Any]:
        """What a worker hands back for :meth:`merge` (plain data, picklable)."""
        keep = (
            "diagnostics",
            "examples",
            "nonblank",
            "tokens",
            "runs",
            "formats",
            "image_buckets",
            "image_examples",
            "text_only",
            "first_text_only",
            "inexact",
            "hidden",
        )
        return {"lines": lines, **{k: getattr(self, k) for k in keep}}

    def merge(self, part: dict[str, Any], offset: int) -> None:
        """Adds a range validated elsewhere whose first line is ``offset + 1``."""
        for d in part["diagnostics"]:
            self.append(dataclasses.replace(d, line=d.line + offset))
        for code, (sev, first, count) in part["hidden"].items():
            d = self.make(sev, code, "", "", line=first + offset, column=1)
            self.shown[code] = max(self.shown.get(code, 0), MAX_PER_CODE)
            self.append(d, hidden=count)
        for fam, line, count, sample in part["runs"]:
            last = self.runs[-1] if self.runs else None
            if last is None or last[0] != fam:
                last = [fam, line + offset, 0, []]
                self.runs.append(last)
            last[2] += count
            last[3].extend(x + offset for x in sample[: MAX_PER_CODE + 1 - len(last[3])])
        for k in ("examples", "nonblank", "tokens", "image_examples", "text_only"):
            setattr(self, k, getattr(self, k) + part[k])
        self.formats.update(part["formats"])
        self.image_buckets |= part["image_buckets"]
        self.inexact = self.inexact or part["inexact"]
        if part["first_text_only"] and not self.first_text_only:
            self.first_text_only = part["first_text_only"] + offset

    def oversized(self, lineno: int) -> None:
        """A line over MAX_LINE_BYTES, skipped unread."""
        self.nonblank += 1
        self.add(
            "error",
            "line-too-long",
            "",
            f"line is over {MAX_LINE_BYTES // (1 << 20)} MiB; JSONL lines this long are not read (one example per line, images in Cloud Storage)",
            line=lineno,
            column=1,
        )

    def accept(
        self,
        lineno: int,
        fmt: str,
        tokens: int,
        exact: bool,
        has_images: bool,
        *,
        count: int = 1,
        too_long: list[tuple[int, int]] | None = None,
    ) -> None:
        """Accepts ``count`` examples of ``fmt`` from line ``lineno`` on, ``tokens`` in all.

        ``too_long``: (index from ``lineno``, tokens) of the examples over the model's limit;
        None judges the one example by ``tokens``.
        """
        self.examples += count
        self.tokens += tokens
        if not exact:
            self.inexact = True
        if fmt not in self.formats:
            self.formats[fmt] = None
        self.run(formats.FAMILY[fmt], lineno, count)
        if has_images:
            self.image_examples += count
        else:
            self.text_only += count
            if not self.first_text_only:
                self.first_text_only = lineno
        if too_long is None:
            limit = self.max_seq_length
            too_long = [(0, tokens)] if limit is not None and tokens > limit else []
        for i, t in too_long:
            self.too_long(lineno + i, t, exact)

    def too_long(self, lineno: int, tokens: int, exact: bool) -> None:
        """An example over the model's limit: an error when counted, a warning when estimated."""
        if exact:
            self.add(
                "error",
                "sequence-too-long",
                "",
                f"{tokens} tokens, over the model's limit of {self.max_seq_length}; Vertex rejects or truncates it",
                line=lineno,
                column=1,
            )
        else:
            self.add(
                "warning",
                "sequence-too-long",
                "",
                f"about {tokens} tokens (estimated; set the dataset's tokenizer for an exact count), over the model's limit of {self.max_seq_length}",
                line=lineno,
                column=1,
            )

    def finish(self, summary: FileSummary, sha256: str) -> tuple[FileSummary, list[Diagnostic]]:
        """Judges the whole file, fills in ``summary`` and returns the sorted diagnostics."""
        if self.nonblank == 0:
            self.add("error", "empty-dataset", "", "the file holds no examples", line=1, column=1)
        model = self.model
        if (
            model is not None
            and model.id in catalog.DROPS_TEXT_WHEN_IMAGES
            and self.image_examples
            and self.text_only
        ):
            total = self.image_examples + self.text_only
            self.add(
                "warning",
                "text-examples-dropped",
                "",
                f"{self.text_only} of {total} examples are text-only and {self.image_examples} have images: {model.display_name} tuning drops all {self.text_only} text-only examples when any example has an image (first text-only example here)",
                line=self.first_text_only,
                column=1,
            )
        if self.runs:
            family, first_line = self.runs[0][0], self.runs[0][1]
            for fam, _, count, sample in self.runs[1:]:
                if fam == family:
                    continue
                msg = f"this example is {fam}, but the file started as {family} on line {first_line}; one file holds one format"
                for line in sample:
                    self.add("error", "mixed-formats", "", msg, line=line, column=1)
                if count > len(sample):  # beyond the sample: counted, located at its end
                    d = self.make("error", "mixed-formats", "", "", line=sample[-1], column=1)
                    self.shown["mixed-formats"] = MAX_PER_CODE
                    self.append(d, hidden=count - len(sample))
        for code, (sev, first, count) in self.hidden.items():
            self.diagnostics.append(
                self.make(
                    sev,
                    code,
                    "",
                    f"{count} more line(s) with {code} not shown (first here)",
                    line=first,
                    column=1,
                )
            )
        summary.examples = self.examples
        summary.tokens = self.tokens
        summary.tokens_exact = self.examples > 0 and self.tokenizer is not None and not self.inexact
        summary.formats = list(self.formats)
        summary.image_buckets = sorted(self.image_buckets)
        summary.sha256 = sha256
        summary.checked = True
        summary.text_only_examples = self.text_only
        summary.image_examples = self.image_examples
        self.diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
        return summary, self.diagnostics
