"""``gateway flags ramp pause|resume|status ROUTE``: steer a route's ramp (progressive delivery).

A route with ``ramp:`` in its routes file climbs its steps by itself: the guard raises the weight
to the next step once the step has its samples and its dwell time and the candidate is shown
not worse than the fallback. ``status`` shows where the ramp is (``GET /admin/routes``:
step, samples at this step, the upper bound against the margin, dwell time left, why it waits);
``pause`` stops the guard from raising the weight; ``resume`` goes back to the step's weight
and counts the step's samples and dwell from then (a ramp that never started starts at its
first step). Exit codes as every ``gateway flags`` command: 1 for a route without a ramp (422
``no_ramp``), 4 to pause a ramp a rollback ended or to resume one (release first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.tools.cli.common import DEFAULT_URL, AsJson, command_group, print_json, print_table
from gateway.tools.cli.flag_format import describe_change, flag_table, format_weight
from gateway.tools.cli.flags_options import EXIT_HELP, AdminKey, Reason, RouteArg, Url, session
from gateway.tools.exit_codes import EXIT_REJECTED

__all__ = ["ramp_app", "ramp_table"]

ramp_app = command_group(
    "ramp",
    "Steer a route's ramp: the guard raises the weight step by step while the candidate is "
    "shown not worse. " + EXIT_HELP,
)


@ramp_app.command("status", epilog=EXIT_HELP)
def status(
    route: RouteArg,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Where the route's ramp is: state, step, samples at this step, the upper bound of the
    candidate's failure rate minus the fallback's against the margin, dwell time left, why."""
    from gateway.tools.admin_client import AdminAPIError  # noqa: PLC0415 -- httpx, when run

    with session(url, admin_key) as client:
        routes = client.routes()
        found = next((r for r in routes if r.get("name") == route), None)
        if found is None:
            raise AdminAPIError(
                EXIT_REJECTED,
                f"No route '{route}'.",
                "run `gateway flags list` to see the routes",
                status=404,
                code="route_not_found",
            )
        ramp = found.get("ramp")
        if ramp is None:
            raise AdminAPIError(
                EXIT_REJECTED,
                f"Route '{route}' has no ramp.",
                "declare ramp: {steps: [...]} on the route in the routes file",
                status=422,
                code="no_ramp",
            )
    if as_json:
        print_json(ramp)
    else:
        print_table(ramp_table(route, ramp))


def ramp_table(route: str, ramp: Mapping[str, Any]) -> Table:
    """A ramp (``GET /admin/routes``'s ``ramp``) as a two-column table for people."""
    steps = [int(s) for s in ramp.get("steps") or []]
    step = int(ramp.get("step") or 0)
    bound = ramp.get("upper_bound")
    margin = float(ramp.get("margin") or 0)
    if bound is None:
        evidence = f"no candidate outcomes yet (margin {margin:g})"
    else:
        relation = "<" if float(bound) < margin else ">="
        evidence = f"{float(bound):.4f} {relation} margin {margin:g}"
    table = Table(title=Text(f"ramp {route}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("state", ramp.get("state")),
        ("step", f"{step + 1} of {len(steps)}" if steps else "-"),
        ("steps", " -> ".join(format_weight(s) for s in steps)),
        ("weight", format_weight(int(ramp.get("weight") or 0))),
        ("samples at this step", f"{ramp.get('samples')} of {ramp.get('min_samples')}"),
        ("upper bound of the difference", evidence),
        ("dwell left", f"{float(ramp.get('dwell_remaining_s') or 0):.0f} s"),
        ("why", ramp.get("why", "-")),
    ]
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    return table


def _steer(
    action: Literal["pause", "resume"], route: str, reason: str, url: str, key: str | None, js: bool
) -> None:
    hint = (
        "a rollback ended this ramp (or it never started); `gateway flags release ROUTE` "
        "restarts it at its first step"
        if action == "pause"
        else None
    )
    with session(url, key, conflict_hint=hint, route=route) as client:
        before = client.flag(route)
        after = client.ramp(route, action, reason)
    if js:
        print_json(after)
        return
    out = Console(highlight=False)
    if after.get("version") == before.get("version"):
        out.print(Text(f"{route}: the ramp is already {'paused' if action == 'pause' else 'on'}"))
    else:
        out.print(
            Text(
                f"{route}: ramp {action}d; {describe_change(before, after)} "
                f"(version {before.get('version')} -> {after.get('version')})"
            )
        )
    out.print(flag_table(after))


@ramp_app.command("pause", epilog=EXIT_HELP)
def pause(
    route: RouteArg,
    reason: Reason,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Pause the route's ramp: the guard stops raising the weight (it still rolls back).

    Exits 4 if no ramp runs (a rollback ended it).
    """
    _steer("pause", route, reason, url, admin_key, as_json)


@ramp_app.command("resume", epilog=EXIT_HELP)
def resume(
    route: RouteArg,
    reason: Reason,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Resume the ramp at its step's weight; the step's samples and dwell count from now. A
    ramp that never started starts at its first step.

    Exits 4 if the route is rolled back (release it first).
    """
    _steer("resume", route, reason, url, admin_key, as_json)
