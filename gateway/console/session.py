"""Console login sessions: a signed cookie with an expiry, a CSRF token per session, logout.

The cookie's value is ``itsdangerous.URLSafeSerializer`` output (JSON, HMAC-SHA256 with the
session secret) of ``{"k": key name, "f": key fingerprint, "a": actor, "s": session id,
"e": expiry}``. It is signed, not encrypted: it holds no secret (the fingerprint is an HMAC of
the admin key's SHA-256 under the session secret, so it reveals nothing about the key), and any
replica with the same secret accepts it. A session ends when:

* its expiry passes (``e``, Unix seconds, ``GATEWAY_CONSOLE__SESSION_TTL_S`` after login);
* the admin key it was opened with is removed or changed (the fingerprint no longer matches);
* the person logs out: the session id is revoked in this process's memory until its expiry
  (other replicas keep accepting the cookie until it expires; the browser drops it at once);
* the secret changes (by default it is random per process, so a restart ends every session).

The CSRF token (OWASP's "synchronizer token" pattern, HMAC-based variant) is an HMAC of the
session id, so it needs no storage: the page carries it and every state-changing request sent
with the cookie must repeat it in the ``x-csrf-token`` header (or the form's ``csrf_token``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from gateway.errors import ConfigError

__all__ = [
    "COOKIE_NAME",
    "CSRF_HEADER",
    "MIN_SECRET_CHARS",
    "Session",
    "SessionCodec",
]

COOKIE_NAME = "gateway_console"
"""The session cookie (``Path=/admin``, ``HttpOnly``, ``SameSite=Strict``)."""
CSRF_HEADER = "x-csrf-token"
"""The header that carries a cookie-authenticated request's CSRF token."""
MIN_SECRET_CHARS = 32
"""Shortest ``GATEWAY_CONSOLE__SESSION_SECRET`` accepted (256 bits as hex, 32 as text)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A verified console session: who logged in and until when (Unix seconds)."""

    key_name: str
    actor: str | None
    session_id: str
    expires: float


class SessionCodec:
    """Issues, verifies and revokes console session cookies (see the module docstring)."""

    def __init__(self, secret: str | None, ttl_s: float) -> None:
        """``secret``: the signing secret (None: 32 random bytes, this process only);
        ``ttl_s``: a session's life in seconds.

        Raises:
            ConfigError: a secret shorter than :data:`MIN_SECRET_CHARS`.
        """
        if secret is not None and len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                [
                    "settings: GATEWAY_CONSOLE__SESSION_SECRET must be at least "
                    f"{MIN_SECRET_CHARS} characters (e.g. the output of `openssl rand -hex 32`)"
                ]
            )
        self.random_secret = secret is None
        key = secret.encode() if secret is not None else secrets.token_bytes(32)
        self._key = key
        self._serializer = URLSafeSerializer(
            key, salt="gateway-console-session", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self.ttl_s = ttl_s
        self._revoked: dict[str, float] = {}

    def fingerprint(self, key_digest: bytes) -> str:
        """A short, keyed fingerprint of an admin key's SHA-256 (bound into the session)."""
        return hmac.new(self._key, b"key:" + key_digest, hashlib.sha256).hexdigest()[:32]

    def issue(
        self, key_name: str, key_digest: bytes, actor: str | None, now: float
    ) -> tuple[str, Session]:
        """A new session for ``key_name``: the cookie value and the session."""
        session = Session(key_name, actor, secrets.token_urlsafe(16), now + self.ttl_s)
        payload = {
            "k": key_name,
            "f": self.fingerprint(key_digest),
            "a": actor,
            "s": session.session_id,
            "e": session.expires,
        }
        return str(self._serializer.dumps(payload)), session

    def verify(self, value: str, now: float) -> tuple[Session, str] | None:
        """The session in a cookie value and its key fingerprint, or None when the value is
        forged, malformed, expired or revoked."""
        try:
            payload: Any = self._serializer.loads(value)
        except BadSignature:
            return None
        if not isinstance(payload, dict):
            return None
        key_name, fingerprint, actor = payload.get("k"), payload.get("f"), payload.get("a")
        session_id, expires = payload.get("s"), payload.get("e")
        if not (
            isinstance(key_name, str)
            and isinstance(fingerprint, str)
            and isinstance(session_id, str)
            and isinstance(expires, int | float)
            and (actor is None or isinstance(actor, str))
        ):
            return None
        if expires <= now or session_id in self._revoked:
            return None
        return Session(key_name, actor, session_id, float(expires)), fingerprint

    def revoke(self, session: Session, now: float) -> None:
        """Log ``session`` out on this process (remembered until it would have expired)."""
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.session_id] = session.expires

    def csrf_token(self, session: Session) -> str:
        """The session's CSRF token (hex, 64 characters)."""
        return hmac.new(
            self._key, b"csrf:" + session.session_id.encode(), hashlib.sha256
        ).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is the session's CSRF token (constant-time comparison)."""
        if not token:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode(), token.encode())
