"""The one place where a command's :class:`~gateway.tools.exit_codes.CliError` becomes output.

Every ``gateway`` command runs inside :class:`GatewayGroup` (the root command group), whose
``invoke`` catches a :class:`CliError` from any sub-command, prints it on stderr and exits with
its code. For people (:func:`render`): ``error (status): message`` in red, every problem on its
own line, the details (e.g. the flag as it is now), then ``what to do: hint``. With ``--json``
(any command's ``--json`` option, remembered by :func:`remember_json` in the command context's
shared ``meta``): one JSON object on one line, :meth:`CliError.to_json`. No traceback is ever
printed. The same group makes every command's help plain
(:func:`~gateway.tools.cli.help_format.plain_help`).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from gateway.tools.cli.help_format import plain_help
from gateway.tools.exit_codes import CliError

__all__ = ["JSON_META_KEY", "GatewayGroup", "remember_json", "render", "report"]

JSON_META_KEY = "gateway.as_json"
"""Key in ``typer.Context.meta`` (shared by nested contexts): the command was given ``--json``."""


def remember_json(ctx: typer.Context, value: bool) -> bool:
    """The ``--json`` option's callback: errors of this run are reported as JSON too."""
    if value:
        ctx.meta[JSON_META_KEY] = True
    return value


def render(error: CliError, console: Console) -> None:
    """``error`` for people on ``console``: message, problems, details, hint."""
    where = f" ({error.status})" if error.status is not None else ""
    console.print(Text(f"error{where}: {error.message}", style="bold red"))
    for problem in error.problems:
        console.print(Text(f"  - {problem}"))
    for detail in error.details:
        console.print(detail, soft_wrap=False)
    if error.hint:
        console.print(Text(f"what to do: {error.hint}"))


def report(error: CliError, *, as_json: bool) -> None:
    """Print ``error`` on stderr: one JSON line with ``as_json``, else :func:`render`.

    Lines are never wrapped when stderr is not a terminal, so each stays greppable whole.
    """
    if as_json:
        typer.echo(json.dumps(error.to_json()), err=True)
        return
    console = Console(stderr=True, highlight=False)
    console.soft_wrap = not console.is_terminal
    render(error, console)


class GatewayGroup(TyperGroup):
    """The root command group: a :class:`CliError` from any command is reported here, once;
    help is plain (:func:`plain_help`; with the app's ``rich_markup_mode=None``, click's own
    help layout, which wraps at the terminal's width and never cuts a default short)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain_help(self)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context, not exported
        """Run the command; a :class:`CliError` becomes stderr output and its exit code."""
        try:
            return super().invoke(ctx)
        except CliError as exc:
            report(exc, as_json=bool(ctx.meta.get(JSON_META_KEY)))
            raise typer.Exit(exc.exit_code) from None
