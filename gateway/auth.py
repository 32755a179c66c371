"""Bearer keys: named client keys for the data plane, named admin keys for ``/admin``.

A presented key is hashed with SHA-256 and compared with every configured key's hash in
constant time (``hmac.compare_digest``, no early exit), so timing reveals neither which key nor
how much of one matched. Only the key's *name* ever reaches logs, metrics and errors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from gateway.errors import AuthenticationError, ConfigError, PermissionDeniedError

__all__ = ["KeyRing", "bearer_token"]


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
        digest = _digest(token)
        found: str | None = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = name
        if found is not None:
            return found
        other = False
        for expected in self._other:
            if hmac.compare_digest(digest, expected):
                other = True
        if other:
            raise PermissionDeniedError(f"This key is not valid for the {self.plane} API.")
        raise AuthenticationError("Incorrect API key provided.")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
