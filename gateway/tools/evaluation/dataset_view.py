"""How a dataset validation looks to a person: rich tables of problems, labels and tokens.

:func:`print_validation` writes, in order: a title line (examples, errors, warnings), the
problems table (line, severity, kind, message; a file column when two files are involved),
a note for problems only counted (``--max-per-kind``), the label distribution, the token
summary (with how tokens were counted), and a verdict line.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.tools.evaluation.dataset_result import ValidationResult
from gateway.tools.evaluation.problems import Problem

__all__ = ["ShowTable", "print_problems", "print_validation", "verdict"]

ShowTable = Callable[[Table], None]
"""How a table is printed (the command line passes one that keeps values whole when piped)."""


def verdict(result: ValidationResult) -> Text:
    """``OK: ...`` in green, or ``N error(s): ...`` in red."""
    if result.ok:
        tail = f", {result.warnings} warning(s) to look at" if result.warnings else ""
        return Text(f"OK: {result.file} is ready for fine-tuning{tail}", style="bold green")
    return Text(
        f"{result.errors} error(s) in {result.file}: fix them before fine-tuning",
        style="bold red",
    )


def print_problems(
    console: Console,
    problems: list[Problem],
    omitted: dict[str, int],
    show: ShowTable | None = None,
) -> None:
    """The problems table (nothing when there are none; printed by ``show``, else on
    ``console``) and the note on omitted ones."""
    if problems:
        files = {p.file for p in problems}
        table = Table(title="problems", title_justify="left")
        if len(files) > 1:
            table.add_column("file")
        for column in ("line", "severity", "kind"):
            table.add_column(column, no_wrap=True)
        table.add_column("problem")
        for problem in problems:
            cells: list[RenderableType] = [
                "-" if problem.line is None else str(problem.line),
                Text(problem.severity, style="red" if problem.severity == "error" else "yellow"),
                problem.code,
                Text(problem.message),
            ]
            table.add_row(*([Text(problem.file)] if len(files) > 1 else []), *cells)
        (show or console.print)(table)
    for code, count in sorted(omitted.items()):
        console.print(
            Text(f"... and {count} more '{code}' problem(s) not listed (see --max-per-kind)")
        )


def print_validation(
    console: Console, result: ValidationResult, show: ShowTable | None = None
) -> None:
    """Everything about one file (see the module docstring); tables through ``show`` when
    given."""
    console.print(
        Text(
            f"{result.file}: {result.examples} example(s) in {result.lines} line(s), "
            f"{result.errors} error(s), {result.warnings} warning(s)"
            + (f"; route {result.route}" if result.route else "")
            + (f"; held-out file {result.holdout}" if result.holdout else ""),
            style="bold",
        )
    )
    print_problems(console, result.problems, result.omitted, show)
    if result.labels or result.other_answers:
        table = Table(title="answers (last assistant message)", title_justify="left")
        table.add_column("label")
        table.add_column("examples", justify="right")
        table.add_column("share", justify="right")
        total = max(1, result.examples)
        rows = [*result.labels]
        if result.other_answers:
            rows.append(("(other answers)", result.other_answers))
        for label, count in rows:
            table.add_row(Text(label), str(count), f"{100 * count / total:.1f}%")
        (show or console.print)(table)
    tokens = result.tokens
    if tokens.examples:
        console.print(
            Text(
                f"tokens (approximate): {tokens.total} in total; per example min {tokens.min}, "
                f"mean {tokens.mean:.0f}, max {tokens.max} (line {tokens.max_line})"
            )
        )
        console.print(Text(f"  counted as {tokens.method}", style="dim"))
    console.print(verdict(result))
