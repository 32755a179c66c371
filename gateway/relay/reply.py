"""What the relay hands to the HTTP layer: the caller's context in, a :class:`Reply` out, and
the one mapping of an error to its reply (:func:`error_reply`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.errors import GatewayError

__all__ = ["CLIENT_CLOSED_REQUEST", "JSON", "CallContext", "Headers", "Reply", "error_reply"]

CLIENT_CLOSED_REQUEST = 499
"""Status recorded (never sent) when the client went away before its answer was complete, as
nginx logs it. The guard never counts it against a variant."""

JSON = "application/json"

Headers = list[tuple[bytes, bytes]]
"""Response headers as ASGI sends them: (lower-case name, value) pairs, latin-1 bytes."""


@dataclass(slots=True)
class CallContext:
    """Who is calling and what they asked for in headers."""

    request_id: str
    started: float
    key_name: str | None = None
    may_override: bool = False
    subject: str | None = None
    forced_variant: str | None = None


@dataclass(slots=True)
class Reply:
    """What the HTTP layer sends: a body, or an async iterator of SSE bytes. ``headers`` are
    ASGI pairs without ``content-type`` (from ``media_type``) and ``content-length``."""

    status: int
    headers: Headers
    body: bytes = b""
    media_type: str = JSON
    stream: AsyncIterator[bytes] | None = None

    def header_dict(self) -> dict[str, str]:
        """``headers`` as a dict of text, for a Litestar ``Response``."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}


def error_reply(
    exc: GatewayError, request_id: str, extra_headers: dict[str, str] | None = None
) -> Reply:
    """The one mapping of an error to its reply: ``exc``'s status, OpenAI's error envelope,
    ``x-request-id`` and the error's own headers (``retry-after``), then ``extra_headers``
    (e.g. ``allow`` on a 405). The data plane sends it as is; Litestar's exception handlers
    turn it into a ``Response`` (``gateway.api.openai.to_response``)."""
    headers: Headers = [(b"x-request-id", request_id.encode("latin-1"))]
    for name, value in exc.headers().items():
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if extra_headers:
        for name, value in extra_headers.items():
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return Reply(exc.status_code, headers, exc.to_body())
