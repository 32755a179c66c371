"""Streams: a small state machine per stream (upstream events in, client bytes out) and the
loop that feeds it from the upstream.

:class:`StreamMachine` holds what a stream is doing: whether the upstream said it is complete
(``done``), the failure that ends it (``failed``), the text assembled for the contract. Each
operation interprets its own events (:class:`ChatStream` here; the Responses API's in
:mod:`gateway.relay.responses`); none does I/O, so they are tested by feeding them events.

:func:`relay_stream` is the I/O around it: it reads upstream chunks (timing each wait as
upstream time), splits them into events (:class:`~gateway.upstream.SSEDecoder`, size-capped),
feeds the machine and yields what it returns, as the events arrive; a cut or oversized stream
becomes an error event; a client that leaves is recorded as 499. However it ends, the upstream
response is closed and ``on_end`` runs once (accounting, the contract, telemetry).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import anyio
import msgspec

from gateway.errors import (
    GatewayError,
    UpstreamError,
    UpstreamEventTooLargeError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway.quality.answer import AnswerAssembler
from gateway.relay.operation import Answer
from gateway.relay.reply import CLIENT_CLOSED_REQUEST
from gateway.routing.response_model import StreamModel
from gateway.telemetry import RequestRecord, Telemetry
from gateway.upstream import decode_chunk, sse_error_event, translate_transport_error
from gateway.upstream.redact import Redactor
from gateway.upstream.sse import DONE, SSEEventTooLarge, event_data
from gateway.upstream.stream_start import OpenedStream
from gateway.upstream.transport import TransportError

__all__ = ["ChatStream", "StreamMachine", "relay_stream"]

_END = b"\n\n"
_DONE_EVENT = b"data: [DONE]\n\n"


class StreamMachine:
    """The state of one relayed stream; subclasses interpret their operation's events.

    ``feed`` takes complete SSE events (without their blank line) and returns the bytes for
    the client (``b""``: nothing to send); it sets ``done`` when the upstream completed the
    answer and ``failed`` when the stream must end. After the last event, :meth:`close` says
    how the stream ends for the client.
    """

    __slots__ = (
        "answered_model",
        "clock",
        "done",
        "failed",
        "model",
        "parts",
        "rec",
        "redactor",
        "relayed_error",
        "upstream",
    )

    def __init__(
        self,
        rec: RequestRecord,
        upstream: str,
        redactor: Redactor,
        clock: Callable[[], float],
    ) -> None:
        self.rec = rec
        self.upstream = upstream
        self.redactor = redactor
        self.clock = clock
        self.done = False
        self.failed: GatewayError | None = None
        self.relayed_error = False
        """The upstream's own error event was relayed (redacted): no second one is added."""
        self.parts: list[str] = []
        self.model: StreamModel | None = None
        """Set by :meth:`show_model`: the model the client sees in each event."""
        self.answered_model: str | None = None
        """The model the upstream says answered (the first event that names one): traces."""

    def show_model(self, model: bytes) -> None:
        """Events go to the client with ``model`` (a JSON string, the route's name) as their
        top-level ``model`` (the route's ``response_model: route``)."""
        self.model = StreamModel(model)

    def feed(self, events: list[bytes]) -> bytes:
        """Client bytes for ``events`` (see the class docstring)."""
        raise NotImplementedError

    def interrupt(self, error: GatewayError) -> None:
        """The upstream failed under the stream (cut, timeout, oversized event)."""
        self.failed = error

    def close(self) -> bytes:
        """The last bytes for the client once no more events come: an error event when the
        stream failed or ended before the upstream completed it (``stream_interrupted``), else
        nothing. A failure is recorded on the request (status, ``error_code``); the client
        already has its 200."""
        failed = self.failed
        if failed is None:
            if self.done:
                return b""
            failed = self.failed = UpstreamProtocolError(
                f"upstream '{self.upstream}' ended the stream before completion",
                upstream=self.upstream,
                code="stream_interrupted",
            )
        self.rec.status = failed.status_code
        self.rec.error_code = failed.code
        if self.relayed_error:
            return b""
        return self.error_event(failed)

    def invalid_event(self) -> UpstreamProtocolError:
        """The failure of a stream whose event is not what the operation expects."""
        return UpstreamProtocolError(
            f"upstream '{self.upstream}' sent an invalid stream event", upstream=self.upstream
        )

    def error_event(self, failed: GatewayError) -> bytes:
        """The event that tells the client its stream failed (OpenAI's error envelope)."""
        return sse_error_event(failed.message, failed.code or "upstream_error")

    def text(self) -> str:
        """The answer's text assembled so far."""
        return "".join(self.parts)

    def answer(self) -> Answer:
        """The assembled answer, as the contract judges it."""
        return Answer(b"", self.text())

    def _content(self, text: str) -> None:
        """Answer text arrived: the first is the time to first token, each later one a time per
        output chunk."""
        self.rec.content_chunk(self.clock())
        self.parts.append(text)


class ChatStream(StreamMachine):
    """A chat completion stream: ``data:`` chunks, then ``data: [DONE]``.

    Chunks are relayed unchanged but for their ``model`` (:meth:`StreamMachine.show_model`);
    index 0's deltas are the answer: content pieces its text, tool call pieces its tool calls
    (assembled by index) and refusal pieces its refusal; the usage
    chunk (the gateway always asks for it) sets the tokens and is relayed only if the client
    asked for it (``stream_options.include_usage``). An ``error`` chunk is relayed with
    secrets redacted and ends the stream (``upstream_stream_error``); a chunk that is not a
    chat completion chunk ends it (``upstream_invalid_response``); so does ``[DONE]``
    (complete; anything after it is dropped).
    """

    __slots__ = ("assembler", "wants_usage")

    def __init__(
        self,
        rec: RequestRecord,
        upstream: str,
        redactor: Redactor,
        clock: Callable[[], float],
        *,
        wants_usage: bool = False,
    ) -> None:
        super().__init__(rec, upstream, redactor, clock)
        self.wants_usage = wants_usage
        self.assembler = AnswerAssembler()

    def feed(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        rec = self.rec
        for event in events:
            data = event_data(event)
            if data is None:  # a comment (keep-alive) or an event without data
                out.append(event + _END)
                continue
            if data == DONE:
                self.done = True
                out.append(_DONE_EVENT)
                break
            try:
                view = decode_chunk(data)
            except msgspec.DecodeError:
                self.failed = self.invalid_event()
                break
            if view.error is not None:
                self.failed = UpstreamError(
                    f"upstream '{self.upstream}' reported an error mid-stream",
                    upstream=self.upstream,
                    code="upstream_stream_error",
                )
                self.relayed_error = True
                out.append(self.redactor.bytes(event) + _END)
                break
            if self.answered_model is None:
                self.answered_model = view.model
            if view.usage is not None:
                rec.input_tokens = view.usage.prompt_tokens
                rec.output_tokens = view.usage.completion_tokens
                if not view.choices and not self.wants_usage:
                    continue
            for choice in view.choices:
                delta = choice.delta
                if choice.index != 0 or delta is None:
                    continue
                if delta.content:
                    self._content(delta.content)
                if delta.tool_calls:
                    if rec.ttft_seconds is None:
                        rec.ttft_seconds = self.clock() - rec.started
                    self.assembler.tool_calls(delta.tool_calls)
                if delta.refusal:
                    self.assembler.refusal(delta.refusal)
            if self.model is not None:
                out.append(self.model.event(event, data, view.model) + _END)
            else:
                out.append(event + _END)
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _content(self, text: str) -> None:
        rec = self.rec
        if rec.ttft_seconds is None:
            rec.ttft_seconds = self.clock() - rec.started
        self.assembler.text(text)

    def text(self) -> str:
        return self.assembler.text_so_far

    def answer(self) -> Answer:
        """The assembled answer: its text, tool calls and refusal."""
        judged = self.assembler.answer()
        return Answer(b"", judged.text, judged=judged)


async def relay_stream(
    opened: OpenedStream,
    machine: StreamMachine,
    telemetry: Telemetry,
    on_end: Callable[[], None],
) -> AsyncIterator[bytes]:
    """Relay ``opened`` through ``machine`` (see the module docstring): first the events read
    while opening the stream, then each upstream chunk's as it arrives."""
    rec, upstream, clock = machine.rec, machine.upstream, machine.clock
    try:
        out = machine.feed(opened.events)
        if out:
            yield out
        chunks, decoder = opened.chunks, opened.decoder
        while machine.failed is None:
            t0 = clock()
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                rec.add_upstream(clock() - t0)
                break
            except TransportError as exc:
                rec.add_upstream(clock() - t0)
                machine.interrupt(_broken_off(exc, upstream))
                break
            rec.add_upstream(clock() - t0)
            if machine.done:
                continue  # read to the end, so the connection can be reused
            try:
                events = decoder.feed(chunk)
            except SSEEventTooLarge as exc:
                telemetry.event_too_large(upstream)
                machine.interrupt(
                    UpstreamEventTooLargeError(
                        f"upstream '{upstream}' sent a stream event larger than {exc.limit} bytes",
                        upstream=upstream,
                    )
                )
                break
            out = machine.feed(events)
            if out:
                yield out
        out = machine.close()
        if out:
            yield out
    except (GeneratorExit, asyncio.CancelledError):
        rec.client_disconnected = True
        rec.status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await opened.aclose()
        on_end()


def _broken_off(exc: TransportError, upstream: str) -> UpstreamError:
    """A transport failure under a stream: a timeout stays one, anything else is a stream the
    upstream broke off (``stream_interrupted``)."""
    failed = translate_transport_error(exc, upstream)
    if isinstance(failed, UpstreamTimeoutError):
        return failed
    return UpstreamProtocolError(
        f"upstream '{upstream}' broke the stream off before completion",
        upstream=upstream,
        code="stream_interrupted",
    )
