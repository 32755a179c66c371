"""``POST /v1/embeddings`` and ``POST /v1/completions``: pass-through for allowed models.

A lean relay on the raw ASGI data plane (dispatched by :class:`gateway.app.GatewayApp` before
Litestar, like chat): the client key (401/403), the body limit (413), the ``model`` looked up
among the routes file's ``passthrough:`` models (404 ``model_not_found`` for an unknown one; a
route name is a 400 ``model_not_supported``: routes are chat routes, with prompts and flags
that mean nothing to an embedding), then one call to the model's upstream at the same path
through the pooled :class:`~gateway.upstream.UpstreamPool` (its slots, deadline, error
translation and redaction of relayed error bodies). No flag, no failover, no contract: the
body is forwarded as sent and the answer relayed unchanged.

Tokens and cost come from the answer's ``usage`` (``prompt_tokens``, and ``completion_tokens``
for completions) and the routes file's ``prices``; the reply carries ``x-request-id`` and the
``x-gateway-*`` headers (variant and decision ``passthrough``) and every request ends in one
``request.completed`` event (``operation`` ``embeddings`` or ``completions``) through
:meth:`gateway.telemetry.Telemetry.finish`; with payload logging on, the event also carries the
``input`` or ``prompt`` (as ``messages``) and a completion's text.

``/v1/completions`` with ``"stream": true`` is relayed event by event as it arrives (the first
event read before the 200, as for chat: :mod:`gateway.upstream.stream_start`); the gateway asks
the upstream for usage (``stream_options.include_usage``) and drops that extra chunk for a
client that did not ask; a stream that breaks after its headers ends in an SSE error event.

With tracing on, the upstream call is a client span of its own (as a chat attempt's:
:meth:`gateway.telemetry.tracing.Tracing.start_attempt`), a child of the server span, named
``embeddings {model}`` or ``text_completion {model}`` (the GenAI conventions' operation names),
with ``gateway.variant`` and ``gateway.decision`` ``passthrough``; it ends with the answer (a
stream's with the stream) carrying ``gen_ai.usage.input_tokens`` (and ``output_tokens`` for
completions), ``gen_ai.response.model`` / ``gen_ai.response.id`` of a unary answer, or
``error.type``; its context is what the upstream gets. With tracing off the caller's trace
headers are forwarded as they came.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from time import perf_counter
from typing import Any, Literal

import anyio
import msgspec
from litestar import post

from gateway.api.disconnect import DisconnectWatch
from gateway.api.intake import read_body
from gateway.api.openai import internal_error_reply, new_request_id, send_reply
from gateway.config import Route, Variant
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    UpstreamError,
    UpstreamEventTooLargeError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway.relay import CLIENT_CLOSED_REQUEST, Headers, Reply, error_reply
from gateway.telemetry import RequestRecord
from gateway.telemetry.tracing import FORWARDED_HEADERS, Tracing, forwarded
from gateway.upstream import sse_error_event, translate_transport_error
from gateway.upstream.sse import DONE, SSEEventTooLarge, Usage, event_data
from gateway.upstream.stream_start import OpenedStream
from gateway.upstream.transport import TransportError

__all__ = [
    "COMPLETIONS_PATH",
    "EMBEDDINGS_PATH",
    "Operation",
    "PassthroughASGI",
    "passthrough_method_handlers",
    "passthrough_route",
]

EMBEDDINGS_PATH = "/v1/embeddings"
COMPLETIONS_PATH = "/v1/completions"
Operation = Literal["embeddings", "completions"]


def passthrough_method_handlers() -> list[Any]:
    """Litestar ``POST`` handlers registered at :data:`EMBEDDINGS_PATH` and
    :data:`COMPLETIONS_PATH` so that Litestar's router knows both paths: any other method is a
    405 with ``Allow`` in OpenAI's envelope (and ``OPTIONS`` is answered), as on the chat path.
    Every ``POST`` is answered by :class:`PassthroughASGI` before Litestar sees it, so the
    handlers themselves are never called; if one were, it raises (a 500 through the app's
    one boundary for the unexpected)."""

    async def not_dispatched() -> None:
        raise RuntimeError("POST on a pass-through path reached Litestar: the raw path is unset")

    return [
        post(path, status_code=200, include_in_schema=False, name=f"passthrough-{operation}")(
            not_dispatched
        )
        for path, operation in ((EMBEDDINGS_PATH, "embeddings"), (COMPLETIONS_PATH, "completions"))
    ]


_SSE_HEADERS: Headers = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _Head(msgspec.Struct):
    """The fields the pass-through reads; the body is forwarded as sent."""

    model: str
    stream: bool = False
    stream_options: _StreamOptions | None = None


class _UsageOnly(msgspec.Struct):
    usage: Usage | None = None


class _Traced(msgspec.Struct):
    """What a unary answer's client span records (read only with tracing on)."""

    usage: Usage | None = None
    model: str | None = None
    id: str | None = None


class _TextChoice(msgspec.Struct):
    index: int = 0
    text: str | None = None


class _TextChunk(msgspec.Struct):
    """The parts of a streamed ``text_completion`` event the relay reads."""

    choices: list[_TextChoice] = []
    usage: Usage | None = None
    error: Any = None


_decode_head = msgspec.json.Decoder(_Head).decode
_decode_usage = msgspec.json.Decoder(_UsageOnly).decode
_decode_traced = msgspec.json.Decoder(_Traced).decode
_decode_text_chunk = msgspec.json.Decoder(_TextChunk).decode
_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


def _parse(raw: bytes) -> _Head:
    """The head of a body. Raises InvalidRequestError (400) naming the field at fault."""
    try:
        return _decode_head(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = None
        if "`$." in text:  # e.g. "Expected `str`, got `int` - at `$.model`"
            param = text.rsplit("`$.", 1)[1].rstrip("`").split(".", 1)[0]
        elif "missing required field `" in text:
            param = text.split("missing required field `", 1)[1].split("`", 1)[0]
        raise InvalidRequestError(f"Invalid request: {text}", param=param) from None
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            "object."
        ) from None
    except RecursionError:
        raise InvalidRequestError("The JSON body is nested too deeply.") from None


def _with_usage(raw: bytes) -> bytes:
    """``raw`` with ``stream_options.include_usage`` set, so the stream reports its tokens."""
    try:
        body = _decode_json(raw)
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {})}
        body["stream_options"]["include_usage"] = True
        return _encode_json(body)
    except RecursionError:
        raise InvalidRequestError("The JSON body is nested too deeply.") from None


def passthrough_route(routes: dict[str, Route], model: str, operation: Operation) -> Route:
    """The pass-through route of ``model`` for ``operation`` (pure).

    Raises:
        ModelNotFoundError: ``model`` is neither a route nor a pass-through model (404).
        InvalidRequestError: ``model`` is a route (400 ``model_not_supported``): routes answer
            chat requests, with a variant's prompt and a flag; embeddings and legacy
            completions are served for pass-through models only.
    """
    route = routes.get(model)
    if route is None:
        raise ModelNotFoundError(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
        )
    if not route.passthrough:
        raise InvalidRequestError(
            f"'{model}' is a route of this gateway: routes serve /v1/chat/completions. "
            f"/v1/{operation} serves only the models the gateway allows as pass-through "
            "(GET /v1/models lists them with owned_by 'gateway-passthrough').",
            param="model",
            code="model_not_supported",
        )
    return route


class PassthroughASGI:
    """``POST /v1/embeddings`` or ``POST /v1/completions`` (``operation``) as a raw ASGI
    callable; see the module docstring. ``gw`` is the app's :class:`gateway.app.Gateway`."""

    __slots__ = (
        "_clock",
        "_keys",
        "_log_payloads",
        "_logger",
        "_max_body",
        "_metrics",
        "_operation",
        "_path",
        "_redactor",
        "_routes",
        "_routing_headers",
        "_telemetry",
        "_tracing",
        "_upstream_path",
        "_upstreams",
    )

    def __init__(
        self, gw: Any, operation: Operation, *, clock: Callable[[], float] = perf_counter
    ) -> None:
        self._operation: Operation = operation
        self._path = f"/v1/{operation}"
        self._upstream_path = f"/{operation}"
        self._routes: dict[str, Route] = gw.config.routes
        self._upstreams = gw.upstreams
        self._redactor = gw.upstreams.redactor
        self._telemetry = gw.telemetry
        self._metrics = gw.telemetry.metrics
        self._keys = gw.client_keys
        self._max_body: int = gw.settings.max_body_bytes
        self._logger = gw.logger
        self._log_payloads: bool = gw.settings.log_payloads
        self._clock = clock
        self._routing_headers: dict[str, Headers] = {}
        self._tracing: Tracing | None = getattr(gw, "tracing", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = perf_counter()
        authorization = given_id = length = trace_headers = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"x-request-id":
                given_id = value
            elif name in FORWARDED_HEADERS:  # traceparent, tracestate, baggage
                trace_headers = forwarded(trace_headers, name, value)
        request_id = new_request_id(None if given_id is None else given_id.decode("latin-1"))
        rec = RequestRecord(request_id, started, operation=self._operation)
        try:
            rec.client_key = self._keys.authenticate(
                None if authorization is None else authorization.decode("latin-1")
            )
            raw = await read_body(receive, length, self._max_body)
        except GatewayError as exc:
            await send_reply(send, self._reject(rec, exc))
            return
        if raw is None:  # the client left while sending its body
            return
        watch = DisconnectWatch(receive)
        try:
            try:
                reply = await self._answer(raw, rec, trace_headers)
            except Exception as exc:  # the one boundary for the unexpected: a 500, logged
                rec.status, rec.error_code = 500, "internal_error"
                self._telemetry.finish(rec)
                reply = internal_error_reply(self._logger, self._path, exc, request_id)
            await send_reply(send, reply, watch)
        except asyncio.CancelledError:
            if watch.absorbed():  # the 499 is recorded; nobody is left to answer
                return
            raise
        finally:
            watch.stop()

    def _reject(self, rec: RequestRecord, exc: GatewayError) -> Reply:
        """Finish ``rec`` with ``exc``; its error reply, with the routing headers known."""
        rec.status = exc.status_code
        rec.error_code = exc.code
        self._telemetry.finish(rec)
        reply = error_reply(exc, rec.request_id)
        if rec.route is not None:
            reply.headers.extend(self._routing(rec.route))
        return reply

    def _routing(self, route: str) -> Headers:
        headers = self._routing_headers.get(route)
        if headers is None:
            headers = self._routing_headers[route] = [
                (b"x-gateway-route", route.encode("latin-1")),
                (b"x-gateway-variant", b"passthrough"),
                (b"x-gateway-decision", b"passthrough"),
            ]
        return headers

    def _headers(self, rec: RequestRecord) -> Headers:
        assert rec.route is not None
        overhead = rec.overhead_seconds(self._clock()) * 1000
        return [
            (b"x-request-id", rec.request_id.encode("latin-1")),
            *self._routing(rec.route),
            (b"x-gateway-overhead-ms", b"%.3f" % overhead),
        ]

    def _start_span(
        self, rec: RequestRecord, variant: Variant, trace_headers: dict[str, str] | None
    ) -> tuple[Any, dict[str, str] | None]:
        """The upstream call's client span and the trace headers to send: ``(None,
        trace_headers)`` with tracing off, else a new span and its own context."""
        if self._tracing is None:
            return None, trace_headers
        assert rec.route is not None
        return self._tracing.start_attempt(
            operation=self._operation,
            route=rec.route,
            variant=variant.name,
            upstream=variant.upstream,
            model=variant.model,
            decision="passthrough",
            rollout_id=None,
        )

    def _span_usage(self, rec: RequestRecord) -> tuple[int | None, int | None]:
        """The span's usage: input tokens, and output tokens for completions only."""
        output = rec.output_tokens if self._operation == "completions" else None
        return rec.input_tokens, output

    async def _answer(
        self, raw: bytes, rec: RequestRecord, trace_headers: dict[str, str] | None = None
    ) -> Reply:
        """One request's reply (``trace_headers`` sent to the upstream). Never raises a
        GatewayError: it becomes the reply."""
        inflight = None
        try:
            head = _parse(raw)
            stream = head.stream and self._operation == "completions"
            rec.stream = stream
            route = passthrough_route(self._routes, head.model, self._operation)
            variant = route.variants[route.fallback]
            rec.route, rec.variant, rec.decision = route.name, variant.name, "passthrough"
            rec.upstream, rec.upstream_model = variant.upstream, variant.model
            rec.priced = variant.priced
            if self._log_payloads:
                rec.prompt = _payload(raw, "input" if self._operation == "embeddings" else "prompt")
            inflight = self._metrics.inflight_by_route[route.name]
            inflight.inc()
            if stream:
                wants_usage = head.stream_options is not None and head.stream_options.include_usage
                body = raw if wants_usage else _with_usage(raw)
                reply = await self._open_stream(
                    variant, body, rec, wants_usage, inflight, trace_headers
                )
                inflight = None  # the stream decrements it when it ends
                return reply
            return await self._unary(variant, raw, rec, trace_headers)
        except GatewayError as exc:
            return self._reject(rec, exc)
        except asyncio.CancelledError:
            # The client hung up before its answer (or a stream's first event): the upstream
            # call is cancelled with us.
            rec.status = CLIENT_CLOSED_REQUEST
            rec.client_disconnected = True
            self._telemetry.finish(rec)
            raise
        finally:
            if inflight is not None:
                inflight.dec()

    async def _unary(
        self,
        variant: Variant,
        raw: bytes,
        rec: RequestRecord,
        trace_headers: dict[str, str] | None = None,
    ) -> Reply:
        client = self._upstreams[variant.upstream]
        span, sent = self._start_span(rec, variant, trace_headers)
        t0 = self._clock()
        try:
            if span is None:
                answer = await client.send(
                    raw, request_id=rec.request_id, path=self._upstream_path, trace_headers=sent
                )
            else:  # current while it runs: HTTP client instrumentation nests under it
                with Tracing.current(span):
                    answer = await client.send(
                        raw, request_id=rec.request_id, path=self._upstream_path, trace_headers=sent
                    )
        except UpstreamError as exc:
            if span is not None:
                Tracing.failed(span, exc)
            self._telemetry.attempt_failed(rec, variant.upstream, exc)
            raise
        except BaseException as exc:  # the client left (cancelled), or a bug
            if span is not None:
                cancelled = isinstance(exc, asyncio.CancelledError)
                Tracing.failed(span, exc, "the client closed the request" if cancelled else None)
            raise
        finally:
            rec.add_upstream(self._clock() - t0)
        try:
            if span is None:
                usage = _decode_usage(answer.content).usage
            else:
                traced = _decode_traced(answer.content)
                usage = traced.usage
        except msgspec.DecodeError:
            invalid = UpstreamProtocolError(
                f"upstream '{variant.upstream}' answered with invalid JSON",
                upstream=variant.upstream,
            )
            if span is not None:
                Tracing.failed(span, invalid)
            raise invalid from None
        if usage is not None:
            rec.input_tokens = usage.prompt_tokens
            rec.output_tokens = usage.completion_tokens
        if span is not None:
            inputs, outputs = self._span_usage(rec) if usage is not None else (None, None)
            Tracing.succeeded(
                span,
                response_model=traced.model,
                response_id=traced.id,
                input_tokens=inputs,
                output_tokens=outputs,
            )
        rec.cost_usd = variant.cost_usd(rec.input_tokens, rec.output_tokens)
        if self._log_payloads and self._operation == "completions":
            rec.completion = _first_text(answer.content)
        headers = self._headers(rec)
        self._telemetry.finish(rec)
        return Reply(200, headers, answer.content)

    async def _open_stream(
        self,
        variant: Variant,
        body: bytes,
        rec: RequestRecord,
        wants_usage: bool,
        inflight: Any,
        trace_headers: dict[str, str] | None = None,
    ) -> Reply:
        client = self._upstreams[variant.upstream]
        span, sent = self._start_span(rec, variant, trace_headers)
        t0 = self._clock()
        try:
            if span is None:
                opened = await client.open_stream(
                    body, request_id=rec.request_id, path=self._upstream_path, trace_headers=sent
                )
            else:
                with Tracing.current(span):
                    opened = await client.open_stream(
                        body,
                        request_id=rec.request_id,
                        path=self._upstream_path,
                        trace_headers=sent,
                    )
        except UpstreamError as exc:
            if span is not None:
                Tracing.failed(span, exc)
            self._telemetry.attempt_failed(rec, variant.upstream, exc)
            raise
        except BaseException as exc:
            if span is not None:
                cancelled = isinstance(exc, asyncio.CancelledError)
                Tracing.failed(span, exc, "the client closed the request" if cancelled else None)
            raise
        finally:
            rec.add_upstream(self._clock() - t0)
        headers = self._headers(rec)
        headers += _SSE_HEADERS
        events = self._relay(opened, variant, rec, wants_usage, inflight, span)
        return Reply(200, headers, media_type="text/event-stream", stream=events)

    async def _relay(
        self,
        opened: OpenedStream,
        variant: Variant,
        rec: RequestRecord,
        wants_usage: bool,
        inflight: Any,
        span: Any = None,
    ) -> AsyncIterator[bytes]:
        """Relay the upstream's events as they arrive (first those read while opening); end in
        ``[DONE]`` or an error event. Tokens from the usage chunk, which a client that did not
        ask for it never sees. ``span``: the call's client span (tracing on), ended here."""
        decoder, chunks = opened.decoder, opened.chunks
        pending: list[bytes] | None = opened.events
        upstream = variant.upstream
        clock = self._clock
        parts: list[str] | None = [] if self._log_payloads else None
        done = False
        failed: GatewayError | None = None
        try:
            while failed is None and not done:
                if pending is not None:
                    events, pending = pending, None
                else:
                    t0 = clock()
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        rec.add_upstream(clock() - t0)
                        break
                    except TransportError as exc:
                        rec.add_upstream(clock() - t0)
                        failed = translate_transport_error(exc, upstream)
                        if not isinstance(failed, UpstreamTimeoutError):
                            failed = _interrupted(upstream, "broke the stream off")
                        break
                    rec.add_upstream(clock() - t0)
                    try:
                        events = decoder.feed(chunk)
                    except SSEEventTooLarge as exc:
                        self._telemetry.event_too_large(upstream)
                        failed = UpstreamEventTooLargeError(
                            f"upstream '{upstream}' sent a stream event larger than "
                            f"{exc.limit} bytes",
                            upstream=upstream,
                        )
                        break
                for event in events:
                    data = event_data(event)
                    if data is None:
                        yield event + b"\n\n"
                        continue
                    if data == DONE:
                        done = True
                        yield b"data: [DONE]\n\n"
                        break
                    try:
                        view = _decode_text_chunk(data)
                    except msgspec.DecodeError:
                        failed = UpstreamProtocolError(
                            f"upstream '{upstream}' sent an invalid stream event",
                            upstream=upstream,
                        )
                        break
                    if view.error is not None:
                        failed = UpstreamError(
                            f"upstream '{upstream}' reported an error mid-stream",
                            upstream=upstream,
                            code="upstream_stream_error",
                        )
                        yield self._redactor.bytes(event) + b"\n\n"
                        break
                    if view.usage is not None:
                        rec.input_tokens = view.usage.prompt_tokens
                        rec.output_tokens = view.usage.completion_tokens
                        if not view.choices and not wants_usage:
                            continue
                    for choice in view.choices:
                        if choice.index == 0 and choice.text:
                            if rec.ttft_seconds is None:
                                rec.ttft_seconds = clock() - rec.started
                            if parts is not None:
                                parts.append(choice.text)
                    yield event + b"\n\n"
            if failed is None and not done:
                failed = _interrupted(upstream, "ended the stream")
            if failed is not None:
                # The client already has a 200; the record keeps the failure for metrics/logs.
                rec.status = failed.status_code
                rec.error_code = failed.code
                if failed.code != "upstream_stream_error":  # that one was relayed as it came
                    yield sse_error_event(failed.message, failed.code or "upstream_error")
        except (GeneratorExit, asyncio.CancelledError):
            rec.client_disconnected = True
            rec.status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await opened.aclose()
            rec.cost_usd = variant.cost_usd(rec.input_tokens, rec.output_tokens)
            if parts is not None:
                rec.completion = "".join(parts)
            if span is not None:
                if failed is not None:
                    Tracing.failed(span, failed)
                elif rec.client_disconnected:
                    Tracing.failed(span, asyncio.CancelledError(), "the client closed the request")
                else:
                    counted = rec.input_tokens or rec.output_tokens
                    inputs, outputs = self._span_usage(rec) if counted else (None, None)
                    Tracing.succeeded(span, input_tokens=inputs, output_tokens=outputs)
            inflight.dec()
            self._telemetry.finish(rec)


def _payload(raw: bytes, field: str) -> Any:
    """The body's ``field`` (``input``, ``prompt``), for payload logging only."""
    try:
        body = _decode_json(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return body.get(field) if isinstance(body, dict) else None


def _first_text(content: bytes) -> str | None:
    """The first choice's ``text`` of a completion, for payload logging only."""
    try:
        choices = _decode_text_chunk(content).choices
    except msgspec.DecodeError:
        return None
    return choices[0].text if choices else None


def _interrupted(upstream: str, what: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(
        f"upstream '{upstream}' {what} before completion",
        upstream=upstream,
        code="stream_interrupted",
    )
