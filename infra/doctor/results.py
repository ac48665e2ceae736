"""What a doctor check found, and how a list of findings is printed (text or JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from rich.console import Console
from rich.markup import escape

Status = Literal["pass", "fail", "cannot-check"]

PASS: Status = "pass"
FAIL: Status = "fail"
CANNOT_CHECK: Status = "cannot-check"

_MARKS = {PASS: "[green]pass[/]", FAIL: "[red]FAIL[/]", CANNOT_CHECK: "[yellow]cannot-check[/]"}


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report.

    Attributes:
        check: Short stable name of the check (``project``, ``api:aiplatform.googleapis.com``).
        status: ``pass``, ``fail`` or ``cannot-check`` (the check could not run: no
            permission, an earlier check failed, an API it needs is off).
        detail: What was found.
        fix: What to do about it; empty on ``pass``.
    """

    check: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed (cannot-check is shown but does not fail the run), else 1."""
    return 1 if any(r.status == FAIL for r in results) else 0


def print_result(result: CheckResult, console: Console) -> None:
    """One line for the check, its fix indented below it."""
    console.print(
        f"{_MARKS[result.status]} [bold]{escape(result.check)}[/]: {escape(result.detail)}"
    )
    if result.fix:
        console.print(f"    fix: {escape(result.fix)}")


def print_summary(results: list[CheckResult], console: Console) -> None:
    """``N passed, N failed, N could not be checked``."""
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, CANNOT_CHECK)}
    console.print(
        f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[CANNOT_CHECK]} could not be checked"
    )


def blocked(names: list[str], why: str) -> Iterator[CheckResult]:
    """``cannot-check`` for each named check, because an earlier check did not pass."""
    for name in names:
        yield CheckResult(
            name, CANNOT_CHECK, f"skipped: {why}", "fix the failure above, then re-run"
        )


def first_line(e: BaseException) -> str:
    """The first line of an error's message (API errors carry long JSON bodies after it)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
