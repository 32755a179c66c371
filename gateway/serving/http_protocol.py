"""Request-head limits for uvicorn's httptools protocol: size (431) and time to arrive.

uvicorn bounds neither with its httptools parser (the one ``gateway serve`` runs: faster than
h11): httptools buffers a header line until it is complete, however long, and
``timeout_keep_alive`` only runs between requests, so four 64 MB headers grew the process by
400 MB, and a connection that never finished its headers stayed open for ever. (uvicorn's h11
parser has ``h11_max_incomplete_event_size``, 16 KiB by default, answered with a 400; it has no
header timeout either.)

:class:`LimitedHttpToolsProtocol` adds both, from the server config's :class:`HeadLimits`:

* **Size.** While a request head is incomplete, the bytes received for it are counted before
  httptools sees more of them; past ``max_bytes`` the client gets ``431 Request Header Fields
  Too Large`` and the connection is closed, so at most ``max_bytes`` plus one read (64 KiB) is
  ever buffered. A head that completes within one read is measured exactly (request line and
  headers) and gets the same 431.
* **Time.** From the connection's start, and from the first byte of each later request on a
  kept-alive connection, the head must be complete within ``timeout_s``; otherwise the
  connection is closed (with ``408 Request Timeout`` if part of a head had arrived).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HeadLimits", "LimitedHttpToolsProtocol"]


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """``max_bytes``: request line plus headers; ``timeout_s``: time for a head to arrive."""

    max_bytes: int = 32 * 1024
    timeout_s: float = 10.0


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing; uvicorn then calls send_400_response."""


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


_TOO_LARGE = _response(
    b"431 Request Header Fields Too Large",
    b'{"error": {"message": "Request header fields too large.", '
    b'"type": "invalid_request_error", "param": null, "code": "headers_too_large"}}',
)
_TIMEOUT = _response(
    b"408 Request Timeout",
    b'{"error": {"message": "The request headers did not arrive in time.", '
    b'"type": "invalid_request_error", "param": null, "code": "request_timeout"}}',
)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits of ``config.head_limits``."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits: HeadLimits = getattr(config, "head_limits", None) or HeadLimits()
        self._max_head = limits.max_bytes
        self._head_timeout_s = limits.timeout_s
        self._in_head = True  # the bytes arriving now belong to a request head
        self._head_received = 0  # raw bytes received while in a head
        self._head_measured = 0  # request line and headers as parsed
        self._head_rejected = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        if self._in_head and self._head_received > self._max_head and not self._head_rejected:
            self._reject(_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        if self._head_rejected:  # our own callback stopped the parser; the 431 is on its way
            return
        super().send_400_response(msg)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_measured = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._measure(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._measure(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # whatever comes next on this connection is the next head

    # -- helpers ---------------------------------------------------------------------------

    def _measure(self, size: int) -> None:
        self._head_measured += size
        if self._head_measured > self._max_head:
            self._reject(_TOO_LARGE)
            raise _HeadTooLarge

    def _reject(self, response: bytes) -> None:
        self._head_rejected = True
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_received:
            self._reject(_TIMEOUT)
        else:  # nothing of a request arrived: just hang up, as the keep-alive timeout does
            self._head_rejected = True
            self.transport.close()
