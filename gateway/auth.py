"""Bearer keys: named client keys for the data plane, named admin keys for ``/admin``.

``/admin`` also accepts a console session (:class:`AdminAuth`): a signed cookie opened by
logging in with an admin key at ``/admin/ui/login``, whose state-changing requests must carry
the session's CSRF token. A request with an ``Authorization`` header is always judged on the
bearer key alone.

A presented key is hashed with SHA-256 and compared with every configured key's hash in
constant time (``hmac.compare_digest``, no early exit), so timing reveals neither which key nor
how much of one matched. Only the key's *name* ever reaches logs, metrics and errors.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.console.session import Session, SessionCodec
from gateway.errors import AuthenticationError, ConfigError, PermissionDeniedError

__all__ = ["AdminAuth", "AdminIdentity", "KeyRing", "bearer_token"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing, so a cookie-authenticated one needs no CSRF token."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyRing:
    """The named keys of one plane (client or admin)."""

    __slots__ = ("_digests", "_open", "_other", "plane")

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        plane: str,
        allow_open: bool = False,
        required: bool = True,
        other_plane: Mapping[str, str] | None = None,
    ) -> None:
        """Build a key ring.

        Args:
            keys: name -> secret key.
            plane: ``"client"`` or ``"admin"``, used in messages.
            allow_open: accept requests without a key (the name is then ``None``).
            required: without keys (and without ``allow_open``), refuse to build (True) or
                build a ring that rejects every request (False: the plane is disabled).
            other_plane: the other plane's keys, so that a key of the wrong plane gets 403
                rather than 401.

        Raises:
            ConfigError: no keys and no open access, or an empty key.
        """
        if not keys and not allow_open and required:
            raise ConfigError(
                [
                    f"settings: no {plane} keys are configured; set GATEWAY_{plane.upper()}_KEYS "
                    f"(JSON name -> key) or GATEWAY_{plane.upper()}_KEYS_FILE"
                    + (
                        ", or GATEWAY_ALLOW_OPEN_ACCESS=true for a local demo"
                        if plane == "client"
                        else ""
                    )
                ]
            )
        if any(not k for k in keys.values()):
            raise ConfigError([f"settings: {plane} key names with an empty key"])
        self.plane = plane
        self._open = allow_open and not keys
        self._digests = [(name, _digest(key)) for name, key in keys.items()]
        self._other = [_digest(k) for k in (other_plane or {}).values()]

    @property
    def has_keys(self) -> bool:
        """Whether this plane has any keys (without them, and without open access, every
        request is refused)."""
        return bool(self._digests)

    def authenticate(self, authorization: str | None) -> str | None:
        """Return the name of the key in the header.

        Raises:
            AuthenticationError: missing or unknown key (401).
            PermissionDeniedError: a key of the other plane (403).
        """
        if self._open:
            return None
        if not self._digests:
            raise AuthenticationError(
                f"The {self.plane} API is disabled: no {self.plane} keys are configured "
                f"(GATEWAY_{self.plane.upper()}_KEYS)."
            )
        token = bearer_token(authorization)
        if token is None:
            raise AuthenticationError("Missing bearer key: send 'Authorization: Bearer <key>'.")
        return self.identify(token)[0]

    def identify(self, key: str) -> tuple[str, bytes]:
        """The name and SHA-256 digest of ``key`` (e.g. typed into the console's login form).

        Raises:
            AuthenticationError: no keys on this plane, or an unknown key (401).
            PermissionDeniedError: a key of the other plane (403).
        """
        if not self._digests:
            raise AuthenticationError(
                f"The {self.plane} API is disabled: no {self.plane} keys are configured "
                f"(GATEWAY_{self.plane.upper()}_KEYS)."
            )
        digest = _digest(key)
        found: str | None = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = name
        if found is not None:
            return found, digest
        other = False
        for expected in self._other:
            if hmac.compare_digest(digest, expected):
                other = True
        if other:
            raise PermissionDeniedError(f"This key is not valid for the {self.plane} API.")
        raise AuthenticationError("Incorrect API key provided.")

    def digest_of(self, name: str) -> bytes | None:
        """The SHA-256 of the key named ``name`` now (None: no such key any more)."""
        for key_name, digest in self._digests:
            if key_name == name:
                return digest
        return None


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """Who made an admin request: the key's name, the audit's actor, and the console session
    (None for a bearer key)."""

    key_name: str | None
    actor: str
    session: Session | None = None


def _actor_name(value: str | None) -> str | None:
    """A person's name for the audit: printable, at most 64 characters, else ignored."""
    if value and value.isprintable() and len(value) <= 64:
        return value
    return None


class AdminAuth:
    """Admin authentication for ``/admin``: a bearer admin key, or a console session cookie
    (with its CSRF token on every state-changing request)."""

    def __init__(
        self, keys: KeyRing, sessions: SessionCodec, clock: Callable[[], float] = time.time
    ) -> None:
        """``keys``: the admin key ring; ``sessions``: the console's cookie codec; ``clock``:
        Unix seconds (sessions expire by it)."""
        self.keys = keys
        self.sessions = sessions
        self._clock = clock

    def authenticate(
        self,
        *,
        authorization: str | None,
        cookie: str | None,
        method: str,
        csrf_token: str | None = None,
        actor_header: str | None = None,
    ) -> AdminIdentity:
        """Judge one ``/admin`` request.

        With an ``Authorization`` header (or without a session cookie) it is the bearer path,
        unchanged; the actor is the key's name plus ``x-gateway-actor``. Otherwise the session
        cookie must be valid and, for any method but GET/HEAD/OPTIONS, ``csrf_token`` must be
        the session's.

        Raises:
            AuthenticationError: no key, an unknown one, or an invalid, expired or logged-out
                session (401).
            PermissionDeniedError: a client key (403); a missing or wrong CSRF token (403,
                ``csrf_failed``).
        """
        if authorization is not None or not cookie:
            name = self.keys.authenticate(authorization) or "open-access"
            who = _actor_name(actor_header)
            return AdminIdentity(name, f"{name} ({who})" if who else name)
        session = self.session(cookie)
        if session is None:
            raise AuthenticationError(
                "The console session is invalid, expired or logged out: log in again at "
                "/admin/ui/login, or send 'Authorization: Bearer <admin key>'."
            )
        if method.upper() not in SAFE_METHODS and not self.sessions.csrf_ok(session, csrf_token):
            raise PermissionDeniedError(
                "Missing or wrong CSRF token: a request made with the console's session cookie "
                "must send the page's token in the x-csrf-token header.",
                code="csrf_failed",
            )
        actor = f"{session.key_name} ({session.actor or 'console'})"
        return AdminIdentity(session.key_name, actor, session)

    def session(self, cookie: str | None) -> Session | None:
        """The valid session in a cookie value: signed, unexpired, not logged out here, and
        opened with an admin key that is still configured unchanged; else None."""
        if not cookie:
            return None
        verified = self.sessions.verify(cookie, self._clock())
        if verified is None:
            return None
        session, fingerprint = verified
        digest = self.keys.digest_of(session.key_name)
        if digest is None or not hmac.compare_digest(
            self.sessions.fingerprint(digest), fingerprint
        ):
            return None
        return session

    def login(self, key: str, actor: str | None) -> tuple[str, Session]:
        """Open a session for an admin key typed into the login form: the cookie value and the
        session. ``actor`` (a person's name) is kept for the audit if printable and short.

        Raises:
            AuthenticationError: an empty or unknown key, or no admin keys configured (401).
            PermissionDeniedError: a client key (403).
        """
        if not key.strip():
            raise AuthenticationError("Enter an admin key.")
        name, digest = self.keys.identify(key.strip())
        return self.sessions.issue(name, digest, _actor_name(actor), self._clock())

    def logout(self, session: Session) -> None:
        """End ``session`` on this replica (see :mod:`gateway.console.session`)."""
        self.sessions.revoke(session, self._clock())


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
