"""The start of an upstream stream: read up to its first data event before answering 200.

A stream request is committed to the client (status 200, SSE headers) only once the upstream's
first data event is in hand and is a chat completion chunk. Until then the answer may still be
an HTML error page, garbage, a JSON error object or an error event sent with status 200; those
are :class:`~gateway.errors.UpstreamProtocolError` (failover reason ``invalid_response``), so a
stream fails over exactly as a unary request does. The events read are handed on to the relay,
which sends them first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgspec

from gateway.errors import UpstreamEventTooLargeError, UpstreamProtocolError
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.sse import DONE, SSEDecoder, SSEEventTooLarge, decode_chunk, event_data
from gateway.upstream.transport import TransportError, TransportResponse

__all__ = ["FirstEventCheck", "OpenedStream", "check_chat_first", "read_first_event"]

FirstEventCheck = Callable[[bytes, str], None]
"""Judges a stream's first data event (its ``data`` bytes, the upstream's name); raises
:class:`~gateway.errors.UpstreamProtocolError` when it is not a valid start of the operation's
stream."""


@dataclass(slots=True)
class OpenedStream:
    """An upstream stream whose first data event has been read and checked.

    ``events`` are the complete events read so far (the first data event and any comments
    before it, plus whatever else arrived in the same chunks), in order; ``chunks`` and
    ``decoder`` continue where reading stopped (iterating ``chunks`` raises
    :class:`~gateway.upstream.transport.TransportError`). The owner must :meth:`aclose` it.
    """

    response: TransportResponse
    chunks: AsyncIterator[bytes]
    decoder: SSEDecoder
    events: list[bytes]
    release: Callable[[], None] | None = None
    """Gives the upstream's connection slot back (called once, by :meth:`aclose`)."""

    async def aclose(self) -> None:
        """Close the response and give its connection slot back (once; idempotent)."""
        release, self.release = self.release, None
        try:
            await self.response.aclose()
        finally:
            if release is not None:
                release()


async def read_first_event(
    response: TransportResponse,
    upstream: str,
    max_event_bytes: int,
    check_first: FirstEventCheck | None = None,
) -> OpenedStream:
    """Read ``response`` up to its first data event and check it (``check_first``, by default
    :func:`check_chat_first`).

    Does not close ``response`` on failure (the caller does, whatever the exception).

    Raises:
        UpstreamProtocolError: the body is JSON rather than an event stream, the first data
            event is not a chat completion chunk or carries an ``error``, or the stream ended
            before any data event.
        UpstreamEventTooLargeError: an event before or at the first is over ``max_event_bytes``.
        UpstreamError: the transport failed (translated as for any upstream call).
    """
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        raise UpstreamProtocolError(
            f"upstream '{upstream}' answered a stream request with JSON, not an event stream",
            upstream=upstream,
        )
    decoder = SSEDecoder(max_event_bytes)
    chunks = response.chunks().__aiter__()
    events: list[bytes] = []
    while True:
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            raise UpstreamProtocolError(
                f"upstream '{upstream}' ended the stream before its first event",
                upstream=upstream,
            ) from None
        except TransportError as exc:
            raise translate_transport_error(exc, upstream) from None
        try:
            new = decoder.feed(chunk)
        except SSEEventTooLarge as exc:
            raise UpstreamEventTooLargeError(
                f"upstream '{upstream}' sent a stream event larger than {exc.limit} bytes",
                upstream=upstream,
            ) from None
        events.extend(new)
        for event in new:
            data = event_data(event)
            if data is None:
                continue  # a comment (keep-alive) or an event without data
            if data != DONE:
                (check_first or check_chat_first)(data, upstream)
            return OpenedStream(response, chunks, decoder, events)


def check_chat_first(data: bytes, upstream: str) -> None:
    """The first data event must be a chat completion chunk without an ``error``."""
    try:
        view = decode_chunk(data)
    except msgspec.DecodeError:
        raise UpstreamProtocolError(
            f"upstream '{upstream}' began its stream with an invalid event", upstream=upstream
        ) from None
    if view.error is not None:
        raise UpstreamProtocolError(
            f"upstream '{upstream}' began its stream with an error event",
            upstream=upstream,
            code="upstream_stream_error",
        )
