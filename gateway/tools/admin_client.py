"""A synchronous client of a running gateway's admin API (``/admin/``), for the command line.

Every request carries ``x-gateway-actor: <login name>`` so that the audit says who made a
change, and the admin key as a bearer key (never printed). Every failure becomes an
:class:`AdminAPIError` already classified with the command line's exit codes
(:mod:`gateway.tools.exit_codes`; a :class:`~gateway.tools.exit_codes.CliError`), the gateway's
own message and a hint saying what to do:

* no response, a timeout, a 5xx, or a 2xx without JSON: 3 (unreachable);
* 401/403: 5 (auth); 409: 4 (conflict, with the flag as it is now); other 4xx: 1 (rejected);
* a malformed URL: 2 (usage).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from gateway.tools.exit_codes import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)

__all__ = ["TIMEOUT", "AdminAPIError", "AdminClient", "flag_path"]

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
"""Seconds: an admin call is one small read or write; a hung gateway should fail fast."""

_WHERE = "set --url or GATEWAY_URL"


class AdminAPIError(CliError):
    """A failed admin call, already classified for the command line.

    Attributes (besides :class:`CliError`'s ``message``, ``hint``, ``exit_code``, ``status`` and
    ``code``):
        current: for a 409, the flag as it is now (the API sends it); in JSON as ``current``.
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
        extra = {"current": current} if current is not None else None
        super().__init__(message, hint, exit_code=exit_code, status=status, code=code, extra=extra)
        self.current = current


def flag_path(route: str) -> str:
    """``/admin/flags/{route}``, the route name percent-encoded (a ``/`` in it too)."""
    return "/admin/flags/" + quote(route, safe="")


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
        result: dict[str, Any] = self._call("GET", flag_path(route))
        return result

    def flag_with_source(self, route: str) -> tuple[dict[str, Any], str | None]:
        """:meth:`flag` and its ``x-gateway-flag-source`` header (``store``, ``snapshot``,
        ``routes_file``; ``None`` from a gateway that does not send it)."""
        body, headers = self._exchange("GET", flag_path(route))
        source = headers.get("x-gateway-flag-source")
        return body, source

    def patch(self, route: str, version: int, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /admin/flags/{route}`` with ``If-Match: "<version>"``; the new flag."""
        result: dict[str, Any] = self._call(
            "PATCH", flag_path(route), json=dict(body), headers={"if-match": f'"{version}"'}
        )
        return result

    def rollback(self, route: str, reason: str) -> dict[str, Any]:
        """``POST /admin/flags/{route}/rollback``; the new flag."""
        result: dict[str, Any] = self._call(
            "POST", flag_path(route) + "/rollback", json={"reason": reason}
        )
        return result

    def release(self, route: str, reason: str, weight: int | None) -> dict[str, Any]:
        """``POST /admin/flags/{route}/release`` (optionally resuming at ``weight``)."""
        body: dict[str, Any] = {"reason": reason}
        if weight is not None:
            body["weight"] = weight
        result: dict[str, Any] = self._call("POST", flag_path(route) + "/release", json=body)
        return result

    def ramp(self, route: str, action: Literal["pause", "resume"], reason: str) -> dict[str, Any]:
        """``POST /admin/flags/{route}/ramp/pause`` or ``.../ramp/resume``; the new flag."""
        result: dict[str, Any] = self._call(
            "POST", f"{flag_path(route)}/ramp/{action}", json={"reason": reason}
        )
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
        body, _ = self._exchange(method, path, json=json, params=params, headers=headers)
        return body

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, httpx.Headers]:
        """The decoded JSON body of a 2xx answer and its headers; AdminAPIError otherwise."""
        where = f"is the gateway running at {self.url}? {_WHERE}"
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
                    f"is {self.url} the gateway (its base URL, without /v1)? {_WHERE}",
                    status=response.status_code,
                )
            return body, response.headers
        raise _classify(response.status_code, body, response.text, self.url)


def _bad_url(url: str, exc: Exception) -> AdminAPIError:
    return AdminAPIError(
        EXIT_USAGE,
        f"invalid gateway URL {url!r}: {exc}",
        "give --url or GATEWAY_URL as http(s)://host:port",
    )


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
    if status == 409 and code == "rolled_back":
        return AdminAPIError(
            EXIT_CONFLICT,
            message,
            "the flag is rolled back, and only `gateway flags release ROUTE --reason ...` "
            "re-arms it (at weight 0 unless --weight is given); nothing was written",
            status=status,
            code=code,
            current=current if isinstance(current, dict) else None,
        )
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
            hint = f"is the gateway running at {url}? {_WHERE}; see its logs"
        return AdminAPIError(EXIT_UNREACHABLE, message, hint, status=status, code=code)
    if status == 404 and code == "route_not_found":
        hint = "run `gateway flags list` to see the routes"
    elif status == 404:
        hint = f"is {url} the gateway (its base URL, without /v1)? {_WHERE}"
    elif status == 422:
        hint = "change the value named above and run the command again"
    else:
        hint = "check the command's options with --help"
    return AdminAPIError(EXIT_REJECTED, message, hint, status=status, code=code)
