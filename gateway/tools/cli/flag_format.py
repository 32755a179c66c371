"""How ``gateway flags`` reads and writes flag values: weights, change summaries, tables.

Weights are percentages (``25%``, ``0.5%``, ``0.001%`` is the smallest step) or raw weights in
thousandths of a percent (``25000`` is 25%), as the flag's ``weight`` is defined (docs/concepts.md).

Everything here takes values and returns values (strings, ``rich`` tables); printing them is
the commands' business (:mod:`gateway.tools.cli.flags`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

__all__ = [
    "RAW_WEIGHT",
    "TARGETING_LISTS",
    "describe_change",
    "flag_table",
    "format_weight",
    "history_table",
    "parse_weight",
    "replicas_summary",
    "routes_table",
]

RAW_WEIGHT = re.compile(r"\d+")
"""A weight written as a bare integer: thousandths of a percent."""

TARGETING_LISTS = ("candidate_subjects", "fallback_subjects", "candidate_keys", "fallback_keys")
"""The flag's targeting lists, in the order the tables show them."""

_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%")


def parse_weight(text: str) -> int:
    """A weight from a percentage (``25%`` -> 25000, ``0.5%`` -> 500, ``0.001%`` -> 1) or a raw
    weight in thousandths of a percent (``25000`` -> 25000).

    Raises:
        typer.BadParameter: anything else, more than three decimals, or outside 0%..100%
            (0..100000); the message explains both accepted forms.
    """
    value = text.strip()
    percent = _PERCENT.fullmatch(value)
    if percent is not None:
        scaled = Decimal(percent.group(1)) * 1000
        if scaled != scaled.to_integral_value():
            raise typer.BadParameter(_weight_help(text, "0.001% is the smallest step"))
        weight = int(scaled)
    elif RAW_WEIGHT.fullmatch(value) is not None:
        weight = int(value)
    else:
        raise typer.BadParameter(_weight_help(text, "not a weight"))
    from gateway.config import MAX_WEIGHT  # noqa: PLC0415 -- pydantic: only when parsing a weight

    if weight > MAX_WEIGHT:
        raise typer.BadParameter(_weight_help(text, "above 100%"))
    return weight


def _weight_help(text: str, problem: str) -> str:
    from gateway.config import MAX_WEIGHT  # noqa: PLC0415

    return (
        f"{text!r}: {problem}. Give a percentage from 0% to 100% (e.g. 25% or 0.5%, at most "
        f"three decimals) or a raw weight in thousandths of a percent from 0 to {MAX_WEIGHT} "
        "(e.g. 25000 for 25%)."
    )


def format_weight(weight: int) -> str:
    """A weight (thousandths of a percent) as a percentage: 25000 -> ``25%``, 500 -> ``0.5%``."""
    sign = "-" if weight < 0 else ""
    whole, frac = divmod(abs(weight), 1000)
    decimals = f"{frac:03d}".rstrip("0")
    return f"{sign}{whole}{'.' + decimals if decimals else ''}%"


def describe_change(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """A one-line summary of what changed between two flag states (JSON objects).

    E.g. ``weight 10% -> 100%``, ``active -> rolled_back, rollout initial -> ro_...``,
    ``candidate_subjects +alice -bob``; ``-`` when nothing visible changed.
    """
    if before is None:
        return (
            f"registered: {after.get('status')}, "
            f"{'enabled' if after.get('enabled') else 'disabled'}, "
            f"weight {format_weight(int(after.get('weight', 0)))}"
        )
    parts: list[str] = []
    if before.get("status") != after.get("status"):
        parts.append(f"{before.get('status')} -> {after.get('status')}")
    if before.get("enabled") != after.get("enabled"):
        parts.append("enabled -> disabled" if before.get("enabled") else "disabled -> enabled")
    if before.get("weight") != after.get("weight"):
        old, new = int(before.get("weight", 0)), int(after.get("weight", 0))
        parts.append(f"weight {format_weight(old)} -> {format_weight(new)}")
    if before.get("rollout_id") != after.get("rollout_id"):
        parts.append(f"rollout {before.get('rollout_id')} -> {after.get('rollout_id')}")
    old_t, new_t = before.get("targeting") or {}, after.get("targeting") or {}
    for name in TARGETING_LISTS:
        old_set, new_set = set(old_t.get(name, ())), set(new_t.get(name, ()))
        if old_set != new_set:
            added = " ".join("+" + v for v in sorted(new_set - old_set))
            removed = " ".join("-" + v for v in sorted(old_set - new_set))
            parts.append(" ".join(p for p in (name, added, removed) if p))
    return ", ".join(parts) or "-"


def _local_time(at: float) -> str:
    """Unix seconds as local ISO time (``-`` for 0, the routes file's initial state)."""
    if not at:
        return "-"
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _names(values: Sequence[str]) -> str:
    return ", ".join(sorted(values)) or "-"


def flag_table(flag: Mapping[str, Any], *, source: str | None = None) -> Table:
    """One flag (the admin API's JSON) as a two-column table: field, value; ``source`` (the
    ``x-gateway-flag-source`` header) adds a row when given."""
    table = Table(title=Text(f"flag {flag.get('route')}"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    weight = int(flag.get("weight", 0))
    targeting = flag.get("targeting") or {}
    rows = [
        ("route", flag.get("route")),
        ("status", flag.get("status")),
        ("enabled", "yes" if flag.get("enabled") else "no"),
        ("weight", f"{format_weight(weight)} ({weight})"),
        ("rollout id", flag.get("rollout_id")),
        ("version", flag.get("version")),
        ("salt", flag.get("salt")),
        ("updated by", flag.get("updated_by")),
        ("updated at", _local_time(float(flag.get("updated_at") or 0))),
        ("reason", flag.get("reason")),
        *((name.replace("_", " "), _names(targeting.get(name, ()))) for name in TARGETING_LISTS),
    ]
    if flag.get("candidate_model"):
        rows.insert(5, ("candidate model", flag.get("candidate_model")))
    if source is not None:
        rows.append(("source", _SOURCE_WORDS.get(source, source)))
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    return table


_SOURCE_WORDS = {
    "store": "store",
    "snapshot": "snapshot (the store lacks or is behind this replica's state; a restore is due)",
    "routes_file": "routes file (never written)",
}


def replicas_summary(replicas: Sequence[Mapping[str, Any]]) -> str:
    """Who serves which version of a route: ``3 at v7``, ``2 at v7; gw-b at v6 (lagging)``;
    ``-`` without heartbeats. A replica serving its own snapshot (or nothing) says so."""
    if not replicas:
        return "-"
    current = [r for r in replicas if not r.get("lagging")]
    parts = []
    if current:
        versions = sorted({str(r.get("version")) for r in current})
        parts.append(f"{len(current)} at v{'/v'.join(versions)}")
    parts += [
        f"{r.get('replica')} at v{r.get('version')} (lagging)" for r in replicas if r.get("lagging")
    ]
    parts += [
        f"{r.get('replica')} from {r.get('source')}"
        for r in replicas
        if r.get("source") in ("snapshot", "none")
    ]
    return "; ".join(parts)


def routes_table(routes: Sequence[Mapping[str, Any]]) -> Table:
    """``GET /admin/routes`` as a table: one row a route, with per-variant request counts and
    the versions the live replicas serve (:func:`replicas_summary`)."""
    table = Table(title="routes")
    for column in ("route", "status", "enabled", "weight", "rollout id", "version"):
        table.add_column(column)
    table.add_column("candidate (requests/errors)")
    table.add_column("fallback (requests/errors)")
    table.add_column("replicas")
    for route in routes:
        flag = route.get("flag") or {}
        variants = route.get("variants") or {}

        def variant(name: str, variants: Mapping[str, Any] = variants) -> str:
            v = variants.get(name) or {}
            return f"{name} {v.get('requests', 0)}/{v.get('errors', 0)}"

        table.add_row(
            Text(str(route.get("name"))),
            Text(str(flag.get("status", "unknown"))),
            "-" if not flag else "yes" if flag.get("enabled") else "no",
            "-" if not flag else format_weight(int(flag.get("weight", 0))),
            Text(str(flag.get("rollout_id", "-"))),
            str(flag.get("version", "-")),
            Text(variant(str(route.get("candidate")))),
            Text(variant(str(route.get("fallback")))),
            Text(replicas_summary(route.get("replicas") or [])),
        )
    return table


def _describe_entry(entry: Mapping[str, Any]) -> str:
    """What an audit entry changed; a restore says which version came back over what."""
    before, after = entry.get("before"), entry.get("after") or {}
    if entry.get("action") == "restore":
        had = "no flag" if not before else f"v{before.get('version')}"
        return f"restored v{after.get('version')} ({after.get('status')}) over {had}"
    return describe_change(before, after)


def history_table(route: str, entries: Sequence[Mapping[str, Any]]) -> Table:
    """Audit entries as a table, in the order given: when, who, how, what changed, why."""
    table = Table(title=Text(f"history of {route}, newest first"))
    for column in ("when", "actor", "trigger", "action", "change", "reason"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            _local_time(float(entry.get("at") or 0)),
            Text(str(entry.get("actor"))),
            Text(str(entry.get("trigger"))),
            Text(str(entry.get("action"))),
            Text(_describe_entry(entry)),
            Text(str(entry.get("reason"))),
        )
    return table
