"""The ops console: ``/admin/ui`` (the page), its login and logout, its figures and assets.

* ``GET /admin/ui``: the console for a logged-in admin; anyone else is redirected (303) to
  ``/admin/ui/login`` and sees no flag data.
* ``GET /admin/ui/login``, ``POST /admin/ui/login`` (form: ``key``, optional ``name`` for the
  audit): an admin key opens a session (cookie ``gateway_console``: ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/admin``, ``Secure`` on https by default); a wrong key is 401, a
  client key 403, both shown on the form. Login attempts are rate-limited per client address
  (Litestar's :class:`~litestar.middleware.rate_limit.RateLimitConfig` on this handler only,
  ``GATEWAY_CONSOLE__LOGIN_ATTEMPTS_PER_MINUTE``, in this replica's memory): one over the
  allowance is the form again with a 429, ``Retry-After`` and the ``RateLimit-*`` headers.
* ``POST /admin/ui/logout`` (form: ``csrf_token``): ends the session, clears the cookie.
* ``GET /admin/ui/stats``: this replica's per-variant figures (:mod:`gateway.console.stats`),
  for a session or a bearer admin key.
* ``/admin/ui/static/*``: the page's own JavaScript and CSS (no CDN: works air-gapped).

The page reads and steers flags through the admin API itself (``/admin/routes``,
``/admin/audit``, ``PATCH /admin/flags/{route}``, ``.../rollback``, ``.../release``,
``.../ramp/pause|resume``) with the session cookie and the CSRF token
(:mod:`gateway.api.admin_guard`). Pages are sent with a strict Content-Security-Policy (scripts
and styles from the gateway only, no inline script, no framing) and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore

from gateway.api.admin_guard import admin_guard
from gateway.console import STATIC_DIR
from gateway.console.session import COOKIE_NAME, Session
from gateway.console.stats import route_stats
from gateway.errors import AuthenticationError, PermissionDeniedError

__all__ = ["LOGIN_PATH", "UI_PATH", "console_handlers", "page_headers"]

UI_PATH = "/admin/ui"
LOGIN_PATH = "/admin/ui/login"
COOKIE_PATH = "/admin"
LOGIN_LIMIT_STORE = "console_login_attempts"
"""The Litestar store (in memory, per process) counting login attempts per client address."""

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page_headers() -> dict[str, str]:
    """Headers of every console page: CSP (nothing from elsewhere, no inline script), no
    framing, no caching, no referrer."""
    return {
        "content-security-policy": _CSP,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


class ExpiredAttempts:
    """Drops the login counts of addresses whose window has ended, at most once per
    ``every_s`` seconds of ``clock``. Litestar's in-memory store forgets an address only when
    it comes back, so many addresses that try once (IPv6) would grow it for the process's life.
    """

    __slots__ = ("_clock", "_every_s", "_last")

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last = clock()

    async def forget(self, store: Store) -> bool:
        """Purge ``store``'s expired entries if ``every_s`` passed since the last purge (or
        since start); whether it did (only an in-memory store is purged)."""
        now = self._clock()
        if now - self._last < self._every_s or not isinstance(store, MemoryStore):
            return False
        self._last = now
        await store.delete_expired()
        return True


def console_handlers(gw: Any) -> list[Any]:
    """The console's handlers and its static files, bound to ``gw`` (a
    :class:`gateway.app.Gateway`)."""
    auth = gw.admin_auth
    secure_mode = gw.settings.console.secure_cookie

    def current(request: Request[Any, Any, Any]) -> Session | None:
        return auth.session(request.cookies.get(COOKIE_NAME))  # type: ignore[no-any-return]

    def secure(request: Request[Any, Any, Any]) -> bool:
        if secure_mode == "auto":
            return request.url.scheme == "https"
        return bool(secure_mode == "always")

    def login_page(
        request: Request[Any, Any, Any], error: str | None = None, status: int = 200
    ) -> Template:
        return Template(
            template_name="login.html",
            context={"error": error, "disabled": not auth.keys.has_keys},
            status_code=status,
            headers=page_headers(),
        )

    @get(UI_PATH, include_in_schema=False)
    async def console_page(request: Request[Any, Any, Any]) -> Response[Any]:
        session = current(request)
        if session is None:
            return Redirect(LOGIN_PATH, status_code=303, headers={"cache-control": "no-store"})
        return Template(
            template_name="console.html",
            context={
                "csrf_token": auth.sessions.csrf_token(session),
                "who": f"{session.key_name} ({session.actor})"
                if session.actor
                else session.key_name,
                "replica": gw.replica,
                "refresh_ms": round(gw.settings.console.refresh_s * 1000),
            },
            headers=page_headers(),
        )

    @get(LOGIN_PATH, include_in_schema=False)
    async def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
        if current(request) is not None:
            return Redirect(UI_PATH, status_code=303)
        return login_page(request)

    def too_many_attempts(
        request: Request[Any, Any, Any], exc: TooManyRequestsException
    ) -> Response[Any]:
        """The form again, 429: the rate limit's headers (``RateLimit-Reset``: seconds until
        the window ends) and ``Retry-After`` with the same number."""
        headers = dict(exc.headers or {})
        wait_s = max(1, int(headers.get("RateLimit-Reset", "60")))
        page = login_page(
            request,
            f"Too many login attempts from your address: try again in {wait_s} seconds.",
            429,
        )
        page.headers.update({**headers, "retry-after": str(wait_s)})
        gw.logger.warning("console.login_rate_limited", retry_after_s=wait_s)
        return page

    attempts = gw.settings.console.login_attempts_per_minute
    old_attempts = ExpiredAttempts()

    async def forget_old_attempts(request: Request[Any, Any, Any]) -> None:
        if attempts > 0:
            await old_attempts.forget(request.app.stores.get(LOGIN_LIMIT_STORE))

    limit = (
        [RateLimitConfig(rate_limit=("minute", attempts), store=LOGIN_LIMIT_STORE).middleware]
        if attempts > 0
        else []
    )

    @post(
        LOGIN_PATH,
        include_in_schema=False,
        status_code=303,
        middleware=limit,
        exception_handlers={TooManyRequestsException: too_many_attempts},
    )
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        await forget_old_attempts(request)
        form = await request.form()
        key, name = form.get("key"), form.get("name")
        key = key if isinstance(key, str) else ""
        try:
            value, session = auth.login(key, name if isinstance(name, str) else None)
        except PermissionDeniedError:
            return login_page(
                request, "That is not an admin key: the console needs an admin key.", 403
            )
        except AuthenticationError as exc:
            known = not auth.keys.has_keys or not key.strip()  # disabled, or nothing typed
            return login_page(request, exc.message if known else "Incorrect admin key.", 401)
        gw.logger.info("console.login", key=session.key_name, actor=session.actor)
        return Redirect(
            UI_PATH,
            status_code=303,
            cookies=[
                Cookie(
                    key=COOKIE_NAME,
                    value=value,
                    path=COOKIE_PATH,
                    max_age=int(auth.sessions.ttl_s),
                    httponly=True,
                    samesite="strict",
                    secure=secure(request),
                )
            ],
        )

    @post(f"{UI_PATH}/logout", include_in_schema=False, status_code=303)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        session = current(request)
        if session is not None:
            form = await request.form()
            token = form.get("csrf_token")
            if not auth.sessions.csrf_ok(session, token if isinstance(token, str) else None):
                raise PermissionDeniedError(
                    "Missing or wrong CSRF token: log out from the console page.",
                    code="csrf_failed",
                )
            auth.logout(session)
            gw.logger.info("console.logout", key=session.key_name, actor=session.actor)
        return Redirect(
            LOGIN_PATH,
            status_code=303,
            cookies=[
                Cookie(
                    key=COOKIE_NAME,
                    value="",
                    path=COOKIE_PATH,
                    max_age=0,
                    httponly=True,
                    samesite="strict",
                    secure=secure(request),
                )
            ],
        )

    @get(
        f"{UI_PATH}/stats",
        summary="This replica's per-variant figures for the console",
        guards=[admin_guard(auth)],
    )
    async def stats() -> dict[str, Any]:
        m = gw.metrics
        routes = [name for name, r in gw.config.routes.items() if not r.passthrough]
        return {
            "replica": gw.replica,
            "at": time.time(),
            "routes": route_stats(
                routes,
                requests=m.requests,
                tokens=m.tokens,
                cost=m.cost,
                duration=m.duration,
            ),
        }

    static = create_static_files_router(
        path=f"{UI_PATH}/static", directories=[STATIC_DIR], name="console-static"
    )
    return [console_page, login_form, login, logout, stats, static]
