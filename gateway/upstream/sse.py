"""Server-sent events from an OpenAI-compatible upstream, parsed just enough to relay them.

The relay forwards each event's bytes unchanged; it decodes a chunk only into the few fields it
needs (content, tool call and refusal deltas, finish reason, usage, ``model``, an ``error``
object) with a typed msgspec decoder,
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
    "FunctionView",
    "SSEDecoder",
    "SSEEventTooLarge",
    "ToolCallView",
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


class FunctionView(msgspec.Struct):
    """A tool call's ``function``: its name and its arguments (JSON text, or a piece of it in a
    stream delta)."""

    name: str | None = None
    arguments: str | None = None


class ToolCallView(msgspec.Struct):
    """One entry of ``message.tool_calls`` or ``delta.tool_calls`` (deltas carry ``index``)."""

    index: int = 0
    function: FunctionView | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolCallView] | None = None
    refusal: str | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class ChunkView(msgspec.Struct):
    """The parts of a ``chat.completion.chunk`` the relay reads."""

    choices: list[_ChunkChoice] = []
    usage: Usage | None = None
    error: Any = None
    model: str | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolCallView] | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Message | None = None
    finish_reason: str | None = None


class CompletionView(msgspec.Struct):
    """The parts of a ``chat.completion`` the relay reads (``id``: the answer's, for the
    trace)."""

    choices: list[_Choice]
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None


_chunk_decoder = msgspec.json.Decoder(ChunkView)
_completion_decoder = msgspec.json.Decoder(CompletionView)


def decode_chunk(data: bytes) -> ChunkView:
    """Decode one event's data. Raises ``msgspec.DecodeError`` (incl. ``ValidationError``)."""
    return _chunk_decoder.decode(data)


def decode_completion(body: bytes) -> CompletionView:
    """Decode a non-streaming answer. Raises ``msgspec.DecodeError`` on garbage."""
    return _completion_decoder.decode(body)


class SSEEventTooLarge(ValueError):
    """One event grew past the decoder's ``max_event_bytes`` (the relay ends the stream)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event is larger than {limit} bytes")
        self.limit = limit


class SSEDecoder:
    """Split a byte stream into SSE events (blocks separated by a blank line).

    ``feed`` returns the complete events in the bytes seen so far, each without its terminating
    blank line; a partial event waits for the next chunk. CRLF line ends are normalised to LF.

    Work is linear in the bytes fed: each chunk is normalised and scanned once for the separator
    (one byte of overlap with the previous chunk aside) and kept as a piece; an event's pieces
    are joined once, when its blank line arrives. Nothing is re-copied as a partial event grows,
    so one chunk costs time in proportion to its own size (and the join of an event it ends).
    ``scanned`` counts the bytes searched, so tests can prove this without a clock.

    Raises:
        SSEEventTooLarge: from ``feed``, when an event (complete or still partial) is longer
            than ``max_event_bytes``. The decoder is then unusable; the stream must end.
    """

    __slots__ = ("_carry_cr", "_max", "_pieces", "_size", "scanned")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._pieces: list[bytes] = []  # the partial event, never containing a separator
        self._size = 0
        self._carry_cr = False
        self._max = max_event_bytes
        self.scanned = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._carry_cr:  # a CR held back from the previous chunk: it may start a CRLF
            chunk = b"\r" + chunk
            self._carry_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._carry_cr = True
        if b"\r\n" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        if not chunk:
            return []
        pieces = self._pieces
        events: list[bytes] = []
        at = 0
        if pieces and chunk[0] == 0x0A and pieces[-1][-1] == 0x0A:
            # The separator straddles the previous chunk and this one.
            pieces[-1] = pieces[-1][:-1]
            self._emit(events, b"")
            at = 1
        self.scanned += len(chunk) - at
        while True:
            end = chunk.find(b"\n\n", at)
            if end < 0:
                break
            self._emit(events, chunk[at:end])
            at = end + 2
        if at < len(chunk):
            rest = chunk[at:] if at else chunk
            pieces.append(rest)
            self._size += len(rest)
            self._check(self._size)
        return events

    def _emit(self, events: list[bytes], tail: bytes) -> None:
        """End the partial event with ``tail`` and add it to ``events`` unless it is empty."""
        pieces = self._pieces
        if pieces:
            pieces.append(tail)
            event = b"".join(pieces)
            pieces.clear()
            self._size = 0
        else:
            event = tail
        if event:
            self._check(len(event))
            events.append(event)

    def _check(self, size: int) -> None:
        if self._max is not None and size > self._max:
            raise SSEEventTooLarge(self._max)

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (non-empty when a stream was cut)."""
        return b"".join(self._pieces) + (b"\r" if self._carry_cr else b"")


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
