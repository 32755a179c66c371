"""The relay: one request from the client's body to the upstream and back, for any
:class:`~gateway.relay.operation.Operation`.

Operations: chat completions (:meth:`Relay.complete`) and the Responses API
(:meth:`Relay.respond`). Per request: the operation parses the body; the route is looked up
by the body's ``model``;
:func:`gateway.routing.plan.plan_request` decides the variant (pure); :class:`Attempts` calls
the upstream and fails over; a unary answer is judged by the route's contract
(:meth:`Relay.judge`, the one place answers are judged) and may be replaced by the fallback's
(``on_violation: fallback``); a stream is relayed by its operation's state machine
(:func:`gateway.relay.stream.relay_stream`) and judged at its end. Every request ends in
exactly one :class:`~gateway.telemetry.RequestRecord`, settled by the quality monitor and
handed to telemetry (:meth:`Relay.finish`); every metric goes through telemetry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any

from gateway.config import GatewayConfig, Route, Variant
from gateway.errors import GatewayError, ModelNotFoundError
from gateway.quality.answer import Answer as Judged
from gateway.quality.monitor import QualityMonitor
from gateway.quality.shadow import ShadowRunner
from gateway.relay.attempts import Attempts
from gateway.relay.body import decode_body, peek_chat_head
from gateway.relay.chat import CHAT
from gateway.relay.operation import Answer, Head, Operation
from gateway.relay.reply import CLIENT_CLOSED_REQUEST, CallContext, Headers, Reply, error_reply
from gateway.relay.responses import ResponsesOperation
from gateway.relay.stream import StreamMachine, relay_stream
from gateway.routing import Decision, FlagSource
from gateway.routing.plan import (
    VIOLATION,
    CandidateModels,
    Plan,
    plan_request,
    retry_on_violation,
)
from gateway.routing.response_model import encode_model, replace_model
from gateway.telemetry import RequestRecord, Telemetry
from gateway.telemetry.tracing import Tracing
from gateway.upstream import UpstreamPool

__all__ = ["Relay"]

_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class Relay:
    """Routes and relays requests of every operation; one instance per app."""

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
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: a client span per upstream attempt and the outcome on the request's
        server span (None: off; the caller's trace headers are then forwarded as they came)."""
        self._tracing = tracing
        self._routes = config.routes
        self._candidates = CandidateModels(config.prices)
        self._quality = quality
        self._shadow = shadow
        self._flags = flags
        self._upstreams = upstreams
        self._telemetry = telemetry
        self._log_payloads = log_payloads
        self._clock = clock
        self._attempts = Attempts(upstreams, quality, telemetry, clock, tracing)
        self._responses = ResponsesOperation(config)
        self._routing_headers: dict[tuple[str, str, str], tuple[tuple[bytes, bytes], ...]] = {}
        self._response_models = {
            name: encode_model(name)
            for name, route in config.routes.items()
            if route.response_model == "route" and not route.passthrough
        }
        """Route name -> the name as a JSON string, for routes whose answers carry it as their
        ``model`` (``response_model: route``)."""

    # --- the ends of every request ---------------------------------------------------------

    def reject(self, rec: RequestRecord, exc: GatewayError) -> Reply:
        """Finish ``rec`` with ``exc`` and build its OpenAI error reply."""
        rec.status = exc.status_code
        rec.error_code = exc.code
        self.finish(rec)
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

    def finish(self, rec: RequestRecord) -> None:
        """Every request ends here once: quality bookkeeping, then metrics and the log event."""
        self._quality.settle(rec, self._clock() - rec.started)
        if self._tracing is not None:
            self._tracing.finish(rec)
        self._telemetry.finish(rec)

    def judge(self, variant: Variant, answer: Answer) -> list[str]:
        """The one place an answer is judged by its route's contract: the checks that failed
        (counted per check in ``gateway_quality_checks_total``): its text, tool calls and
        refusal when the operation read them (``judged``), else its text."""
        judged = answer.judged if answer.judged is not None else answer.text
        return self._quality.judge(variant.route, variant.name, judged)

    def headers(
        self,
        rec: RequestRecord,
        variant: Variant,
        decision: Decision,
        overridden: tuple[str, ...] = (),
    ) -> Headers:
        """x-request-id and the x-gateway-* headers; the routing ones encoded once per
        (route, variant, decision reason); ``x-gateway-overridden`` when the gateway changed
        some of the client's fields (``overridden``)."""
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
            headers.append((b"x-gateway-overridden", ",".join(overridden).encode("latin-1")))
        return headers

    def plan(self, route: Route, head: Head, ctx: CallContext) -> Plan:
        """The request's plan (:func:`~gateway.routing.plan.plan_request`) under the route's
        flag as served now. Raises PermissionDeniedError, InvalidRequestError."""
        return plan_request(
            route,
            self._flags.flag(route.name),
            self._candidates,
            subject=ctx.subject if ctx.subject is not None else head.user,
            key_name=ctx.key_name,
            forced_variant=ctx.forced_variant,
            may_override=ctx.may_override,
        )

    # --- one request -----------------------------------------------------------------------

    async def complete(self, raw: bytes, ctx: CallContext) -> Reply:
        """Answer one ``POST /v1/chat/completions`` body (see :meth:`handle`). The head is
        decoded from the bytes first (:func:`peek_chat_head`, the same typed fields
        :func:`~gateway.relay.body.parse_chat_request` checks) and reused by the relay; a body
        it cannot read is parsed again by the relay, whose error says why."""
        return await self.handle(CHAT, raw, ctx, peek_chat_head(raw))

    async def respond(self, raw: bytes, ctx: CallContext) -> Reply:
        """Answer one ``POST /v1/responses`` body (see :meth:`handle`)."""
        return await self.handle(self._responses, raw, ctx)

    async def handle(
        self, op: Operation, raw: bytes, ctx: CallContext, head: Head | None = None
    ) -> Reply:
        """Answer one request body of ``op``. Never raises a :class:`GatewayError`: it becomes
        the reply. ``head``: the body's head already decoded from ``raw`` and valid (only the
        body is then decoded, with its depth check)."""
        rec = RequestRecord(ctx.request_id, ctx.started, operation=op.name, client_key=ctx.key_name)
        entered = None
        try:
            if head is None:
                body, head = op.parse(raw)
            else:
                body = decode_body(raw)
            rec.stream = head.stream
            route = self._routes.get(head.model)
            if route is None:
                raise ModelNotFoundError(
                    f"The model '{head.model}' does not exist or you do not have access to it.",
                    param="model",
                )
            rec.route = route.name
            plan = self.plan(route, head, ctx)
            rec.rollout_id = plan.rollout_id
            self._telemetry.enter(route.name)
            entered = route.name
            if self._log_payloads:
                rec.prompt = body.get(op.prompt_field)
            if head.stream:
                reply = await self._open_stream(op, plan, body, head, rec, ctx)
                entered = None  # the stream leaves when it ends
                return reply
            return await self._unary(op, plan, body, rec, ctx)
        except GatewayError as exc:
            return self.reject(rec, op.explain(exc))
        except asyncio.CancelledError:
            # The client hung up before its answer (unary) or its first event (stream): the
            # upstream call is cancelled with us.
            rec.status = CLIENT_CLOSED_REQUEST
            rec.client_disconnected = True
            self.finish(rec)
            raise
        finally:
            if entered is not None:
                self._telemetry.leave(entered)

    async def _unary(
        self, op: Operation, plan: Plan, body: dict[str, Any], rec: RequestRecord, ctx: CallContext
    ) -> Reply:
        route = plan.route
        attempt = await self._attempts.run(
            op,
            route,
            plan.variant,
            plan.decision,
            body,
            rec,
            ctx.request_id,
            stream=False,
            trace_headers=ctx.trace_headers,
        )
        variant, decision, answer = attempt.variant, attempt.decision, attempt.answer
        assert answer is not None
        failed_checks = self.judge(variant, answer)
        retry = retry_on_violation(route, variant, decision, failed_checks)
        if retry is not None:
            # The candidate's answer breaks the contract: pay for it, count it, answer from the
            # fallback instead (x-gateway-decision: violation).
            if answer.input_tokens is not None:
                self._telemetry.discarded(
                    route.name, variant, answer.input_tokens, answer.output_tokens or 0
                )
            rec.checks_failed = failed_checks
            self._quality.count_failed_attempt(rec, route)
            attempt = await self._attempts.run(
                op,
                route,
                retry,
                VIOLATION,
                body,
                rec,
                ctx.request_id,
                stream=False,
                trace_headers=ctx.trace_headers,
            )
            variant, decision, answer = attempt.variant, attempt.decision, attempt.answer
            assert answer is not None
            failed_checks = self.judge(variant, answer)
        rec.checks_failed = failed_checks or None
        if answer.input_tokens is not None:
            rec.input_tokens = answer.input_tokens
            rec.output_tokens = answer.output_tokens or 0
        rec.cost_usd = variant.cost_usd(rec.input_tokens, rec.output_tokens)
        rec.priced = variant.priced
        rec.completion = answer.text
        headers = self.headers(rec, variant, decision, attempt.overridden)
        self.finish(rec)
        if decision.reason == "shadow":
            served = answer.judged if answer.judged is not None else answer.text
            self._offer_shadow(op, route, body, served, rec, ctx.trace_headers)
        content = answer.content
        model = self._response_models.get(route.name)
        if model is not None:
            content = replace_model(content, answer.model, model)
        return Reply(200, headers, content)

    async def _open_stream(
        self,
        op: Operation,
        plan: Plan,
        body: dict[str, Any],
        head: Head,
        rec: RequestRecord,
        ctx: CallContext,
    ) -> Reply:
        attempt = await self._attempts.run(
            op,
            plan.route,
            plan.variant,
            plan.decision,
            body,
            rec,
            ctx.request_id,
            stream=True,
            trace_headers=ctx.trace_headers,
        )
        variant, opened = attempt.variant, attempt.opened
        assert opened is not None
        rec.priced = variant.priced
        headers = self.headers(rec, variant, attempt.decision, attempt.overridden)
        headers += _SSE_HEADERS
        machine = op.stream(rec, variant, head, self._upstreams.redactor, self._clock)
        model = self._response_models.get(plan.route.name)
        if model is not None:
            machine.show_model(model)

        span = attempt.span

        def on_end() -> None:
            self._stream_ended(op, machine, variant, body, ctx.trace_headers, span)

        events = relay_stream(opened, machine, self._telemetry, on_end)
        return Reply(200, headers, media_type="text/event-stream", stream=events)

    def _stream_ended(
        self,
        op: Operation,
        machine: StreamMachine,
        variant: Variant,
        body: dict[str, Any],
        trace_headers: dict[str, str] | None,
        span: Any,
    ) -> None:
        """A stream is over (complete, failed or abandoned): its attempt's span, cost, the
        contract on the assembled answer (the client's stream was sent untouched), shadow,
        telemetry."""
        rec = machine.rec
        if span is not None:
            if machine.failed is not None:
                Tracing.failed(span, machine.failed)
            elif rec.client_disconnected:
                Tracing.failed(span, asyncio.CancelledError(), "the client closed the request")
            else:
                counted = rec.input_tokens or rec.output_tokens
                Tracing.succeeded(
                    span,
                    response_model=machine.answered_model,
                    input_tokens=rec.input_tokens if counted else None,
                    output_tokens=rec.output_tokens if counted else None,
                )
        rec.cost_usd = variant.cost_usd(rec.input_tokens, rec.output_tokens)
        rec.completion = machine.text()
        if rec.status == 200:
            answer = machine.answer()
            rec.checks_failed = self.judge(variant, answer) or None
            if rec.decision == "shadow":
                served = answer.judged if answer.judged is not None else answer.text
                route = self._routes[variant.route]
                self._offer_shadow(op, route, body, served, rec, trace_headers)
        self._telemetry.leave(variant.route)
        self.finish(rec)

    def _offer_shadow(
        self,
        op: Operation,
        route: Route,
        body: dict[str, Any],
        served: Judged | str | None,
        rec: RequestRecord,
        trace_headers: dict[str, str] | None = None,
    ) -> None:
        """The fallback answered a shadow route: maybe ask the candidate in the background
        (with the caller's ``trace_headers``)."""
        if self._shadow is None or not rec.rollout_id:
            return
        candidate = self._candidates.candidate(route, self._flags.flag(route.name))
        self._shadow.offer(
            op,
            route,
            candidate,
            body,
            served,
            rec.rollout_id,
            rec.request_id,
            trace_headers=trace_headers,
        )
