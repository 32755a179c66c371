"""One error hierarchy for the whole gateway, mapped to OpenAI's error envelope in one handler.

::

    GatewayError                       anything the gateway raises on purpose
    ├── ConfigError                    settings or routes file invalid (start-up, ``check-config``)
    ├── ClientError                    4xx: the caller must change the request
    │   ├── InvalidRequestError        400 invalid_request_error (malformed JSON, wrong types)
    │   ├── AuthenticationError        401 invalid_api_key
    │   ├── PermissionDeniedError      403 permission_denied
    │   ├── NotFoundError              404 not_found
    │   │   └── ModelNotFoundError     404 model_not_found (unknown route)
    │   ├── ConflictError              409 conflict
    │   ├── PayloadTooLargeError       413 payload_too_large
    │   └── UnprocessableError         422 unprocessable_entity
    └── UpstreamError                  the upstream failed; carries ``failover_reason``
        ├── UpstreamConnectError       502 connect refused / reset before a response
        ├── UpstreamTimeoutError       504 no answer within the upstream's timeout
        ├── UpstreamStatusError        upstream answered an error status (relayed or 502/503/504)
        ├── UpstreamProtocolError      502 the upstream's answer is not valid OpenAI JSON / SSE
        │   └── UpstreamEventTooLargeError  502 one SSE event over the size limit
        └── PoolExhaustedError         503 no free upstream connection within the pool timeout
    StoreUnavailableError              503 the flag store cannot be written right now

Status codes and OpenAI ``type``/``code`` strings are class attributes, as httpx and Starlette
do. Low-level exceptions (httpx, aiohttp, msgspec, sqlite3, redis) are translated into these
classes at one boundary each (``gateway.upstream.errors`` for the upstream), never leaked.
Messages are written for the caller: they never contain keys, stack traces or prompt text.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

__all__ = [
    "AuthenticationError",
    "ClientError",
    "ConfigError",
    "ConflictError",
    "FailoverReason",
    "GatewayError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PoolExhaustedError",
    "StoreUnavailableError",
    "UnprocessableError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamEventTooLargeError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "error_body",
]

FailoverReason = Literal["connect", "timeout", "5xx", "429", "invalid_response", "pool_exhausted"]
"""Why an upstream attempt failed, in the vocabulary of a route's ``failover_on`` list."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    Attributes:
        status_code: HTTP status sent to the client.
        error_type: OpenAI's ``error.type`` string.
        code: OpenAI's ``error.code`` string (or ``None``).
        param: the request field at fault, in OpenAI's ``error.param`` (or ``None``).
    """

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    def to_body(self) -> bytes:
        """The OpenAI error envelope, JSON-encoded: ``{"error": {message, type, param, code}}``."""
        return error_body(self.message, self.error_type, self.param, self.code)

    def headers(self) -> dict[str, str]:
        """Extra response headers (``retry-after`` on relayed 429s)."""
        return {}


class ConfigError(GatewayError):
    """The settings or the routes file are invalid; raised at start-up and by ``check-config``.

    ``problems`` holds one line per problem: ``file: key.path: what is wrong (fix)``.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ClientError(GatewayError):
    """4xx: the request must change before it can succeed."""

    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientError):
    """400: malformed JSON, a missing field, a field of the wrong type."""


class AuthenticationError(ClientError):
    """401: missing or unknown bearer key."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ClientError):
    """403: a valid key that may not do this (a client key on ``/admin``, a forbidden override)."""

    status_code = 403
    error_type = "permission_denied"
    default_code = "permission_denied"


class NotFoundError(ClientError):
    """404: no such resource."""

    status_code = 404
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    """404: the ``model`` is neither a route nor an allowed pass-through model."""

    default_code = "model_not_found"


class ConflictError(ClientError):
    """409: a compare-and-set lost (the resource changed since the caller read it).

    ``current`` carries the current state so the caller can retry without another read.
    """

    status_code = 409
    default_code = "version_conflict"

    def __init__(self, message: str, *, current: Any = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.current = current

    def to_body(self) -> bytes:
        """The envelope plus ``"current"``: the resource as it is now."""
        if self.current is None:
            return super().to_body()
        return _encode(
            {
                "error": _ErrorDetail(self.message, self.error_type, self.param, self.code),
                "current": self.current,
            }
        )


class PayloadTooLargeError(ClientError):
    """413: the request body is larger than ``GATEWAY_MAX_BODY_BYTES``."""

    status_code = 413
    default_code = "payload_too_large"


class UnprocessableError(ClientError):
    """422: well-formed input whose values are not acceptable."""

    status_code = 422
    default_code = "unprocessable_entity"


class UpstreamError(GatewayError):
    """The upstream failed. ``failover_reason`` says whether a route's failover policy applies."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"
    failover_reason: FailoverReason | None = "5xx"

    def __init__(self, message: str, *, upstream: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.upstream = upstream


class UpstreamConnectError(UpstreamError):
    """502: the upstream refused or dropped the connection before answering."""

    default_code = "upstream_connect_error"
    failover_reason = "connect"


class UpstreamTimeoutError(UpstreamError):
    """504: the upstream did not answer within its ``timeout_s``."""

    status_code = 504
    default_code = "upstream_timeout"
    failover_reason = "timeout"


class UpstreamProtocolError(UpstreamError):
    """502: the upstream's answer is not valid JSON or SSE of the OpenAI shape."""

    default_code = "upstream_invalid_response"
    failover_reason = "invalid_response"


class UpstreamEventTooLargeError(UpstreamProtocolError):
    """502: one SSE event of the upstream's stream is larger than
    ``GATEWAY_UPSTREAM__MAX_EVENT_BYTES``; the stream is ended and the upstream closed."""

    default_code = "upstream_event_too_large"


class PoolExhaustedError(UpstreamError):
    """503: every pooled connection to the upstream stayed busy for the pool timeout.

    The gateway's own saturation, not the upstream's failure: its failover reason is
    ``pool_exhausted`` (taken only to a fallback on another upstream, whose pool is not the
    exhausted one), and the guard never counts it against the variant.
    """

    status_code = 503
    error_type = "server_error"
    default_code = "pool_exhausted"
    failover_reason = "pool_exhausted"


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status.

    4xx answers about the client's request (400, 413, 422, 429) are relayed with the upstream's
    status and envelope; 401/403/404 mean the gateway's own upstream settings are wrong and
    become 502; 503 and 504 are kept; other 5xx become 502.
    """

    _RELAYED: ClassVar[frozenset[int]] = frozenset({400, 413, 415, 422, 429, 503, 504})

    def __init__(
        self,
        message: str,
        *,
        upstream: str,
        upstream_status: int,
        body: bytes | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message, upstream=upstream, code="upstream_status_" + str(upstream_status))
        self.upstream_status = upstream_status
        self.relayed_body = body if upstream_status < 500 else None
        self.retry_after = retry_after
        relayed = upstream_status in self._RELAYED
        self.status_code = upstream_status if relayed else 502
        self.failover_reason = None
        if upstream_status == 429:
            self.failover_reason = "429"
            self.error_type = "rate_limit_error"
        elif upstream_status >= 500:
            self.failover_reason = "5xx"
        elif relayed:
            self.error_type = "invalid_request_error"

    def to_body(self) -> bytes:
        if self.relayed_body is not None and self.upstream_status in self._RELAYED:
            return self.relayed_body
        return super().to_body()

    def headers(self) -> dict[str, str]:
        return {"retry-after": self.retry_after} if self.retry_after else {}


class StoreUnavailableError(GatewayError):
    """503: the flag store cannot be reached; the request path keeps its last snapshot."""

    status_code = 503
    error_type = "server_error"
    default_code = "flag_store_unavailable"


class _ErrorDetail(msgspec.Struct, omit_defaults=False):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode


def error_body(message: str, error_type: str, param: str | None, code: str | None) -> bytes:
    """Encode OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}``."""
    return _encode(_ErrorEnvelope(_ErrorDetail(message, error_type, param, code)))
