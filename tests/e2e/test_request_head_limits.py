"""Request heads are bounded in size (431) and in time (the connection is closed), over real
TCP against a ``gateway serve`` process with a small limit and a short timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests import quick_http
from tests.processes import GatewayProcess, routes_yaml, start_gateway

pytestmark = pytest.mark.e2e

MAX_HEADER_BYTES = 8192
HEADER_TIMEOUT_S = 0.5
WAIT_S = 10.0  # bound on every wait below


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    env = {
        "GATEWAY_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "GATEWAY_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    }
    routes = routes_yaml("http://127.0.0.1:9")  # no upstream is called here
    with start_gateway(tmp_path_factory.mktemp("heads"), routes, env=env) as gw:
        yield gw


def connect(gw: GatewayProcess) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=WAIT_S)


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket timeout)."""
    data = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            part = conn.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    return data


def test_an_oversized_header_gets_431_and_the_gateway_lives_on(gateway: GatewayProcess) -> None:
    """A 1 MiB header, sent in full as a client would: 431 and the connection closed long
    before the header is all sent; the next request is served."""
    with connect(gateway) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: ")
        try:
            for _ in range(64):
                conn.sendall(b"a" * 16384)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway hung up mid-header: what we want
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert quick_http.get(gateway.url + "/healthz", timeout=WAIT_S).status_code == 200


def test_many_headers_just_over_the_limit_in_one_send_get_431(gateway: GatewayProcess) -> None:
    """A head that arrives whole in one read is measured exactly."""
    headers = "".join(f"x-h{i}: {'v' * 100}\r\n" for i in range(MAX_HEADER_BYTES // 100))
    with connect(gateway) as conn:
        conn.sendall(f"GET /healthz HTTP/1.1\r\nhost: gw\r\n{headers}\r\n".encode())
        assert read_until_closed(conn).startswith(b"HTTP/1.1 431")
    ok = "".join(f"x-h{i}: {'v' * 100}\r\n" for i in range(MAX_HEADER_BYTES // 200))
    with connect(gateway) as conn:
        conn.sendall(f"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n{ok}\r\n".encode())
        assert read_until_closed(conn).startswith(b"HTTP/1.1 200")


def test_a_slowloris_connection_is_closed_after_the_header_timeout(
    gateway: GatewayProcess,
) -> None:
    """Headers started and never finished: closed (408) about HEADER_TIMEOUT_S later; a
    connection that sends nothing at all is closed too."""
    with connect(gateway) as partial, connect(gateway) as silent:
        started = time.monotonic()
        partial.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-slow: a")
        answer = read_until_closed(partial)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert read_until_closed(silent) == b""
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S * 0.5 <= elapsed < WAIT_S
