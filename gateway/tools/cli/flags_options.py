"""What every ``gateway flags`` command shares: the command group, its options, its errors.

:func:`session` opens an :class:`~gateway.tools.admin_client.AdminClient` and turns any
:class:`~gateway.tools.admin_client.AdminAPIError` into output on stderr (the gateway's message, the
flag as it is now on a conflict, what to do; one JSON object with ``--json``) and the error's
exit code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from gateway.tools.cli.common import command_group
from gateway.tools.cli.flag_format import RAW_WEIGHT, flag_table, format_weight, parse_weight
from gateway.tools.exit_codes import EXIT_CONFLICT

if TYPE_CHECKING:  # httpx: imported when a command opens a session
    from gateway.tools.admin_client import AdminClient

__all__ = [
    "EXIT_HELP",
    "AdminKey",
    "Reason",
    "RouteArg",
    "Url",
    "flags_app",
    "session",
    "weight_option",
]

EXIT_HELP = (
    "Exit codes: 0 ok; 1 rejected by the gateway (400/404/422); 2 usage; "
    "3 gateway unreachable or 5xx; 4 conflict (409); 5 admin key missing or wrong (401/403)."
)

flags_app = command_group(
    "flags", "Read and change a running gateway's flags (admin API). " + EXIT_HELP
)

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="GATEWAY_URL", help="The gateway's base URL (without /v1).", metavar="URL"
    ),
]
AdminKey = Annotated[
    str | None,
    typer.Option(
        "--admin-key",
        envvar="GATEWAY_ADMIN_KEY",
        help="An admin key (one of the gateway's GATEWAY_ADMIN_KEYS). Prefer the variable.",
        show_default=False,
        show_envvar=True,
        metavar="KEY",
    ),
]
RouteArg = Annotated[str, typer.Argument(help="The route name, e.g. support-triage.")]


def _reason_callback(value: str) -> str:
    if not value.strip():
        raise typer.BadParameter("say why (it goes into the audit), e.g. --reason 'ramp to 25%'")
    return value.strip()


Reason = Annotated[
    str,
    typer.Option(
        "--reason", help="Why (required; recorded in the audit).", callback=_reason_callback
    ),
]


def _parse_weight_option(text: str) -> int:
    """:func:`parse_weight`, plus a note on stderr when ``--weight 25`` probably meant 25%."""
    weight = parse_weight(text)
    if 0 < weight <= 100 and RAW_WEIGHT.fullmatch(text.strip()):
        Console(stderr=True, highlight=False).print(
            Text(
                f"note: {text.strip()} is a raw weight, {format_weight(weight)}; "
                f"write {text.strip()}% for {text.strip()} percent"
            )
        )
    return weight


def weight_option(help_text: str) -> Any:
    """A ``--weight`` option that takes a percentage or a raw weight (:func:`parse_weight`)."""
    return typer.Option("--weight", parser=_parse_weight_option, help=help_text, metavar="WEIGHT")


@contextmanager
def session(
    url: str,
    admin_key: str | None,
    *,
    conflict_hint: str | None = None,
    route: str | None = None,
) -> Iterator[AdminClient]:
    """An :class:`AdminClient`; an :class:`AdminAPIError` leaves with the command's advice
    (the root group reports it, as JSON when the command got ``--json``).

    ``conflict_hint`` replaces the generic advice for a 409, when the command knows better; a
    409 ``rolled_back`` (the latch refused the change) always says to release ``route`` first.
    """
    from gateway.tools.admin_client import AdminAPIError, AdminClient  # noqa: PLC0415

    try:
        with AdminClient(url, admin_key) as client:
            yield client
    except AdminAPIError as exc:
        if exc.code == "rolled_back":
            exc.hint = (
                f"the flag is rolled back; release it first: gateway flags release "
                f"{route or 'ROUTE'} --reason ... (only release re-arms it; nothing was written)"
            )
        elif exc.exit_code == EXIT_CONFLICT and conflict_hint is not None:
            exc.hint = conflict_hint
        if exc.current is not None:
            exc.details = ["current state:", flag_table(exc.current)]
        raise
