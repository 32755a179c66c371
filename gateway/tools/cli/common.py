"""What the ``gateway`` sub-commands share: defaults, options, command groups, output.

Results go to stdout: tables for people (:func:`print_table`: whole values, one row a line,
tab-separated when stdout is not a terminal) and JSON for scripts (``--json``,
:func:`print_json`). Failures are raised as :class:`~gateway.tools.exit_codes.CliError` and
reported on stderr in one place (:mod:`gateway.tools.cli.failure`). No traceback is ever printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from gateway.tools.cli.failure import remember_json
from gateway.tools.exit_codes import RejectedError, UsageError

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_URL",
    "AsJson",
    "ConfigOpt",
    "command_group",
    "load_routes",
    "print_json",
    "print_table",
    "table_lines",
]

DEFAULT_URL = "http://127.0.0.1:8000"
"""The gateway ``gateway serve`` and ``gateway demo`` start by default (``GATEWAY_URL``)."""

DEFAULT_CONFIG = Path("config/gateway.yaml")
"""The routes file (``GATEWAY_CONFIG``)."""

AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON for scripts (an error: one JSON line on stderr).",
        callback=remember_json,
    ),
]
"""The ``--json`` option: results as JSON on stdout, an error as one JSON object on stderr."""
ConfigOpt = Annotated[
    Path, typer.Option("--config", envvar="GATEWAY_CONFIG", help="The routes file.")
]


def command_group(name: str, help_text: str) -> typer.Typer:
    """A sub-command group: help when called bare, no shell completion, no rich tracebacks."""
    return typer.Typer(
        name=name,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def print_json(data: Any, *, indent: int | None = 2, stderr: bool = False) -> None:
    """``data`` as JSON on one stream (stdout unless ``stderr``), ending in a newline."""
    (sys.stderr if stderr else sys.stdout).write(json.dumps(data, indent=indent) + "\n")


def _plain(cell: RenderableType) -> str:
    """A table cell as plain text on one line (markup in ``str`` cells is rich's, as printed)."""
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        text = Text.from_markup(cell).plain
    else:
        text = str(cell)
    return " ".join(text.split())


def table_lines(table: Table) -> Iterable[str]:
    """``table`` as tab-separated lines, every value whole: the header (when the table shows
    one), then one line a row. Tabs and newlines inside a value become spaces."""
    columns = table.columns
    if table.show_header:
        yield "\t".join(_plain(column.header) for column in columns)
    cells = [list(column.cells) for column in columns]
    for row in range(table.row_count):
        yield "\t".join(_plain(column[row]) if row < len(column) else "" for column in cells)


def _is_tty(console: Console) -> bool:
    """Whether ``console`` writes to a terminal (the file's own answer: ``FORCE_COLOR``, which
    asks for colour, does not make a pipe a terminal)."""
    try:
        return console.file.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table`` for people (a ``rich`` table) on a terminal; otherwise, for scripts and
    pipes, as :func:`table_lines` (whole values: ``gateway flags list | grep ROUTE`` finds the
    route, where a table sized to 80 columns would cut it)."""
    out = console or Console(highlight=False)
    if _is_tty(out):
        out.print(table)
        return
    out.file.write("".join(line + "\n" for line in table_lines(table)))  # tabs kept as tabs


def load_routes(path: Path, *, where: str = "--config (GATEWAY_CONFIG)") -> GatewayConfig:
    """The routes file at ``path``, resolved.

    Raises:
        UsageError: ``path`` cannot be opened (exit 2: give ``where`` another path).
        RejectedError: the file has problems (exit 1), every one listed
            (:func:`gateway.config.check_config`).
    """
    from gateway.config import check_config  # noqa: PLC0415 -- keep `gateway --help` fast

    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot read the routes file {path} ({exc.strerror})", f"give {where} a routes file"
        ) from None
    config, problems = check_config(path)
    if config is None:
        raise RejectedError(
            f"{path}: invalid routes file ({len(problems)} problem(s))",
            "fix every problem listed (gateway check-config PATH checks the file alone)",
            code="invalid_config",
            problems=problems,
        )
    return config
