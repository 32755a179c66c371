"""The error hierarchy: OpenAI's envelope, status codes, and upstream status relaying."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PoolExhaustedError,
    StoreUnavailableError,
    UnprocessableError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeoutError,
    error_body,
)


def envelope(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


def test_error_body_is_openais_envelope_with_all_four_fields() -> None:
    """error_body gives exactly {"error": {message, type, param, code}}, nulls included."""
    assert envelope(error_body("bad", "invalid_request_error", None, None)) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert envelope(error_body("m", "t", "messages", "c")) == {
        "error": {"message": "m", "type": "t", "param": "messages", "code": "c"}
    }


def test_gateway_error_body_carries_message_param_and_code() -> None:
    """A raised error's body carries its message, its class's type and the given param."""
    exc = InvalidRequestError("Invalid 'messages'", param="messages")
    assert envelope(exc.to_body()) == {
        "error": {
            "message": "Invalid 'messages'",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }
    assert exc.headers() == {}


def test_explicit_code_overrides_the_class_default() -> None:
    """code= replaces the class's default code."""
    assert AuthenticationError("x").code == "invalid_api_key"
    assert AuthenticationError("x", code="expired_key").code == "expired_key"


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "code"),
    [
        (InvalidRequestError("x"), 400, "invalid_request_error", None),
        (AuthenticationError("x"), 401, "invalid_request_error", "invalid_api_key"),
        (PermissionDeniedError("x"), 403, "permission_denied", "permission_denied"),
        (ModelNotFoundError("x"), 404, "invalid_request_error", "model_not_found"),
        (ConflictError("x"), 409, "invalid_request_error", "version_conflict"),
        (PayloadTooLargeError("x"), 413, "invalid_request_error", "payload_too_large"),
        (UnprocessableError("x"), 422, "invalid_request_error", "unprocessable_entity"),
        (UpstreamConnectError("x", upstream="u"), 502, "upstream_error", "upstream_connect_error"),
        (UpstreamTimeoutError("x", upstream="u"), 504, "upstream_error", "upstream_timeout"),
        (
            UpstreamProtocolError("x", upstream="u"),
            502,
            "upstream_error",
            "upstream_invalid_response",
        ),
        (PoolExhaustedError("x", upstream="u"), 503, "server_error", "pool_exhausted"),
        (StoreUnavailableError("x"), 503, "server_error", "flag_store_unavailable"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, GatewayError) else None,
)
def test_each_error_class_has_the_documented_status_type_and_code(
    exc: GatewayError, status: int, error_type: str, code: str | None
) -> None:
    """Status, OpenAI type and code follow the table in errors.py and DESIGN.md s4."""
    assert exc.status_code == status
    body = envelope(exc.to_body())["error"]
    assert (body["type"], body["code"]) == (error_type, code)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (UpstreamConnectError("x", upstream="u"), "connect"),
        (UpstreamTimeoutError("x", upstream="u"), "timeout"),
        (UpstreamProtocolError("x", upstream="u"), "invalid_response"),
        (PoolExhaustedError("x", upstream="u"), "pool_exhausted"),
    ],
)
def test_upstream_errors_carry_their_failover_reason(exc: Any, reason: str) -> None:
    """Each transport failure names the failover_on reason it matches."""
    assert exc.failover_reason == reason
    assert exc.upstream == "u"


def test_config_error_keeps_each_problem_and_joins_them_in_its_message() -> None:
    """ConfigError holds one line per problem and shows them all."""
    exc = ConfigError(["a.yaml: x: bad", "a.yaml: y: bad"])
    assert exc.problems == ["a.yaml: x: bad", "a.yaml: y: bad"]
    assert str(exc) == "a.yaml: x: bad\na.yaml: y: bad"


UPSTREAM_429 = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rl"}}'


def test_upstream_429_is_relayed_as_rate_limit_error_with_retry_after() -> None:
    """429 keeps its status and the upstream's body, sets rate_limit_error, relays retry-after,
    and is a '429' failover reason."""
    exc = UpstreamStatusError(
        "rate limited", upstream="openai", upstream_status=429, body=UPSTREAM_429, retry_after="7"
    )
    assert exc.status_code == 429
    assert exc.error_type == "rate_limit_error"
    assert exc.failover_reason == "429"
    assert exc.headers() == {"retry-after": "7"}
    assert exc.to_body() == UPSTREAM_429


def test_upstream_429_without_body_gets_our_rate_limit_envelope() -> None:
    """A 429 with no body is answered with our envelope of type rate_limit_error, no header."""
    exc = UpstreamStatusError("rate limited", upstream="openai", upstream_status=429)
    assert exc.headers() == {}
    assert envelope(exc.to_body())["error"]["type"] == "rate_limit_error"
    assert envelope(exc.to_body())["error"]["code"] == "upstream_status_429"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_upstream_auth_and_not_found_become_502_without_relaying_the_body(status: int) -> None:
    """401/403/404 mean the gateway's upstream settings are wrong: 502, our envelope (the
    upstream's body may mention the upstream key), and no failover."""
    secret_body = b'{"error": {"message": "Incorrect API key provided: sk-abc***"}}'
    exc = UpstreamStatusError(
        "bad key", upstream="openai", upstream_status=status, body=secret_body
    )
    assert exc.status_code == 502
    assert exc.failover_reason is None
    body = exc.to_body()
    assert b"sk-abc" not in body
    assert envelope(body)["error"]["code"] == f"upstream_status_{status}"


@pytest.mark.parametrize("status", [503, 504])
def test_upstream_503_and_504_are_kept(status: int) -> None:
    """503 and 504 keep their status and count as 5xx for failover."""
    exc = UpstreamStatusError("busy", upstream="u", upstream_status=status, body=b"<html/>")
    assert exc.status_code == status
    assert exc.failover_reason == "5xx"
    assert envelope(exc.to_body())["error"]["message"] == "busy"


@pytest.mark.parametrize("status", [500, 502, 520])
def test_other_upstream_5xx_become_502(status: int) -> None:
    """500, 502 and other 5xx become 502 with our envelope; failover reason 5xx."""
    exc = UpstreamStatusError("boom", upstream="u", upstream_status=status, body=b"Traceback...")
    assert exc.status_code == 502
    assert exc.failover_reason == "5xx"
    assert b"Traceback" not in exc.to_body()
    assert envelope(exc.to_body())["error"]["type"] == "upstream_error"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_upstream_client_errors_relay_the_upstream_body(status: int) -> None:
    """400/413/422 are about the client's request: same status, the upstream's body verbatim,
    invalid_request_error, no failover."""
    upstream_body = b'{"error": {"message": "max_tokens is too large", "param": "max_tokens"}}'
    exc = UpstreamStatusError("bad", upstream="u", upstream_status=status, body=upstream_body)
    assert exc.status_code == status
    assert exc.to_body() == upstream_body
    assert exc.error_type == "invalid_request_error"
    assert exc.failover_reason is None
