"""How ``gateway ... --help`` reads: click's plain layout, without typer's type column.

Typer shows every parameter's Python type as ``<bool>``, ``<str>``, ``<int range>`` next to it,
which crowds an 80-column help and pushes defaults past the edge. :func:`plain_help` names each
value the way click always did (``--url TEXT``, ``--config PATH``), shows nothing for flags, and
names arguments in capitals; with the app's ``rich_markup_mode=None`` click's help formatter
wraps the rest at the terminal's width, defaults included, without cutting them.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

__all__ = ["plain_help"]

_METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}
"""What an option's value is called in help, by its Python type (click's classic names)."""


class _Argument(TyperArgument):
    """An argument whose help row shows its name and help, without a ``<type>`` column."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def plain_help(command: Any) -> None:
    """Help without typer's ``<bool>``/``<str>`` type column, for ``command`` and every command
    below it: an option that takes a value shows it as ``TEXT``, ``INTEGER``, ``NUMBER`` or
    ``PATH`` (unless it declares its own ``metavar``), a flag and ``--help`` show nothing, an
    argument is named in capitals (``ROUTE``) without a type."""
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
        elif isinstance(param, TyperOption) and param.metavar is None:
            bare = "" if param.is_flag else param.bare_type()
            bare = bare.removeprefix("list[").removesuffix("]")  # repeatable: one value each
            param.metavar = _METAVARS.get(bare, bare.upper())
