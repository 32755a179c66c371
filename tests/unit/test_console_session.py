"""Console sessions: the signed cookie, its expiry, logout, key binding, CSRF, AdminAuth and
the login limit's purge of old counts."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from litestar.stores.memory import MemoryStore

from gateway.api.console import ExpiredAttempts
from gateway.auth import AdminAuth, KeyRing
from gateway.console.session import SessionCodec
from gateway.errors import AuthenticationError, ConfigError, PermissionDeniedError
from gateway.settings import load_settings

CLIENT = {"web-app": "sk-client-web"}
ADMIN = {"ops": "sk-admin-ops", "sre": "sk-admin-sre"}
SECRET = "s" * 32


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_auth(
    clock: Clock, admin: dict[str, str] | None = None, secret: str | None = SECRET
) -> AdminAuth:
    ring = KeyRing(
        ADMIN if admin is None else admin, plane="admin", required=False, other_plane=CLIENT
    )
    return AdminAuth(ring, SessionCodec(secret, ttl_s=3600), clock=clock)


def cookie_auth(auth: AdminAuth, cookie: str, method: str = "GET", csrf: str | None = None) -> str:
    return auth.authenticate(
        authorization=None, cookie=cookie, method=method, csrf_token=csrf
    ).actor


def test_login_opens_a_session_named_after_the_key_and_person() -> None:
    """An admin key logs in; the cookie authenticates reads as that key, the person's name in
    the audit actor."""
    auth = make_auth(Clock())
    cookie, session = auth.login("sk-admin-sre", "alice")
    assert session.key_name == "sre"
    assert cookie_auth(auth, cookie) == "sre (alice)"
    _, anonymous = auth.login(" sk-admin-ops ", None)
    assert anonymous.actor is None


def test_login_refuses_client_keys_unknown_keys_and_empty_input() -> None:
    """A client key is 403, an unknown or empty key 401: no session is issued."""
    auth = make_auth(Clock())
    with pytest.raises(PermissionDeniedError):
        auth.login("sk-client-web", None)
    with pytest.raises(AuthenticationError):
        auth.login("sk-admin-wrong", None)
    with pytest.raises(AuthenticationError):
        auth.login("   ", None)


def test_login_is_refused_when_no_admin_keys_are_configured() -> None:
    """Without admin keys the admin API is disabled, and so is the console's login."""
    auth = make_auth(Clock(), admin={})
    with pytest.raises(AuthenticationError, match="disabled"):
        auth.login("anything", None)


def test_a_session_expires_after_its_ttl() -> None:
    """The session works until its expiry, not at or after it."""
    clock = Clock()
    auth = make_auth(clock)
    cookie, _ = auth.login("sk-admin-ops", None)
    clock.now += 3599
    assert auth.session(cookie) is not None
    clock.now += 1
    assert auth.session(cookie) is None
    with pytest.raises(AuthenticationError):
        cookie_auth(auth, cookie)


def test_logout_revokes_that_session_only() -> None:
    """After logout the cookie is refused; another session of the same key still works."""
    auth = make_auth(Clock())
    first, session = auth.login("sk-admin-ops", None)
    second, _ = auth.login("sk-admin-ops", None)
    auth.logout(session)
    assert auth.session(first) is None
    assert auth.session(second) is not None


def test_tampered_or_foreign_cookies_are_refused() -> None:
    """A cookie edited to name another key, one signed with another secret, and garbage are
    all refused."""
    auth = make_auth(Clock())
    cookie, _ = auth.login("sk-admin-ops", None)
    body, _, signature = cookie.partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["k"] = "sre"
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    assert auth.session(f"{forged_body}.{signature}") is None
    other = make_auth(Clock(), secret="t" * 32)
    assert other.session(cookie) is None
    assert auth.session("not-a-cookie") is None
    assert auth.session("") is None


def test_changing_the_admin_key_ends_its_sessions() -> None:
    """A session is bound to the key it was opened with: rotating the key (same name) or
    removing it makes the cookie invalid, with the same secret."""
    clock = Clock()
    auth = make_auth(clock)
    cookie, _ = auth.login("sk-admin-ops", None)
    rotated = make_auth(clock, admin={"ops": "sk-admin-ops-2"})
    assert rotated.session(cookie) is None
    removed = make_auth(clock, admin={"sre": "sk-admin-sre"})
    assert removed.session(cookie) is None
    same = make_auth(clock)
    assert same.session(cookie) is not None  # another replica with the same secret and keys


def test_writes_with_the_cookie_need_the_sessions_csrf_token() -> None:
    """GET needs no token; PATCH/POST/DELETE without it, with another session's or a wrong
    one are 403 csrf_failed; with the right one they pass."""
    auth = make_auth(Clock())
    cookie, session = auth.login("sk-admin-ops", None)
    _, other = auth.login("sk-admin-ops", None)
    token = auth.sessions.csrf_token(session)
    assert cookie_auth(auth, cookie, "GET") == "ops (console)"
    for method in ("PATCH", "POST", "DELETE", "PUT"):
        for wrong in (None, "", auth.sessions.csrf_token(other), token[:-1] + "0"):
            if wrong == token:
                continue
            with pytest.raises(PermissionDeniedError) as info:
                cookie_auth(auth, cookie, method, wrong)
            assert info.value.code == "csrf_failed"
        assert cookie_auth(auth, cookie, method, token) == "ops (console)"


def test_a_bearer_header_is_judged_alone_whatever_the_cookie() -> None:
    """With an Authorization header the cookie is ignored: a client key is still 403 and a
    wrong key 401 even next to a valid session; a bearer admin key needs no CSRF token."""
    auth = make_auth(Clock())
    cookie, _ = auth.login("sk-admin-ops", None)
    with pytest.raises(PermissionDeniedError):
        auth.authenticate(authorization="Bearer sk-client-web", cookie=cookie, method="POST")
    with pytest.raises(AuthenticationError):
        auth.authenticate(authorization="Bearer nope", cookie=cookie, method="GET")
    who = auth.authenticate(
        authorization="Bearer sk-admin-sre", cookie=None, method="POST", actor_header="bob"
    )
    assert (who.key_name, who.actor, who.session) == ("sre", "sre (bob)", None)


def test_no_credentials_is_401() -> None:
    """Neither a header nor a cookie: 401, as before the console existed."""
    with pytest.raises(AuthenticationError):
        make_auth(Clock()).authenticate(authorization=None, cookie=None, method="GET")


def test_a_short_secret_is_a_config_error_and_none_means_random() -> None:
    """A configured secret under 32 characters is refused; without one, each codec makes its
    own, so two processes do not accept each other's cookies."""
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        SessionCodec("short", ttl_s=60)
    clock = Clock()
    first, second = make_auth(clock, secret=None), make_auth(clock, secret=None)
    cookie, _ = first.login("sk-admin-ops", None)
    assert first.session(cookie) is not None
    assert second.session(cookie) is None


def test_console_settings_come_from_gateway_console_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``GATEWAY_CONSOLE__*`` sets the secret (hidden in reprs), the TTL and the Secure mode;
    defaults: no secret, 8 hours, auto; a bad mode is a ConfigError naming the variable."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    defaults = load_settings().console
    assert (defaults.session_secret, defaults.session_ttl_s, defaults.secure_cookie) == (
        None,
        28800.0,
        "auto",
    )
    monkeypatch.setenv("GATEWAY_CONSOLE__SESSION_SECRET", "k" * 40)
    monkeypatch.setenv("GATEWAY_CONSOLE__SESSION_TTL_S", "600")
    monkeypatch.setenv("GATEWAY_CONSOLE__SECURE_COOKIE", "always")
    console = load_settings().console
    assert console.session_secret is not None
    assert console.session_secret.get_secret_value() == "k" * 40
    assert "kkkk" not in repr(console)
    assert (console.session_ttl_s, console.secure_cookie) == (600.0, "always")
    monkeypatch.setenv("GATEWAY_CONSOLE__SECURE_COOKIE", "sometimes")
    with pytest.raises(ConfigError, match="GATEWAY_CONSOLE__SECURE_COOKIE"):
        load_settings()


async def test_expired_login_counts_are_dropped_at_most_once_per_interval() -> None:
    """Counts whose window ended are purged when ``every_s`` has passed on the clock, not
    before; live counts stay."""
    now = [100.0]
    purge = ExpiredAttempts(every_s=60.0, clock=lambda: now[0])
    store = MemoryStore()
    await store.set("gone", b"1", expires_in=timedelta(seconds=-1))
    await store.set("live", b"1", expires_in=60)
    now[0] = 159.0
    assert not await purge.forget(store)
    assert await store.exists("live")
    assert len(store._store) == 2
    now[0] = 160.0
    assert await purge.forget(store)
    assert set(store._store) == {"live"}
    assert not await purge.forget(store)  # the next purge is due at 220
