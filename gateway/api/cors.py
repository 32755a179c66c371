"""CORS for browser apps calling the data plane (``/v1/*``), off unless origins are configured.

One policy for every ``/v1/`` response, the raw ASGI data plane's and Litestar's alike, errors
included: :class:`gateway.app.GatewayApp` applies it before dispatching, so a browser sees the
same headers on a 200, a 401 or a 429. Litestar's own CORS middleware runs inside Litestar's
stack, behind the data plane's fast path, so it would miss the answers that matter most.

The rules are the Fetch standard's CORS protocol (fetch.spec.whatwg.org, "CORS protocol"):

* a **preflight** is an ``OPTIONS`` request with ``Origin`` and
  ``Access-Control-Request-Method``. From an allowed origin it is answered here, 204 with
  ``access-control-allow-origin`` (the origin, or ``*`` when any is allowed),
  ``access-control-allow-methods: GET, POST, OPTIONS``, ``access-control-allow-headers`` (the
  headers the browser asked for: the gateway authenticates with a bearer key, never cookies,
  so no credentials are allowed and any request header is fine) and ``access-control-max-age``.
  From another origin it is not answered here (the app answers it like any ``OPTIONS``, without
  CORS headers, and the browser refuses the call).
* an **actual request** from an allowed origin gets ``access-control-allow-origin`` and
  ``access-control-expose-headers`` naming the response's ``x-*`` headers and ``retry-after``
  (so a page can read ``x-gateway-variant`` or ``x-request-id``); ``vary: origin`` unless any
  origin is allowed. A request from another origin, or without ``Origin``, is left untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["CorsPolicy", "Headers"]

Headers = list[tuple[bytes, bytes]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_METHODS = b"GET, POST, OPTIONS"
PATH_PREFIX = "/v1/"
"""CORS applies to the data plane only; the admin API is not for browsers on other origins."""


class CorsPolicy:
    """The allowed ``origins`` (exact ``scheme://host[:port]``, or ``*`` for any) and how long a
    preflight answer may be cached (``max_age_s``, seconds)."""

    __slots__ = ("_any", "_max_age", "_origins")

    def __init__(self, origins: Iterable[str], max_age_s: int) -> None:
        listed = {o.rstrip("/") for o in origins}
        self._any = "*" in listed
        self._origins = frozenset(o.encode("latin-1") for o in listed if o != "*")
        self._max_age = b"%d" % max_age_s

    @classmethod
    def from_settings(cls, origins: list[str], max_age_s: int) -> CorsPolicy | None:
        """The policy, or None (CORS off) when no origin is configured."""
        return cls(origins, max_age_s) if origins else None

    def allowed(self, origin: bytes) -> bool:
        """Whether a request with this ``Origin`` may read the answers."""
        return self._any or origin in self._origins

    def _allow_origin(self, origin: bytes) -> Headers:
        if self._any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]

    def preflight_headers(self, origin: bytes, requested_headers: bytes | None) -> Headers:
        """The headers of a 204 preflight answer for an allowed ``origin``."""
        headers = self._allow_origin(origin)
        headers.append((b"access-control-allow-methods", _METHODS))
        if requested_headers:
            headers.append((b"access-control-allow-headers", requested_headers))
        headers.append((b"access-control-max-age", self._max_age))
        return headers

    def response_headers(self, origin: bytes, response: Headers) -> Headers:
        """The headers added to an actual response (whose own headers are ``response``)."""
        headers = self._allow_origin(origin)
        exposed = [name for name, _ in response if name.startswith(b"x-") or name == b"retry-after"]
        if exposed:
            headers.append((b"access-control-expose-headers", b", ".join(exposed)))
        return headers

    async def apply(self, scope: Any, send: Send) -> Send | None:
        """For an HTTP request under ``/v1/``: answer an allowed preflight (returns None), or
        return the ``send`` to answer with (wrapped to add the headers when the origin is
        allowed; ``send`` itself otherwise)."""
        origin = requested_method = requested_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                requested_method = value
            elif name == b"access-control-request-headers":
                requested_headers = value
        if origin is None or not self.allowed(origin):
            return send
        if scope["method"] == "OPTIONS" and requested_method is not None:
            headers = self.preflight_headers(origin, requested_headers)
            headers.append((b"content-length", b"0"))
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return None
        return self._wrap(send, origin)

    def _wrap(self, send: Send, origin: bytes) -> Send:
        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                headers.extend(self.response_headers(origin, headers))
                message = {**message, "headers": headers}
            await send(message)

        return send_with_cors
