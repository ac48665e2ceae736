"""Validation of a spec and its datasets: everything ``tunestack validate`` reports.

:func:`validate` loads a spec (:mod:`infra.load`), applies the semantic rules
(:mod:`infra.checks.spec`) and streams every dataset file (:mod:`infra.checks.dataset`),
collecting all diagnostics at once, and summarises what each job will train on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from infra import catalog
from infra.checks import gcs
from infra.checks.dataset import validate_dataset_file, validate_stream
from infra.checks.report import FileSummary, JobSummary, Report
from infra.checks.spec import check_spec
from infra.checks.tokens import TokenizerUnavailable, load_tokenizer
from infra.diagnostics import Diagnostic, Reporter, did_you_mean, has_errors
from infra.gcs import is_remote
from infra.load import Loaded, load_spec
from infra.spec import Spec

__all__ = [
    "FileSummary",
    "JobSummary",
    "Report",
    "validate",
    "validate_dataset_file",
    "resolve_dataset_path",
]

#: Called as (file display name, bytes read so far, total bytes or 0 when unknown).
Progress = Callable[[str, int, int], None]


def validate(
    path: str | Path,
    *,
    strict: bool = False,
    check_datasets: bool = True,
    progress: Progress | None = None,
) -> Report:
    """Validates a spec file and (optionally) every dataset file it names.

    Args:
        path: The YAML spec.
        strict: Warnings count as errors (their severity becomes ``error``).
        check_datasets: Stream the dataset files; False checks the spec alone.
        progress: Called while large dataset files are read (for a progress bar).

    Returns:
        A :class:`Report`; ``ok`` is False when there is any error.
    """
    loaded = load_spec(path)
    display = str(path)
    # A spec whose only shape errors are unknown keys is still checked (without those keys),
    # so every mistake is reported at once; it is never returned as deployable.
    spec = loaded.spec or loaded.partial
    if spec is None:
        diags = _finish(loaded.diagnostics, strict, display)
        return Report(ok=not has_errors(diags), diagnostics=diags, spec=None, path=loaded.path)
    diags = list(loaded.diagnostics) + check_spec(spec, loaded.positions, display)
    files: dict[str, FileSummary] = {}
    if check_datasets:
        files, file_diags = _check_datasets(spec, loaded, display, progress)
        diags += file_diags
    jobs = [_job_summary(spec, i, files) for i in range(len(spec.tuning_jobs))]
    diags = _finish(diags, strict, display)
    return Report(
        ok=not has_errors(diags),
        diagnostics=diags,
        spec=loaded.spec,
        path=loaded.path,
        jobs=jobs,
        files=files,
    )


def resolve_dataset_path(spec_path: Path, uri: str) -> Path:
    """A local dataset path as written in a spec, resolved against the spec file's folder."""
    p = Path(uri).expanduser()
    return p if p.is_absolute() else spec_path.parent / p


# --- helpers -------------------------------------------------------------------------------


def _check_datasets(
    spec: Spec, loaded: Loaded, display: str, progress: Progress | None
) -> tuple[dict[str, FileSummary], list[Diagnostic]]:
    files: dict[str, FileSummary] = {}
    r = Reporter(display, loaded.positions)
    for i, ds in enumerate(spec.datasets):
        jobs = [j for j in spec.tuning_jobs if j.dataset == ds.name]
        models = [m for m in (catalog.model(j.base_model) for j in jobs) if m is not None]
        # One pass serves every job using the file: the strictest model decides (a text-only
        # model's image check wins; the shortest sequence limit applies).
        model = next((m for m in models if not m.supports_images), models[0] if models else None)
        max_seq = min((m.max_seq_length for m in models), default=None)
        tokenizer = None
        if ds.tokenizer:
            try:
                tokenizer = load_tokenizer(ds.tokenizer, loaded.path.parent)
            except TokenizerUnavailable as e:
                r.warning(
                    "tokenizer-unavailable",
                    f"datasets[{i}].tokenizer",
                    f"{e}; token counts are estimated",
                )
        for key in ("train", "validation"):
            uri = getattr(ds, key)
            if uri is None or uri in files:
                continue
            field = f"datasets[{i}].{key}"
            summary, file_diags = _check_file(
                r, loaded, uri, field, model, tokenizer, max_seq, progress
            )
            files[uri] = summary
            r.diagnostics += file_diags
            _image_buckets_declared(r, spec, summary, field)
    return files, r.diagnostics


def _check_file(
    r: Reporter,
    loaded: Loaded,
    uri: str,
    field: str,
    model: catalog.Model | None,
    tokenizer: object,
    max_seq: int | None,
    progress: Progress | None,
) -> tuple[FileSummary, list[Diagnostic]]:
    if uri.startswith("gs://"):
        summary = FileSummary(uri=uri, local_path=None)
        try:
            opened = gcs.open_blob(uri)
        except gcs.Unreachable:
            return summary, []  # no emulator or credentials: the spec-level URI checks stand
        if opened is None:
            r.error("file-not-found", field, f"{uri} does not exist")
            return summary, []
        stream, size = opened
        cb = (lambda n: progress(uri, n, size)) if progress else None
        with stream:
            return validate_stream(
                stream,
                summary,
                display=uri,
                model=model,
                tokenizer=tokenizer,
                max_seq_length=max_seq,
                progress=cb,
            )
    if is_remote(uri) or not uri.strip():
        return FileSummary(
            uri=uri, local_path=None
        ), []  # already an invalid-uri in the spec checks
    path = resolve_dataset_path(loaded.path, uri)
    if not path.is_file() or not stat.S_ISREG(path.stat().st_mode):
        code, what = _not_a_file(path)
        r.error(code, field, f"dataset file {uri} {what} (resolved to {path})")
        return FileSummary(uri=uri, local_path=path), []
    total = path.stat().st_size
    cb = (lambda n: progress(uri, n, total)) if progress else None
    summary, diags = validate_dataset_file(
        path,
        display=_display(path),
        model=model,
        tokenizer=tokenizer,
        max_seq_length=max_seq,
        progress=cb,
    )
    summary.uri = uri
    return summary, diags


def _image_buckets_declared(r: Reporter, spec: Spec, summary: FileSummary, field: str) -> None:
    """Images in undeclared buckets: their IAM grants could not be derived."""
    names = [b.name for b in spec.buckets]
    for b in summary.image_buckets:
        if b not in names:
            r.error(
                "unknown-reference",
                field,
                f"images of {summary.uri} are in bucket {b!r}, which is not declared in buckets: "
                f"(add it, with create: false for an existing bucket, so both service agents get "
                f"read access){did_you_mean(b, names)}",
            )


def _display(path: Path) -> str:
    """A dataset path relative to the working directory when it is below it (shorter messages)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def _job_summary(spec: Spec, index: int, files: dict[str, FileSummary]) -> JobSummary:
    job = spec.tuning_jobs[index]
    ds = next((d for d in spec.datasets if d.name == job.dataset), None)
    f = files.get(ds.train) if ds else None
    examples = f.examples if f else 0
    tokens = f.tokens if f else 0
    return JobSummary(
        name=job.name,
        examples=examples,
        tokens=tokens,
        tokens_exact=bool(f and f.tokens_exact),
        epochs=job.epochs,
        training_tokens=tokens * job.epochs,
        checkpoints=catalog.checkpoints_kept(job.epochs),
        formats=list(f.formats) if f else [],
        checked=bool(f and f.checked),
    )


def _finish(diags: list[Diagnostic], strict: bool, spec_display: str) -> list[Diagnostic]:
    if strict:
        diags = [
            Diagnostic("error", d.code, d.file, d.line, d.column, d.field, d.message)
            if d.severity == "warning"
            else d
            for d in diags
        ]
    order: dict[str, int] = {spec_display: 0}
    for d in diags:
        order.setdefault(d.file, len(order))
    return sorted(diags, key=lambda d: (order[d.file], d.line, d.column, d.code))


def _not_a_file(path: Path) -> tuple[str, str]:
    """The code and words for a dataset path that is not a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return "file-not-found", "is a dangling symlink"
        return "file-not-found", "does not exist"
    except OSError as e:  # ELOOP: a symlink loop; EACCES
        return "file-unreadable", f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(mode):
        return "file-unreadable", "is a directory, not a JSONL file"
    return "file-unreadable", "is not a regular file (a FIFO, socket or device)"
