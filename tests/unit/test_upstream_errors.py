"""Transport exceptions (ours, aiohttp, httpx, aiohttp under httpx-aiohttp) translated into
UpstreamError."""

from __future__ import annotations

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from gateway.errors import (
    PoolExhaustedError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.transport import TransportError, error_kind

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def connector_error() -> aiohttp.ClientConnectorError:
    """A real aiohttp connection-refused error, as TCPConnector raises it."""
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, OSError(111, "Connection refused"))


def raised_from(exc: Exception, cause: BaseException) -> Exception:
    """``exc`` as actually raised ``from cause`` (so ``__cause__`` is set by Python)."""
    try:
        raise exc from cause
    except Exception as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "expected", "reason", "status"),
    [
        (httpx.ConnectError("refused", request=REQUEST), UpstreamConnectError, "connect", 502),
        (httpx.ReadTimeout("read", request=REQUEST), UpstreamTimeoutError, "timeout", 504),
        (httpx.ConnectTimeout("slow", request=REQUEST), UpstreamTimeoutError, "timeout", 504),
        (httpx.WriteTimeout("slow", request=REQUEST), UpstreamTimeoutError, "timeout", 504),
        (
            httpx.PoolTimeout("pool", request=REQUEST),
            PoolExhaustedError,
            "pool_exhausted",
            503,
        ),
        (TimeoutError(), UpstreamTimeoutError, "timeout", 504),
        (httpx.RemoteProtocolError("eof", request=REQUEST), UpstreamConnectError, "connect", 502),
        (httpx.ReadError("reset", request=REQUEST), UpstreamConnectError, "connect", 502),
    ],
    ids=[
        "ConnectError",
        "ReadTimeout",
        "ConnectTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutError",
        "RemoteProtocolError",
        "ReadError",
    ],
)
def test_httpx_exceptions_map_to_the_right_class_and_failover_reason(
    exc: BaseException, expected: type[UpstreamError], reason: str, status: int
) -> None:
    """Plain httpx exceptions: connect -> 502 connect, timeouts -> 504 timeout, pool -> 503
    pool_exhausted."""
    out = translate_transport_error(exc, "sim")
    assert type(out) is expected
    assert out.failover_reason == reason
    assert out.status_code == status
    assert out.upstream == "sim"
    assert "'sim'" in out.message


def test_refused_connection_reported_as_connect_timeout_by_httpx_aiohttp_is_connect() -> None:
    """httpx-aiohttp raises ConnectTimeout from ClientConnectorError for a refused connection:
    the aiohttp cause wins, so it is a connect failure (502), not a timeout (504)."""
    exc = raised_from(httpx.ConnectTimeout("cannot connect", request=REQUEST), connector_error())
    assert isinstance(exc.__cause__, aiohttp.ClientConnectorError)
    out = translate_transport_error(exc, "sim")
    assert type(out) is UpstreamConnectError
    assert out.failover_reason == "connect"
    assert out.status_code == 502


def test_aiohttp_server_timeout_cause_is_a_timeout() -> None:
    """A ServerTimeoutError under any httpx class is a timeout."""
    exc = raised_from(httpx.ReadError("x", request=REQUEST), aiohttp.ServerTimeoutError("slow"))
    out = translate_transport_error(exc, "sim")
    assert type(out) is UpstreamTimeoutError
    assert out.failover_reason == "timeout"


def test_aiohttp_disconnect_cause_is_a_connect_failure() -> None:
    """A server that drops the connection (ServerDisconnectedError) is a connect failure even if
    httpx-aiohttp wrapped it in a timeout class."""
    exc = raised_from(
        httpx.ReadTimeout("x", request=REQUEST), aiohttp.ServerDisconnectedError("gone")
    )
    out = translate_transport_error(exc, "sim")
    assert type(out) is UpstreamConnectError
    assert out.failover_reason == "connect"


def test_translated_message_does_not_leak_the_low_level_text() -> None:
    """The caller sees the upstream's name, not the low-level exception text."""
    exc = raised_from(
        httpx.ConnectTimeout("secret-host:9 details", request=REQUEST), connector_error()
    )
    out = translate_transport_error(exc, "sim")
    assert "secret-host" not in out.message
    assert "127.0.0.1" not in out.message


@pytest.mark.parametrize(
    ("exc", "expected", "reason"),
    [
        (connector_error(), UpstreamConnectError, "connect"),
        (aiohttp.ServerTimeoutError("slow"), UpstreamTimeoutError, "timeout"),
        (aiohttp.ConnectionTimeoutError("slow"), UpstreamTimeoutError, "timeout"),
        (aiohttp.ServerDisconnectedError("gone"), UpstreamConnectError, "connect"),
        (aiohttp.ClientPayloadError("cut"), UpstreamConnectError, "connect"),
        (TransportError("pool"), PoolExhaustedError, "pool_exhausted"),
        (TransportError("timeout"), UpstreamTimeoutError, "timeout"),
    ],
    ids=["refused", "read-timeout", "connect-timeout", "disconnected", "payload", "pool", "kind"],
)
def test_aiohttp_exceptions_and_transport_errors_translate_directly(
    exc: BaseException, expected: type[UpstreamError], reason: str
) -> None:
    """The gateway's own aiohttp transport raises TransportError from aiohttp's exceptions;
    both translate to the class and failover reason of the httpx-wrapped spellings."""
    wrapped = raised_from(TransportError(error_kind(exc)), exc)
    for candidate in (exc, wrapped):
        out = translate_transport_error(candidate, "sim")
        assert type(out) is expected
        assert out.failover_reason == reason
        assert "'sim'" in out.message
