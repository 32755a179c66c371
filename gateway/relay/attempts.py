"""The attempt-and-failover loop: ask the planned variant's upstream; when the candidate fails
before any byte reached the client, ask the fallback (:func:`gateway.routing.plan.failover_to`).

:meth:`Attempts.attempt` is the one place an upstream attempt starts and ends (a unary answer
read in full, or a stream opened up to its first event); :meth:`Attempts.run` times each
attempt as upstream time, records who answered, counts failures and failovers through
telemetry and the guard, and moves on to the fallback. Shared by every operation.

With tracing on, each attempt is a client span (:meth:`Tracing.start_attempt`) whose context
is sent to the upstream; a unary attempt's span ends here, a stream's when the stream does
(:attr:`Attempt.span`). With tracing off the caller's trace headers are sent as they came.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.config import Route, Variant
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.quality.monitor import QualityMonitor
from gateway.relay.operation import Answer, Operation
from gateway.routing.decision import Decision
from gateway.routing.plan import FAILOVER, failover_to
from gateway.telemetry import RequestRecord, Telemetry
from gateway.telemetry.tracing import Tracing
from gateway.upstream import UpstreamPool
from gateway.upstream.stream_start import OpenedStream

__all__ = ["Attempt", "Attempts", "answered_by"]


@dataclass(slots=True)
class Attempt:
    """The attempt that answered: its variant and decision, then the unary ``answer`` or the
    ``opened`` stream (first event read and checked), and the client's fields its payload
    changed (``overridden``)."""

    variant: Variant
    decision: Decision
    answer: Answer | None = None
    opened: OpenedStream | None = None
    span: Any = None
    """A stream's client span, still open (tracing on); the stream's end ends it."""
    overridden: tuple[str, ...] = ()


def answered_by(rec: RequestRecord, route: Route, variant: Variant, decision: Decision) -> None:
    """Record who answers (or was asked last): variant, decision, upstream, model, role."""
    rec.variant, rec.decision = variant.name, decision.reason
    rec.upstream, rec.upstream_model = variant.upstream, variant.model
    rec.role = "candidate" if variant.name == route.candidate else "fallback"


class Attempts:
    """Runs attempts on the upstream pool (one instance per app)."""

    __slots__ = ("_clock", "_quality", "_telemetry", "_tracing", "_upstreams")

    def __init__(
        self,
        upstreams: UpstreamPool,
        quality: QualityMonitor,
        telemetry: Telemetry,
        clock: Callable[[], float],
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing
        self._upstreams = upstreams
        self._quality = quality
        self._telemetry = telemetry
        self._clock = clock

    async def attempt(
        self,
        op: Operation,
        variant: Variant,
        payload: bytes,
        request_id: str,
        stream: bool,
        trace_headers: dict[str, str] | None = None,
    ) -> Answer | OpenedStream:
        """One upstream attempt of ``variant``: the unary answer, read and decoded, or the
        stream opened up to its checked first event.

        Raises:
            UpstreamError: the attempt failed (connect, timeout, status, an invalid answer,
                an exhausted pool); ``failover_reason`` says why.
        """
        client = self._upstreams[variant.upstream]
        if stream:
            return await client.open_stream(
                payload,
                request_id=request_id,
                path=op.path,
                check_first=op.check_first,
                trace_headers=trace_headers,
            )
        response = await client.send(
            payload, request_id=request_id, path=op.path, trace_headers=trace_headers
        )
        try:
            return op.answer(response.content)
        except msgspec.DecodeError:
            raise UpstreamProtocolError(
                f"upstream '{variant.upstream}' answered with invalid JSON",
                upstream=variant.upstream,
            ) from None

    async def run(
        self,
        op: Operation,
        route: Route,
        variant: Variant,
        decision: Decision,
        body: dict[str, Any],
        rec: RequestRecord,
        request_id: str,
        stream: bool,
        trace_headers: dict[str, str] | None = None,
    ) -> Attempt:
        """Ask ``variant``; fail over as the route allows; return the attempt that answered.
        ``trace_headers``: the caller's (sent as they came with tracing off).

        Raises:
            UpstreamError: the last attempt's failure (no failover possible), after recording
                who was asked.
            asyncio.CancelledError: the client left; the upstream call is cancelled with us.
        """
        clock, tracing = self._clock, self._tracing
        while True:
            built = op.payload(route, variant, body, stream)
            payload, overridden = (built, ()) if isinstance(built, bytes) else built
            span: Any = None
            sent = trace_headers
            if tracing is not None:
                span, sent = tracing.start_attempt(
                    operation=op.name,
                    route=route.name,
                    variant=variant.name,
                    upstream=variant.upstream,
                    model=variant.model,
                    decision=decision.reason,
                    rollout_id=rec.rollout_id,
                )
            t0 = clock()
            try:
                if span is None:
                    result = await self.attempt(op, variant, payload, request_id, stream, sent)
                else:  # current while it runs: HTTP client instrumentation nests under it
                    with Tracing.current(span):
                        result = await self.attempt(op, variant, payload, request_id, stream, sent)
            except asyncio.CancelledError as exc:
                rec.upstream_seconds += clock() - t0
                answered_by(rec, route, variant, decision)  # the log names who was asked
                if span is not None:
                    Tracing.failed(span, exc, "the client closed the request")
                raise
            except UpstreamError as exc:
                if span is not None:
                    Tracing.failed(span, exc)
                spent = clock() - t0
                rec.upstream_seconds += spent
                self._telemetry.attempt_failed(rec, variant.upstream, exc)
                fallback = failover_to(route, variant, decision, exc.failover_reason)
                if fallback is None:
                    answered_by(rec, route, variant, decision)
                    raise
                reason = exc.failover_reason or "5xx"
                self._telemetry.failover(route.name, variant.name, reason, spent)
                rec.decision = decision.reason
                self._quality.count_failed_attempt(rec, route)
                rec.failover_reason = exc.failover_reason
                rec.failed_variant = variant.name
                variant, decision = fallback, FAILOVER
                continue
            except Exception as exc:  # unexpected: the app's boundary answers 500
                if span is not None:
                    Tracing.failed(span, exc)
                raise
            spent = clock() - t0
            rec.upstream_seconds += spent
            rec.attempt_seconds = spent
            answered_by(rec, route, variant, decision)
            if isinstance(result, Answer):
                if span is not None:
                    Tracing.succeeded(
                        span,
                        response_model=getattr(result.view, "model", None),
                        response_id=getattr(result.view, "id", None),
                        input_tokens=result.input_tokens,
                        output_tokens=result.output_tokens,
                    )
                return Attempt(variant, decision, answer=result, overridden=overridden)
            return Attempt(variant, decision, opened=result, overridden=overridden, span=span)
