"""``gateway flags``: read and change a running gateway's flags over its admin API.

Commands: ``list``, ``show ROUTE``, ``set ROUTE``, ``rollback ROUTE``, ``release ROUTE``,
``history ROUTE``. Every command takes ``--url`` (``GATEWAY_URL``, default
``http://127.0.0.1:8000``), ``--admin-key`` (``GATEWAY_ADMIN_KEY``; sent as a bearer key, never
printed) and ``--json`` (the API's JSON on stdout, for scripts). Each request carries
``x-gateway-actor: <login name>`` so that the audit says who made a change. Results go to
stdout, errors to stderr (one JSON object there with ``--json``); no traceback is ever printed.

Weights are percentages (``25%``, ``0.5%``, ``0.001%`` is the smallest step) or raw weights in
thousandths of a percent (``25000`` is 25%), as DESIGN.md section 2 defines ``weight``.

``set`` reads the flag first and writes with ``If-Match: "<version>"``, so that of two admins
racing, the second gets a conflict (exit 4) instead of silently undoing the first one's change.

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

import getpass
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.config import MAX_WEIGHT

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFLICT",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AdminAPIError",
    "AdminClient",
    "describe_change",
    "flags_app",
    "format_weight",
    "parse_weight",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFLICT = 4
EXIT_AUTH = 5

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
"""Seconds: an admin call is one small read or write; a hung gateway should fail fast."""

_EXIT_HELP = (
    "Exit codes: 0 ok; 1 rejected by the gateway (400/404/422); 2 usage; "
    "3 gateway unreachable or 5xx; 4 conflict (409); 5 admin key missing or wrong (401/403)."
)
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%")
_RAW = re.compile(r"\d+")
_LISTS = ("candidate_subjects", "fallback_subjects", "candidate_keys", "fallback_keys")

flags_app = typer.Typer(
    name="flags",
    help="Read and change a running gateway's flags (admin API). " + _EXIT_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# -- weights ---------------------------------------------------------------------------------


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
    elif _RAW.fullmatch(value) is not None:
        weight = int(value)
    else:
        raise typer.BadParameter(_weight_help(text, "not a weight"))
    if weight > MAX_WEIGHT:
        raise typer.BadParameter(_weight_help(text, "above 100%"))
    return weight


def _weight_help(text: str, problem: str) -> str:
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


# -- the admin API client ----------------------------------------------------------------------


class AdminAPIError(Exception):
    """A failed admin call, already classified for the command line.

    Attributes:
        exit_code: one of the module's ``EXIT_*`` codes.
        message: what went wrong (the gateway's own message when it sent one).
        hint: what to do about it.
        status: the HTTP status, or ``None`` when no response arrived.
        code: the gateway's ``error.code`` (e.g. ``route_not_found``), if any.
        current: for a 409, the flag as it is now (the API sends it).
    """

    def __init__(
        self,
        exit_code: int,
        message: str,
        hint: str,
        *,
        status: int | None = None,
        code: str | None = None,
        current: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.hint = hint
        self.status = status
        self.code = code
        self.current = current

    def to_json(self) -> dict[str, Any]:
        """``{"error": {message, hint, status, code, exit_code}, "current"?: flag}``."""
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "hint": self.hint,
                "status": self.status,
                "code": self.code,
                "exit_code": self.exit_code,
            }
        }
        if self.current is not None:
            body["current"] = self.current
        return body


class AdminClient:
    """A synchronous client of ``/admin/`` (httpx, short timeout). Use as a context manager.

    Every method returns the decoded JSON body of a 2xx answer and raises
    :class:`AdminAPIError` for everything else (no response, non-JSON, 4xx, 5xx).
    """

    def __init__(self, url: str, admin_key: str | None, *, actor: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"x-gateway-actor": actor or _login_name(), "accept": "application/json"}
        if admin_key:
            headers["authorization"] = f"Bearer {admin_key}"
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise _bad_url(self.url, exc) from None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def routes(self) -> list[dict[str, Any]]:
        """``GET /admin/routes``: every route with variants, flag, guard and counters."""
        result: list[dict[str, Any]] = self._call("GET", "/admin/routes")
        return result

    def flag(self, route: str) -> dict[str, Any]:
        """``GET /admin/flags/{route}``: the flag as stored now."""
        result: dict[str, Any] = self._call("GET", _flag_path(route))
        return result

    def patch(self, route: str, version: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /admin/flags/{route}`` with ``If-Match: "<version>"``; the new flag."""
        result: dict[str, Any] = self._call(
            "PATCH", _flag_path(route), json=dict(body), headers={"if-match": f'"{version}"'}
        )
        return result

    def rollback(self, route: str, reason: str) -> dict[str, Any]:
        """``POST /admin/flags/{route}/rollback``; the new flag."""
        result: dict[str, Any] = self._call(
            "POST", _flag_path(route) + "/rollback", json={"reason": reason}
        )
        return result

    def release(self, route: str, reason: str, weight: int | None) -> dict[str, Any]:
        """``POST /admin/flags/{route}/release`` (optionally resuming at ``weight``)."""
        body: dict[str, Any] = {"reason": reason}
        if weight is not None:
            body["weight"] = weight
        result: dict[str, Any] = self._call("POST", _flag_path(route) + "/release", json=body)
        return result

    def audit(self, route: str, limit: int) -> list[dict[str, Any]]:
        """``GET /admin/audit?route=...&limit=...``: audit entries, newest first."""
        page = self._call("GET", "/admin/audit", params={"route": route, "limit": limit})
        entries: list[dict[str, Any]] = page["data"] if isinstance(page, dict) else page
        return entries

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        where = f"is the gateway running at {self.url}? set --url or GATEWAY_URL"
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise _bad_url(self.url, exc) from None
        except httpx.TimeoutException:
            raise AdminAPIError(
                EXIT_UNREACHABLE, f"no answer from {self.url} within {TIMEOUT.read}s", where
            ) from None
        except httpx.HTTPError as exc:
            raise AdminAPIError(
                EXIT_UNREACHABLE,
                f"cannot reach {self.url}: {type(exc).__name__}: {exc}",
                where,
            ) from None
        body = _json_or_none(response)
        if response.is_success:
            if body is None:
                raise AdminAPIError(
                    EXIT_UNREACHABLE,
                    f"{self.url}{path} answered {response.status_code} without JSON",
                    f"is {self.url} the gateway (its base URL, without /v1)? "
                    "set --url or GATEWAY_URL",
                    status=response.status_code,
                )
            return body
        raise _classify(response.status_code, body, response.text, self.url)


def _bad_url(url: str, exc: Exception) -> AdminAPIError:
    return AdminAPIError(
        EXIT_USAGE,
        f"invalid gateway URL {url!r}: {exc}",
        "give --url or GATEWAY_URL as http(s)://host:port",
    )


def _flag_path(route: str) -> str:
    return "/admin/flags/" + quote(route, safe="")


def _login_name() -> str:
    """The person running the command, for the audit (``$USER``, else the login name)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (e.g. some containers)
        name = "unknown"
    printable = "".join(ch for ch in name if ch.isascii() and ch.isprintable())  # header-safe
    return (printable or "unknown")[:64]


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _classify(status: int, body: Any, text: str, url: str) -> AdminAPIError:
    """Turn an error answer into an exit code, the gateway's message and a hint."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
        code = error.get("code") if isinstance(error.get("code"), str) else None
    else:
        message = f"HTTP {status}: {text.strip()[:200] or 'no body'}"
        code = None
    current = body.get("current") if isinstance(body, dict) else None
    if status in (401, 403):
        hint = "set GATEWAY_ADMIN_KEY (or --admin-key) to an admin key"
        if status == 403:
            hint += " (this key is valid, but not for the admin API: a client key?)"
        return AdminAPIError(EXIT_AUTH, message, hint, status=status, code=code)
    if status == 409:
        return AdminAPIError(
            EXIT_CONFLICT,
            message,
            "someone else changed this flag, or it is not in the state this command needs; "
            "check the current state and run the command again if it still applies",
            status=status,
            code=code,
            current=current if isinstance(current, dict) else None,
        )
    if status >= 500:
        if status == 503 and code == "flag_store_unavailable":
            hint = (
                "the gateway cannot reach its flag store right now (requests are served from "
                "its last-known flags, or the fallback); check the store and the gateway's "
                "/readyz, then retry"
            )
        else:
            hint = f"is the gateway running at {url}? set --url or GATEWAY_URL; see its logs"
        return AdminAPIError(EXIT_UNREACHABLE, message, hint, status=status, code=code)
    if status == 404 and code == "route_not_found":
        hint = "run `gateway flags list` to see the routes"
    elif status == 404:
        hint = f"is {url} the gateway (its base URL, without /v1)? set --url or GATEWAY_URL"
    elif status == 422:
        hint = "change the value named above and run the command again"
    else:
        hint = "check the command's options with --help"
    return AdminAPIError(EXIT_REJECTED, message, hint, status=status, code=code)


# -- output ------------------------------------------------------------------------------------


def _local_time(at: float) -> str:
    """Unix seconds as local ISO time (``-`` for 0, the routes file's initial state)."""
    if not at:
        return "-"
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def _names(values: Sequence[str]) -> str:
    return ", ".join(sorted(values)) or "-"


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
    for name in _LISTS:
        old_set, new_set = set(old_t.get(name, ())), set(new_t.get(name, ()))
        if old_set != new_set:
            added = " ".join("+" + v for v in sorted(new_set - old_set))
            removed = " ".join("-" + v for v in sorted(old_set - new_set))
            parts.append(" ".join(p for p in (name, added, removed) if p))
    return ", ".join(parts) or "-"


def _flag_table(flag: Mapping[str, Any]) -> Table:
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
        *((name.replace("_", " "), _names(targeting.get(name, ()))) for name in _LISTS),
    ]
    for field, value in rows:
        table.add_row(field, Text(str(value)))
    return table


def _routes_table(routes: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="routes")
    for column in ("route", "status", "enabled", "weight", "rollout id", "version"):
        table.add_column(column)
    table.add_column("candidate (requests/errors)")
    table.add_column("fallback (requests/errors)")
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
        )
    return table


def _history_table(route: str, entries: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=Text(f"history of {route}, newest first"))
    for column in ("when", "actor", "trigger", "action", "change", "reason"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            _local_time(float(entry.get("at") or 0)),
            Text(str(entry.get("actor"))),
            Text(str(entry.get("trigger"))),
            Text(str(entry.get("action"))),
            Text(describe_change(entry.get("before"), entry.get("after") or {})),
            Text(str(entry.get("reason"))),
        )
    return table


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@contextmanager
def _session(
    url: str, admin_key: str | None, as_json: bool, *, conflict_hint: str | None = None
) -> Iterator[AdminClient]:
    """An :class:`AdminClient`; an :class:`AdminAPIError` becomes stderr output and an exit.

    ``conflict_hint`` replaces the generic advice for a 409, when the command knows better.
    """
    try:
        with AdminClient(url, admin_key) as client:
            yield client
    except AdminAPIError as exc:
        if exc.exit_code == EXIT_CONFLICT and conflict_hint is not None:
            exc.hint = conflict_hint
        _fail(exc, as_json)


def _fail(exc: AdminAPIError, as_json: bool) -> NoReturn:
    if as_json:
        sys.stderr.write(json.dumps(exc.to_json()) + "\n")
    else:
        err = Console(stderr=True, highlight=False)
        status = f" ({exc.status})" if exc.status is not None else ""
        err.print(Text(f"error{status}: {exc.message}", style="bold red"))
        if exc.current is not None:
            err.print("current state:")
            err.print(_flag_table(exc.current))
        err.print(Text(f"what to do: {exc.hint}"))
    raise typer.Exit(exc.exit_code)


# -- options shared by every command ---------------------------------------------------------

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
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
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
    if 0 < weight <= 100 and _RAW.fullmatch(text.strip()):
        Console(stderr=True, highlight=False).print(
            Text(
                f"note: {text.strip()} is a raw weight, {format_weight(weight)}; "
                f"write {text.strip()}% for {text.strip()} percent"
            )
        )
    return weight


def _weight_option(help_text: str) -> Any:
    return typer.Option("--weight", parser=_parse_weight_option, help=help_text, metavar="WEIGHT")


# -- commands ----------------------------------------------------------------------------------


@flags_app.command("list", epilog=_EXIT_HELP)
def list_routes(
    url: Url = DEFAULT_URL, admin_key: AdminKey = None, as_json: AsJson = False
) -> None:
    """Every route: flag status, weight, rollout id, version and per-variant request counts."""
    with _session(url, admin_key, as_json) as client:
        routes = client.routes()
    if as_json:
        _print_json(routes)
    else:
        Console(highlight=False).print(_routes_table(routes))


@flags_app.command("show", epilog=_EXIT_HELP)
def show(
    route: RouteArg,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """One route's flag as stored now, with its targeting lists."""
    with _session(url, admin_key, as_json) as client:
        flag = client.flag(route)
    if as_json:
        _print_json(flag)
    else:
        Console(highlight=False).print(_flag_table(flag))


_SET_HELP = (
    "Change weight, kill switch or targeting, compare-and-set on the flag's version.\n\n"
    "A targeting option replaces that whole list (repeat it for several values). If someone "
    "changed the flag between this command's read and its write, nothing is written: it prints "
    "the current state and exits 4."
)


@flags_app.command("set", help=_SET_HELP, epilog=_EXIT_HELP)
def set_flag(
    route: RouteArg,
    reason: Reason,
    weight: Annotated[
        int | None,
        _weight_option("Candidate share: 25%, 0.5%, or raw thousandths of a percent (25000)."),
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
        body.update({name: [] for name in _LISTS})
    given = zip(_LISTS, (target_subject, fallback_subject, target_key, fallback_key), strict=True)
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
    with _session(url, admin_key, as_json, conflict_hint=hint) as client:
        before = client.flag(route)
        after = client.patch(route, int(before["version"]), body)
    _report_write(before, after, as_json)


@flags_app.command("rollback", epilog=_EXIT_HELP)
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
    with _session(url, admin_key, as_json, conflict_hint=hint) as client:
        before = client.flag(route)
        after = client.rollback(route, reason)
    _report_write(before, after, as_json)


@flags_app.command("release", epilog=_EXIT_HELP)
def release(
    route: RouteArg,
    reason: Reason,
    weight: Annotated[
        int | None, _weight_option("Resume at this weight (e.g. 0% to restart the ramp).")
    ] = None,
    url: Url = DEFAULT_URL,
    admin_key: AdminKey = None,
    as_json: AsJson = False,
) -> None:
    """Re-arm a rolled-back route with a new rollout id (the guard starts from clean counters).

    Exits 4 if the route is not rolled back.
    """
    hint = "only a rolled-back flag can be released; change an active one with `set`"
    with _session(url, admin_key, as_json, conflict_hint=hint) as client:
        before = client.flag(route)
        after = client.release(route, reason, weight)
    _report_write(before, after, as_json)


@flags_app.command("history", epilog=_EXIT_HELP)
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
    with _session(url, admin_key, as_json) as client:
        entries = client.audit(route, limit)
    entries = sorted(entries, key=lambda e: float(e.get("at") or 0), reverse=True)
    if as_json:
        _print_json(entries)
    else:
        Console(highlight=False).print(_history_table(route, entries))


def _report_write(before: Mapping[str, Any], after: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(after)
        return
    out = Console(highlight=False)
    out.print(
        Text(
            f"{after.get('route')}: {describe_change(before, after)} "
            f"(version {before.get('version')} -> {after.get('version')})"
        )
    )
    out.print(_flag_table(after))
