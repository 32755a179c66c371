"""What the ``gateway`` sub-commands share: defaults, options, command groups, error output.

Results go to stdout, errors to stderr, where :func:`print_error` prints them as people read
them (``error: ...`` in red, then ``what to do: ...``) and :func:`print_json` as scripts do
(``--json``). No traceback is ever printed: each command turns its failures into one of
:mod:`gateway.tools.exit_codes`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.text import Text

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_URL",
    "AsJson",
    "ConfigOpt",
    "command_group",
    "print_error",
    "print_json",
]

DEFAULT_URL = "http://127.0.0.1:8000"
"""The gateway ``gateway serve`` and ``gateway demo`` start by default (``GATEWAY_URL``)."""

DEFAULT_CONFIG = Path("config/gateway.yaml")
"""The routes file (``GATEWAY_CONFIG``)."""

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
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


def print_error(
    message: str,
    hint: str | None,
    *,
    status: int | None = None,
    details: Sequence[RenderableType] = (),
    soft_wrap: bool = False,
) -> None:
    """An error for people on stderr: ``error (status): message``, ``details``, the hint.

    Args:
        message: what went wrong.
        hint: what to do about it (``None``: no hint line).
        status: the HTTP status, shown after ``error`` when given.
        details: printed between the message and the hint (e.g. the current state).
        soft_wrap: keep each line one line when stderr is not a terminal.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=soft_wrap)
    where = f" ({status})" if status is not None else ""
    err.print(Text(f"error{where}: {message}", style="bold red"))
    for detail in details:
        err.print(detail)
    if hint:
        err.print(Text(f"what to do: {hint}"))
