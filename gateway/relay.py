"""The relay: one chat completion from client request to upstream and back.

Per request it validates just the fields routing needs, resolves the route, takes the flag's
decision, applies the chosen variant's prompt, model and parameters, calls the upstream, fails
over to the fallback when the candidate's upstream fails before any byte reached the client, and
relays the answer (the upstream's bytes unchanged; SSE events as they arrive). Every request ends
in exactly one :class:`~gateway.telemetry.RequestRecord` handed to telemetry.

I/O is at the edges (the upstream pool, the clock); decisions are the pure functions of
:mod:`gateway.routing`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import anyio
import msgspec

from gateway.config import GatewayConfig, Route, Variant
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    PoolExhaustedError,
    UpstreamError,
    UpstreamEventTooLargeError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
)
from gateway.quality.answer import Answer, AnswerAssembler, answer_from_message
from gateway.quality.monitor import QualityMonitor
from gateway.quality.shadow import ShadowRunner
from gateway.routing import Decision, FlagSource, FlagState, decide
from gateway.routing.payload import build_request
from gateway.routing.response_model import StreamModel, encode_model, replace_model
from gateway.telemetry import RequestRecord, Telemetry
from gateway.upstream import (
    UpstreamPool,
    decode_chunk,
    decode_completion,
    sse_error_event,
    translate_transport_error,
)
from gateway.upstream.sse import DONE, SSEEventTooLarge, event_data
from gateway.upstream.stream_start import OpenedStream
from gateway.upstream.transport import TransportError

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "MAX_JSON_DEPTH",
    "CallContext",
    "ChatRelay",
    "Headers",
    "Reply",
    "error_reply",
    "parse_chat_request",
]

CLIENT_CLOSED_REQUEST = 499
"""Status recorded (never sent) when the client went away before its answer was complete, as
nginx logs it. The guard never counts it against a variant."""

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in a request body. Deeper bodies are a 400:
nothing in the Chat Completions API nests this deep (a tool's JSON schema rarely passes 20),
and Python-level recursion (decoding, encoding, logging) must stay far from its limit."""

_FAILOVER = Decision("fallback", "failover")
_PASSTHROUGH = Decision("fallback", "passthrough")
_SHADOW = Decision("fallback", "shadow")
_VIOLATION = Decision("fallback", "violation")
_JSON = "application/json"
_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]

Headers = list[tuple[bytes, bytes]]
"""Response headers as ASGI sends them: (lower-case name, value) pairs, latin-1 bytes."""


class _Message(msgspec.Struct):
    role: str


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatHead(msgspec.Struct):
    """The request fields routing needs; everything else is forwarded untouched."""

    model: str
    messages: list[_Message]
    stream: bool = False
    user: str | None = None
    stream_options: _StreamOptions | None = None


_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatHead]:
    """Decode a chat completion request body.

    Returns:
        The whole body as a dict (forwarded) and its validated head.

    Raises:
        InvalidRequestError: not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, not an
            object, a required field missing, a wrong type, or an empty ``messages`` list;
            ``param`` names the field.
    """
    try:
        body = _decode_json(raw)
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    except RecursionError:  # msgspec stops at Python's recursion limit (~1,000 levels)
        raise _too_deep() from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nested_deeper(body, MAX_JSON_DEPTH):
        raise _too_deep()
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        head = msgspec.convert(body, ChatHead)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = None
        if "`$." in text:
            param = text.rsplit("`$.", 1)[1].rstrip("`").split("[", 1)[0].split(".", 1)[0]
        elif "missing required field `" in text:  # top level: msgspec gives no `$.` path
            param = text.split("missing required field `", 1)[1].split("`", 1)[0]
        raise InvalidRequestError(f"Invalid request: {text}", param=param) from None
    if not head.messages:
        raise InvalidRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    return body, head


def _too_deep() -> InvalidRequestError:
    return InvalidRequestError(
        f"The JSON body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and "
        "objects are accepted."
    )


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels (iterative: a deep
    value cannot exhaust the stack). Called only when the body has more brackets than
    ``limit``, so ordinary requests never pay for the walk."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


@dataclass(slots=True)
class CallContext:
    """Who is calling and what they asked for in headers."""

    request_id: str
    started: float
    key_name: str | None = None
    may_override: bool = False
    subject: str | None = None
    forced_variant: str | None = None


@dataclass(slots=True)
class Reply:
    """What the HTTP layer sends: a body, or an async iterator of SSE bytes. ``headers`` are
    ASGI pairs without ``content-type`` (from ``media_type``) and ``content-length``."""

    status: int
    headers: Headers
    body: bytes = b""
    media_type: str = _JSON
    stream: AsyncIterator[bytes] | None = None

    def header_dict(self) -> dict[str, str]:
        """``headers`` as a dict of text, for a Litestar ``Response``."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}


def error_reply(
    exc: GatewayError, request_id: str, extra_headers: dict[str, str] | None = None
) -> Reply:
    """The one mapping of an error to its reply: ``exc``'s status, OpenAI's error envelope,
    ``x-request-id`` and the error's own headers (``retry-after``), then ``extra_headers``
    (e.g. ``allow`` on a 405). The data plane sends it as is; Litestar's exception handlers
    turn it into a ``Response`` (``gateway.api.openai.to_response``)."""
    headers: Headers = [(b"x-request-id", request_id.encode("latin-1"))]
    for name, value in exc.headers().items():
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if extra_headers:
        for name, value in extra_headers.items():
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return Reply(exc.status_code, headers, exc.to_body())


def _answer(view: Any) -> Answer | None:
    """The first choice's answer in a unary completion view (``None``: no message)."""
    return answer_from_message(view.choices[0].message) if view.choices else None


def _overridden_header(overridden: tuple[str, ...]) -> tuple[bytes, bytes]:
    return (b"x-gateway-overridden", ",".join(overridden).encode("latin-1"))


class ChatRelay:
    """Routes and relays chat completions; one instance per app."""

    def __init__(
        self,
        config: GatewayConfig,
        flags: FlagSource,
        upstreams: UpstreamPool,
        telemetry: Telemetry,
        quality: QualityMonitor,
        *,
        shadow: ShadowRunner | None = None,
        log_payloads: bool = False,
        clock: Callable[[], float] = perf_counter,
    ) -> None:
        self._routes = config.routes
        self._prices = config.prices
        self._registered: dict[tuple[str, str], Variant] = {}
        self._quality = quality
        self._shadow = shadow
        self._flags = flags
        self._upstreams = upstreams
        self._telemetry = telemetry
        self._metrics = telemetry.metrics
        self._log_payloads = log_payloads
        self._clock = clock
        self._failover_children: dict[tuple[str, str], Any] = {}
        self._routing_headers: dict[tuple[str, str, str], tuple[tuple[bytes, bytes], ...]] = {}
        self._response_models = {
            name: encode_model(name)
            for name, route in config.routes.items()
            if route.response_model == "route" and not route.passthrough
        }
        """Route name -> its name as a JSON string, for routes whose answers carry it as
        ``model``."""

    def reject(self, rec: RequestRecord, exc: GatewayError) -> Reply:
        """Finish ``rec`` with ``exc`` and build its OpenAI error reply."""
        rec.status = exc.status_code
        rec.error_code = exc.code
        self._finish(rec)
        reply = error_reply(exc, rec.request_id)
        # The routing headers say as much as was decided before the error.
        headers = reply.headers
        if rec.route is not None:
            headers.append((b"x-gateway-route", rec.route.encode("latin-1")))
        if rec.variant is not None:
            headers.append((b"x-gateway-variant", rec.variant.encode("latin-1")))
        if rec.decision is not None:
            headers.append((b"x-gateway-decision", rec.decision.encode("latin-1")))
        return reply

    def _finish(self, rec: RequestRecord) -> None:
        """Every request ends here once: quality bookkeeping, then metrics and the log event."""
        self._quality.settle(rec, self._clock() - rec.started)
        self._telemetry.finish(rec)

    async def complete(self, raw: bytes, ctx: CallContext) -> Reply:
        """Answer one ``POST /v1/chat/completions`` body. Never raises a :class:`GatewayError`:
        it becomes the reply."""
        rec = RequestRecord(ctx.request_id, ctx.started, client_key=ctx.key_name)
        inflight = None
        try:
            body, head = parse_chat_request(raw)
            rec.stream = head.stream
            route = self._routes.get(head.model)
            if route is None:
                raise ModelNotFoundError(
                    f"The model '{head.model}' does not exist or you do not have access to it.",
                    param="model",
                )
            rec.route = route.name
            variant, decision = self._decide(route, head, ctx, rec)
            inflight = self._metrics.inflight_by_route[route.name]
            inflight.inc()
            if self._log_payloads:
                rec.prompt = body.get("messages")
            if head.stream:
                reply = await self._open_stream(route, variant, decision, body, head, rec, ctx)
                inflight = None  # the stream decrements it when it ends
                return reply
            return await self._unary(route, variant, decision, body, rec, ctx)
        except GatewayError as exc:
            return self.reject(rec, exc)
        except asyncio.CancelledError:
            # The client hung up before its answer (unary) or its first event (stream): the
            # upstream call is cancelled with us.
            rec.status = CLIENT_CLOSED_REQUEST
            rec.client_disconnected = True
            self._finish(rec)
            raise
        finally:
            if inflight is not None:
                inflight.dec()

    def _decide(
        self, route: Route, head: ChatHead, ctx: CallContext, rec: RequestRecord
    ) -> tuple[Variant, Decision]:
        if ctx.forced_variant is not None:
            if not ctx.may_override:
                raise PermissionDeniedError(
                    "x-gateway-variant needs a key allowed to override variants "
                    "(GATEWAY_OVERRIDE_KEYS)."
                )
            name = {"candidate": route.candidate, "fallback": route.fallback}.get(
                ctx.forced_variant, ctx.forced_variant
            )
            if name not in route.variants:
                raise InvalidRequestError(
                    f"Unknown variant '{ctx.forced_variant}' for route '{route.name}' "
                    f"(variants: {', '.join(route.variants)}).",
                    param="x-gateway-variant",
                )
            if name == route.candidate:
                variant = self._candidate(route, self._flags.flag(route.name))
                return variant, Decision("candidate", "override")
            return route.variants[name], Decision("fallback", "override")
        if route.passthrough:
            return route.variants[route.fallback], _PASSTHROUGH
        subject = ctx.subject if ctx.subject is not None else head.user
        flag = self._flags.flag(route.name)
        decision = decide(flag, subject, ctx.key_name)
        if flag is not None:
            rec.rollout_id = flag.rollout_id
            if route.shadow is not None and decision.reason in ("rollout", "targeted"):
                decision = _SHADOW  # the candidate answers in the background, never the client
        if decision.role == "candidate":
            return self._candidate(route, flag), decision
        return route.variants[route.fallback], decision

    def _candidate(self, route: Route, flag: FlagState | None) -> Variant:
        """The candidate variant, with the model registered at run time if there is one."""
        variant = route.variants[route.candidate]
        model = flag.candidate_model if flag is not None else None
        if model is None or model == variant.model:
            return variant
        key = (route.name, model)
        registered = self._registered.get(key)
        if registered is None:
            price = self._prices.get(model)
            registered = self._registered[key] = dataclasses.replace(
                variant,
                model=model,
                input_usd_per_token=price.input / 1e6 if price else 0.0,
                output_usd_per_token=price.output / 1e6 if price else 0.0,
                priced=price is not None,
            )
        return registered

    async def _attempt(
        self,
        route: Route,
        variant: Variant,
        decision: Decision,
        body: dict[str, Any],
        rec: RequestRecord,
        ctx: CallContext,
        stream: bool,
    ) -> tuple[Variant, Decision, Any, Any, tuple[str, ...]]:
        """Call the variant's upstream; on a failure the route fails over on, call the fallback.

        Returns the variant and decision that answered, then for unary calls the response and
        its decoded completion view, for streams the :class:`OpenedStream` (first event read
        and checked, so an invalid stream fails over like an invalid unary answer) and None;
        last the client's fields the answering variant's request overrode.
        """
        while True:
            payload, overridden = build_request(route, variant, body, stream)
            client = self._upstreams[variant.upstream]
            t0 = self._clock()
            try:
                view = None
                if stream:
                    response: Any = await client.open_stream(payload, request_id=ctx.request_id)
                else:
                    response = await client.send(payload, request_id=ctx.request_id)
                    try:
                        view = decode_completion(response.content)
                    except msgspec.DecodeError:
                        raise UpstreamProtocolError(
                            f"upstream '{variant.upstream}' answered with invalid JSON",
                            upstream=variant.upstream,
                        ) from None
            except asyncio.CancelledError:
                rec.upstream_seconds += self._clock() - t0
                self._answered_by(rec, route, variant, decision)  # the log names who was asked
                raise
            except UpstreamError as exc:
                spent = self._clock() - t0
                rec.upstream_seconds += spent
                if isinstance(exc, UpstreamEventTooLargeError):
                    self._metrics.events_too_large_by_upstream[variant.upstream].inc()
                elif isinstance(exc, PoolExhaustedError):
                    self._metrics.pool_exhausted_by_upstream[variant.upstream].inc()
                    rec.pool_exhausted = True  # the guard leaves this request out
                if not self._should_failover(route, variant, decision, exc):
                    self._answered_by(rec, route, variant, decision)
                    raise
                self._metrics.variants[(route.name, variant.name)].upstream_duration.observe(spent)
                rec.decision = decision.reason
                self._quality.count_failed_attempt(rec, route)
                self._count_failover(route.name, exc.failover_reason or "5xx")
                rec.failover_reason = exc.failover_reason
                rec.failed_variant = variant.name
                variant, decision = route.variants[route.fallback], _FAILOVER
                continue
            spent = self._clock() - t0
            rec.upstream_seconds += spent
            rec.attempt_seconds = spent
            self._answered_by(rec, route, variant, decision)
            return variant, decision, response, view, overridden

    @staticmethod
    def _answered_by(
        rec: RequestRecord, route: Route, variant: Variant, decision: Decision
    ) -> None:
        rec.variant, rec.decision = variant.name, decision.reason
        rec.upstream, rec.upstream_model = variant.upstream, variant.model
        rec.role = "candidate" if variant.name == route.candidate else "fallback"

    @staticmethod
    def _should_failover(
        route: Route, variant: Variant, decision: Decision, exc: UpstreamError
    ) -> bool:
        """Whether the fallback should answer after ``exc``: the candidate failed on a reason
        in the route's ``failover_on``. An exhausted pool fails over only to a fallback on
        another upstream; the same pool would keep it waiting again, for nothing."""
        return (
            decision.reason not in ("override", "failover", "passthrough")
            and variant.name == route.candidate
            and route.candidate != route.fallback
            and exc.failover_reason is not None
            and exc.failover_reason in route.failover_on
            and (
                exc.failover_reason != "pool_exhausted"
                or route.variants[route.fallback].upstream != variant.upstream
            )
        )

    def _count_failover(self, route: str, reason: str) -> None:
        child = self._failover_children.get((route, reason))
        if child is None:
            child = self._failover_children[(route, reason)] = self._metrics.failovers.labels(
                route, reason
            )
        child.inc()

    def _headers(
        self,
        rec: RequestRecord,
        variant: Variant,
        decision: Decision,
        overridden: tuple[str, ...] = (),
    ) -> Headers:
        """x-request-id and the x-gateway-* headers; the routing ones encoded once per
        (route, variant, decision reason); ``x-gateway-overridden`` when the gateway changed
        some of the client's fields."""
        key = (variant.route, variant.name, decision.reason)
        routing = self._routing_headers.get(key)
        if routing is None:
            routing = self._routing_headers[key] = (
                (b"x-gateway-route", variant.route.encode("latin-1")),
                (b"x-gateway-variant", variant.name.encode("latin-1")),
                (b"x-gateway-decision", decision.reason.encode("latin-1")),
            )
        overhead = rec.overhead_seconds(self._clock()) * 1000
        headers = [
            (b"x-request-id", rec.request_id.encode("latin-1")),
            *routing,
            (b"x-gateway-overhead-ms", b"%.3f" % overhead),
        ]
        if overridden:
            headers.append(_overridden_header(overridden))
        return headers

    async def _unary(
        self,
        route: Route,
        variant: Variant,
        decision: Decision,
        body: dict[str, Any],
        rec: RequestRecord,
        ctx: CallContext,
    ) -> Reply:
        variant, decision, response, view, overridden = await self._attempt(
            route, variant, decision, body, rec, ctx, stream=False
        )
        answer = _answer(view)
        failed_checks = self._quality.judge(route.name, variant.name, answer)
        if (
            failed_checks
            and route.on_violation == "fallback"
            and rec.role == "candidate"
            and decision.reason != "override"
        ):
            # The candidate's answer breaks the contract: pay for it, count it, answer from the
            # fallback instead (x-gateway-decision: violation).
            self._count_discarded(route, variant, view)
            rec.checks_failed = failed_checks
            self._quality.count_failed_attempt(rec, route)
            fallback = route.variants[route.fallback]
            variant, decision, response, view, overridden = await self._attempt(
                route, fallback, _VIOLATION, body, rec, ctx, stream=False
            )
            answer = _answer(view)
            failed_checks = self._quality.judge(route.name, variant.name, answer)
        rec.checks_failed = failed_checks or None
        if view.usage is not None:
            rec.input_tokens = view.usage.prompt_tokens
            rec.output_tokens = view.usage.completion_tokens
        rec.cost_usd = variant.cost_usd(rec.input_tokens, rec.output_tokens)
        rec.priced = variant.priced
        rec.completion = answer.text if answer is not None else None
        headers = self._headers(rec, variant, decision, overridden)
        self._finish(rec)
        if decision.reason == "shadow" and self._shadow is not None and rec.rollout_id:
            candidate = self._candidate(route, self._flags.flag(route.name))
            self._shadow.offer(route, candidate, body, answer, rec.rollout_id, rec.request_id)
        content = response.content
        model = self._response_models.get(route.name)
        if model is not None:
            content = replace_model(content, view.model, model)
        return Reply(200, headers, content)

    def _count_discarded(self, route: Route, variant: Variant, view: Any) -> None:
        """Tokens and cost of an answer that was paid for but not returned."""
        if view.usage is None:
            return
        vm = self._metrics.variants[(route.name, variant.name)]
        vm.input_tokens.inc(view.usage.prompt_tokens)
        vm.output_tokens.inc(view.usage.completion_tokens)
        vm.cost.inc(variant.cost_usd(view.usage.prompt_tokens, view.usage.completion_tokens))

    async def _open_stream(
        self,
        route: Route,
        variant: Variant,
        decision: Decision,
        body: dict[str, Any],
        head: ChatHead,
        rec: RequestRecord,
        ctx: CallContext,
    ) -> Reply:
        variant, decision, opened, _, overridden = await self._attempt(
            route, variant, decision, body, rec, ctx, stream=True
        )
        rec.priced = variant.priced
        wants_usage = head.stream_options is not None and head.stream_options.include_usage
        headers = self._headers(rec, variant, decision, overridden)
        headers += _SSE_HEADERS
        model = self._response_models.get(route.name)
        events = self._relay_events(opened, variant, rec, wants_usage, body, model)
        return Reply(200, headers, media_type="text/event-stream", stream=events)

    async def _relay_events(
        self,
        opened: OpenedStream,
        variant: Variant,
        rec: RequestRecord,
        wants_usage: bool,
        body: dict[str, Any],
        model: bytes | None = None,
    ) -> AsyncIterator[bytes]:
        """Relay upstream SSE events as they arrive (first those read while opening the
        stream), with ``model`` (a JSON string) as each chunk's model when given; end in
        ``[DONE]`` or an error event."""
        decoder, chunks = opened.decoder, opened.chunks
        first: list[bytes] | None = opened.events
        assembler = AnswerAssembler()
        rewrite = StreamModel(model).event if model is not None else None
        done = False
        failed: GatewayError | None = None
        clock = self._clock
        try:
            while True:
                if first is not None:
                    events, first = first, None
                else:
                    t0 = clock()
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        rec.add_upstream(clock() - t0)
                        break
                    except TransportError as exc:
                        rec.add_upstream(clock() - t0)
                        failed = translate_transport_error(exc, variant.upstream)
                        if not isinstance(failed, UpstreamTimeoutError):
                            failed = UpstreamProtocolError(
                                f"upstream '{variant.upstream}' broke the stream off before "
                                "completion",
                                upstream=variant.upstream,
                                code="stream_interrupted",
                            )
                        break
                    rec.add_upstream(clock() - t0)
                    if done:
                        continue
                    try:
                        events = decoder.feed(chunk)
                    except SSEEventTooLarge as exc:
                        self._metrics.events_too_large_by_upstream[variant.upstream].inc()
                        failed = UpstreamEventTooLargeError(
                            f"upstream '{variant.upstream}' sent a stream event larger than "
                            f"{exc.limit} bytes",
                            upstream=variant.upstream,
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
                        view = decode_chunk(data)
                    except msgspec.DecodeError:
                        failed = UpstreamProtocolError(
                            f"upstream '{variant.upstream}' sent an invalid stream event",
                            upstream=variant.upstream,
                        )
                        break
                    if view.error is not None:
                        failed = UpstreamError(
                            f"upstream '{variant.upstream}' reported an error mid-stream",
                            upstream=variant.upstream,
                            code="upstream_stream_error",
                        )
                        yield self._upstreams.redactor.bytes(event) + b"\n\n"
                        break
                    if view.usage is not None:
                        rec.input_tokens = view.usage.prompt_tokens
                        rec.output_tokens = view.usage.completion_tokens
                        if not view.choices and not wants_usage:
                            continue
                    for choice in view.choices:
                        delta = choice.delta
                        if choice.index != 0 or delta is None:
                            continue
                        if delta.content:
                            if rec.ttft_seconds is None:
                                rec.ttft_seconds = clock() - rec.started
                            assembler.text(delta.content)
                        if delta.tool_calls:
                            if rec.ttft_seconds is None:
                                rec.ttft_seconds = clock() - rec.started
                            assembler.tool_calls(delta.tool_calls)
                        if delta.refusal:
                            assembler.refusal(delta.refusal)
                    if rewrite is not None:
                        yield rewrite(event, data, view.model) + b"\n\n"
                    else:
                        yield event + b"\n\n"
                if failed is not None:
                    break
            if failed is None and not done:
                failed = UpstreamProtocolError(
                    f"upstream '{variant.upstream}' ended the stream before completion",
                    upstream=variant.upstream,
                    code="stream_interrupted",
                )
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
            answer = assembler.answer()
            rec.completion = answer.text
            if rec.status == 200:
                # The client's stream is already sent unchanged; the check is recorded.
                route = self._routes[variant.route]
                rec.checks_failed = self._quality.judge(route.name, variant.name, answer)
                rec.checks_failed = rec.checks_failed or None
                if rec.decision == "shadow" and self._shadow is not None and rec.rollout_id:
                    candidate = self._candidate(route, self._flags.flag(route.name))
                    self._shadow.offer(
                        route, candidate, body, answer, rec.rollout_id, rec.request_id
                    )
            self._metrics.inflight_by_route[variant.route].dec()
            self._finish(rec)
