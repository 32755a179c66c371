"""Server-sent events from an OpenAI-compatible upstream, parsed just enough to relay them.

The relay forwards each event's bytes unchanged; it decodes a chunk only into the few fields it
needs (content deltas, finish reason, usage, an ``error`` object) with a typed msgspec decoder,
which skips every other field without building it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import error_body

__all__ = [
    "DONE",
    "ChunkView",
    "CompletionView",
    "SSEDecoder",
    "Usage",
    "decode_chunk",
    "decode_completion",
    "event_data",
    "sse_error_event",
]

DONE = b"[DONE]"


class Usage(msgspec.Struct):
    """Token counts as OpenAI reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class ChunkView(msgspec.Struct):
    """The parts of a ``chat.completion.chunk`` the relay reads."""

    choices: list[_ChunkChoice] = []
    usage: Usage | None = None
    error: Any = None


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Message | None = None
    finish_reason: str | None = None


class CompletionView(msgspec.Struct):
    """The parts of a ``chat.completion`` the relay reads."""

    choices: list[_Choice]
    usage: Usage | None = None


_chunk_decoder = msgspec.json.Decoder(ChunkView)
_completion_decoder = msgspec.json.Decoder(CompletionView)


def decode_chunk(data: bytes) -> ChunkView:
    """Decode one event's data. Raises ``msgspec.DecodeError`` (incl. ``ValidationError``)."""
    return _chunk_decoder.decode(data)


def decode_completion(body: bytes) -> CompletionView:
    """Decode a non-streaming answer. Raises ``msgspec.DecodeError`` on garbage."""
    return _completion_decoder.decode(body)


class SSEDecoder:
    """Split a byte stream into SSE events (blocks separated by a blank line).

    ``feed`` returns the complete events in the bytes seen so far, each without its terminating
    blank line; a partial event waits for the next chunk. CRLF line ends are normalised to LF.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        *events, self._buffer = buffer.split(b"\n\n")
        return [e for e in events if e]

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (non-empty when a stream was cut)."""
        return self._buffer


def event_data(event: bytes) -> bytes | None:
    """The ``data`` of one event (several data lines joined by LF), or ``None`` if it has none."""
    if event.startswith(b"data:") and b"\n" not in event:
        data = event[5:]
        return data[1:] if data.startswith(b" ") else data
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:]
            parts.append(data[1:] if data.startswith(b" ") else data)
    return b"\n".join(parts) if parts else None


def sse_error_event(message: str, code: str, error_type: str = "upstream_error") -> bytes:
    """An SSE event carrying OpenAI's error envelope; the OpenAI SDKs raise ``APIError`` on it."""
    return b"data: " + error_body(message, error_type, None, code) + b"\n\n"
