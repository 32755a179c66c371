"""``gateway flags``: read and change a running gateway's flags over its admin API.

Commands: ``list``, ``show ROUTE``, ``set ROUTE``, ``rollback ROUTE``, ``release ROUTE``,
``history ROUTE``. Every command takes ``--url`` (``GATEWAY_URL``, default
``http://127.0.0.1:8000``), ``--admin-key`` (``GATEWAY_ADMIN_KEY``; sent as a bearer key, never
printed) and ``--json`` (the API's JSON on stdout, for scripts). Each request carries
``x-gateway-actor: <login name>`` so that the audit says who made a change. Results go to
stdout, errors to stderr (one JSON object there with ``--json``); no traceback is ever printed.

Weights are percentages (``25%``, ``0.5%``, ``0.001%`` is the smallest step) or raw weights in
thousandths of a percent (``25000`` is 25%), as the flag's ``weight`` is defined (docs/concepts.md).

``set`` reads the flag first and writes with ``If-Match: "<version>"``, so that of two admins
racing, the second gets a conflict (exit 4) instead of silently undoing the first one's change.

The parts: :mod:`gateway.tools.admin_client` (the HTTP client and error classification),
:mod:`gateway.tools.cli.flag_format` (weights, change summaries, tables),
:mod:`gateway.tools.cli.flags_options`
(the options and the error handling every command shares) and the commands here.

Exit codes scripts can rely on:

====  ======================================================================================
0     success
1     the gateway rejected the request (400, 404, 422): its message and what to do
2     wrong usage (typer's; also a bad ``--weight`` or ``--url``, a blank ``--reason``, no change)
3     the gateway could not be reached, or answered 5xx (503: the flag store is unavailable)
4     conflict (409): the flag changed since it was read, or is not in the state required
5     authentication (401, 403): no admin key, a wrong one, or a client key
====  ======================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from gateway.tools.cli.common import DEFAULT_URL, AsJson, print_json, print_table
from gateway.tools.cli.flag_format import (
    TARGETING_LISTS,
    describe_change,
    flag_table,
    history_table,
    routes_table,
)
from gateway.tools.cli.flags_options import (
    EXIT_HELP,
    AdminKey,
    Reason,
    RouteArg,
    Url,
    flags_app,
    session,
    weight_option,
)
from gateway.tools.cli.flags_ramp import ramp_app

__all__ = ["flags_app"]

flags_app.add_typer(ramp_app, name="ramp")


@flags_app.command("list", epilog=EXIT_HELP)
def list_routes(
    url: Url = DEFAULT_URL, admin_key: AdminKey = None, as_json: AsJson = False
) -> None:
    """Every route: flag status, weight, rollout id, version, per-variant request counts, and
    the version each live replica serves (a lagging one is named)."""
    with session(url, admin_key) as client:
        routes = client.routes()
    if as_json:
        print_json(routes)
    else:
        print_table(routes_table(routes))


@flags_app.command("show", epilog=EXIT_HELP)
def show(
    route: RouteArg,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """One route's flag as stored now, with its targeting lists and where it comes from
    (store, this replica's snapshot when the store is behind it, or the routes file)."""
    with session(url, admin_key) as client:
        flag, source = client.flag_with_source(route)
    if as_json:
        print_json(flag)
    else:
        print_table(flag_table(flag, source=source))


_SET_HELP = (
    "Change weight, kill switch or targeting, compare-and-set on the flag's version.\n\n"
    "A targeting option replaces that whole list (repeat it for several values). If someone "
    "changed the flag between this command's read and its write, nothing is written: it prints "
    "the current state and exits 4."
)


@flags_app.command("set", help=_SET_HELP, epilog=EXIT_HELP)
def set_flag(
    route: RouteArg,
    reason: Reason,
    weight: Annotated[
        int | None,
        weight_option("Candidate share: 25%, 0.5%, or raw thousandths of a percent (25000)."),
    ] = None,
    enabled: Annotated[
        bool | None,
        typer.Option("--enabled/--disabled", help="Kill switch: --disabled serves the fallback."),
    ] = None,
    target_subject: Annotated[
        list[str] | None,
        typer.Option("--target-subject", help="Subject forced to the candidate (repeatable)."),
    ] = None,
    fallback_subject: Annotated[
        list[str] | None,
        typer.Option("--fallback-subject", help="Subject forced to the fallback (repeatable)."),
    ] = None,
    target_key: Annotated[
        list[str] | None,
        typer.Option("--target-key", help="Client key name forced to the candidate."),
    ] = None,
    fallback_key: Annotated[
        list[str] | None,
        typer.Option("--fallback-key", help="Client key name forced to the fallback."),
    ] = None,
    clear_targeting: Annotated[
        bool,
        typer.Option("--clear-targeting", help="Empty all four targeting lists first."),
    ] = False,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Change weight, kill switch or targeting (see ``_SET_HELP``)."""
    body: dict[str, Any] = {"reason": reason}
    if clear_targeting:
        body.update({name: [] for name in TARGETING_LISTS})
    lists = (target_subject, fallback_subject, target_key, fallback_key)
    given = zip(TARGETING_LISTS, lists, strict=True)
    body.update({name: list(values) for name, values in given if values})
    if weight is not None:
        body["weight"] = weight
    if enabled is not None:
        body["enabled"] = enabled
    if len(body) == 1:
        raise typer.BadParameter(
            "nothing to change: give --weight, --enabled/--disabled, a targeting option "
            "or --clear-targeting"
        )
    hint = (
        "someone else changed the flag after this command read it; nothing was written. "
        "Check the current state above and run the command again if it still applies."
    )
    with session(url, admin_key, conflict_hint=hint, route=route) as client:
        before = client.flag(route)
        after = client.patch(route, int(before["version"]), body)
    _report_write(before, after, as_json)


@flags_app.command("rollback", epilog=EXIT_HELP)
def rollback(
    route: RouteArg,
    reason: Reason,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Send all of the route's traffic to the fallback; latched until `release`.

    Exits 4 if the route is already rolled back.
    """
    hint = f"nothing to do; to re-arm it later: gateway flags release {route} --reason ..."
    with session(url, admin_key, conflict_hint=hint) as client:
        before = client.flag(route)
        after = client.rollback(route, reason)
    _report_write(before, after, as_json)


@flags_app.command("release", epilog=EXIT_HELP)
def release(
    route: RouteArg,
    reason: Reason,
    weight: Annotated[
        int | None, weight_option("Resume at this weight (e.g. 0% to restart the ramp).")
    ] = None,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Re-arm a rolled-back route with a new rollout id (the guard starts from clean counters).

    Exits 4 if the route is not rolled back.
    """
    hint = "only a rolled-back flag can be released; change an active one with `set`"
    with session(url, admin_key, conflict_hint=hint) as client:
        before = client.flag(route)
        after = client.release(route, reason, weight)
    _report_write(before, after, as_json)


@flags_app.command("history", epilog=EXIT_HELP)
def history(
    route: RouteArg,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many entries.")
    ] = 50,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Who changed the route's flag, when, how and why, newest first.

    --json prints the raw audit entries, with the evidence the guard saw.
    """
    with session(url, admin_key) as client:
        entries = client.audit(route, limit)
    entries = sorted(entries, key=lambda e: float(e.get("at") or 0), reverse=True)
    if as_json:
        print_json(entries)
    else:
        print_table(history_table(route, entries))


def _report_write(before: Mapping[str, Any], after: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(after)
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(
        Text(
            f"{after.get('route')}: {describe_change(before, after)} "
            f"(version {before.get('version')} -> {after.get('version')})"
        )
    )
    print_table(flag_table(after), out)
