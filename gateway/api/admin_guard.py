"""The admin guard of ``/admin``: a bearer admin key, or the console's session cookie with its
CSRF token (:class:`gateway.auth.AdminAuth`). Runs before a handler's body is parsed, so
without valid admin credentials the answer is 401/403 whatever the request holds."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from gateway.auth import AdminAuth, AdminIdentity
from gateway.console.session import COOKIE_NAME, CSRF_HEADER

__all__ = ["admin_guard", "admin_identity"]


def admin_identity(
    auth: AdminAuth, connection: ASGIConnection[Any, Any, Any, Any]
) -> AdminIdentity:
    """Who makes this admin request (raises 401/403, see :meth:`AdminAuth.authenticate`)."""
    headers = connection.headers
    cookie = connection.cookies.get(COOKIE_NAME) if "cookie" in headers else None
    return auth.authenticate(
        authorization=headers.get("authorization"),
        cookie=cookie,
        method=str(connection.scope.get("method", "GET")),
        csrf_token=headers.get(CSRF_HEADER),
        actor_header=headers.get("x-gateway-actor"),
    )


def admin_guard(auth: AdminAuth) -> Any:
    """A Litestar guard that lets only admins through."""

    def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        admin_identity(auth, connection)

    return require_admin
