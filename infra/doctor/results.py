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
        blocked_by: For a check skipped because an earlier one did not pass: that root cause
            (the earlier check's name, or what failed). Empty otherwise.
    """

    check: str
    status: Status
    detail: str
    fix: str = ""
    blocked_by: str = ""

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


def blocked(names: list[str], why: str, cause: str = "") -> Iterator[CheckResult]:
    """``cannot-check`` for each named check, because an earlier check (``cause``) or a call
    (``why``) did not pass: one root cause, printed as one line (:func:`print_results`)."""
    for name in names:
        yield CheckResult(
            name,
            CANNOT_CHECK,
            f"skipped: {why}",
            "fix the failure above, then re-run",
            blocked_by=cause or why,
        )


class GroupedPrinter:
    """Prints results as they arrive, one line per root cause: the checks an earlier failure
    blocked are gathered into a single line under it instead of one line each."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._pending: list[CheckResult] = []

    def add(self, result: CheckResult) -> None:
        """Prints ``result`` (or holds it, when it joins the current blocked group)."""
        if self._pending and result.blocked_by != self._pending[0].blocked_by:
            self.flush()
        if result.blocked_by:
            self._pending.append(result)
            return
        print_result(result, self.console)

    def flush(self) -> None:
        """Prints the held group of blocked checks as one line."""
        if not self._pending:
            return
        group, self._pending = self._pending, []
        names = ", ".join(r.check for r in group)
        why = group[0].detail.removeprefix("skipped: ")
        self.console.print(
            f"    [yellow]not checked[/] ({len(group)}): {escape(names)} [dim](blocked: {escape(why)}; re-run after the fix above)[/]"
        )


def first_line(e: BaseException) -> str:
    """The first line of an error's message (API errors carry long JSON bodies after it)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
