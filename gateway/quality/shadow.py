"""Shadow mode: the fallback serves the client; the candidate answers the same request in the
background so its quality can be judged on live traffic before any user sees it.

Both routed operations are mirrored: a chat completion is asked of the candidate as a chat
completion, a ``POST /v1/responses`` as a Responses API request. The operation
(:class:`~gateway.relay.operation.Operation`) supplies the candidate's payload (always
non-streaming, even for a client that streamed), the endpoint and how to read the answer (its
text, tool or function calls and refusal, as the contract judges them); everything else is the
same for both. A candidate whose upstream does not offer the operation
(``responses_api: false`` for ``/v1/responses``) is not called: the comparison is counted as
``skipped``.

A shadow call starts only after the client's answer is complete, so it never delays the client;
at most ``max_concurrency`` run at once per route (extra ones are skipped, not queued). The
candidate's answer is checked against the contract, compared with the fallback's
(``gateway_shadow_comparisons_total{route,result=agree|disagree|error|skipped}``) and counted
by the guard. After 3 upstream errors in a row the route's shadow calls pause for 10 s (then one
call probes), so a candidate whose upstream is down is not hammered.

Each shadow call is a real upstream call that costs tokens: telemetry counts it
(:meth:`gateway.telemetry.Telemetry.shadow_call`) in the GenAI client metrics under the
candidate's labels, in ``gateway_tokens_total`` / ``gateway_cost_usd_total``, and alone in
``gateway_shadow_tokens_total`` / ``gateway_shadow_cost_usd_total``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.config import Route, Variant
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.quality.answer import Answer
from gateway.quality.contract import Contract
from gateway.quality.monitor import QualityMonitor
from gateway.telemetry import Telemetry
from gateway.telemetry.tracing import Tracing
from gateway.upstream import UpstreamPool

if TYPE_CHECKING:
    from gateway.relay.operation import Answer as Reply
    from gateway.relay.operation import Operation

__all__ = ["ShadowRunner"]

_NO_CONTRACT = Contract(None)
"""Without a contract, answers agree when they are the same text and tool calls."""
_TRIP_AFTER = 3
_PAUSE_S = 10.0


@dataclass(slots=True)
class _RouteShadow:
    inflight: int = 0
    errors_in_a_row: int = 0
    paused_until: float = 0.0
    children: dict[str, Any] = field(default_factory=dict)


class ShadowRunner:
    """Runs and accounts the background candidate calls of every shadow route."""

    def __init__(
        self,
        upstreams: UpstreamPool,
        monitor: QualityMonitor,
        telemetry: Telemetry,
        logger: Any,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing``: each shadow call is a client span of its own (None: off)."""
        self._tracing = tracing
        self._upstreams = upstreams
        self._monitor = monitor
        self._telemetry = telemetry
        self._log = logger
        self._rng = rng or random.Random()  # noqa: S311 -- sampling, not security
        self._clock = clock
        self._routes: dict[str, _RouteShadow] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _state(self, route: str) -> _RouteShadow:
        state = self._routes.get(route)
        if state is None:
            state = self._routes[route] = _RouteShadow()
            comparisons = self._telemetry.metrics.shadow_comparisons
            for result in ("agree", "disagree", "error", "skipped"):
                state.children[result] = comparisons.labels(route, result)
        return state

    def offer(
        self,
        op: Operation,
        route: Route,
        candidate: Variant,
        body: dict[str, Any],
        served: Answer | str | None,
        rollout_id: str,
        request_id: str,
        *,
        trace_headers: dict[str, str] | None = None,
    ) -> None:
        """Maybe start a background candidate call of ``op`` for a request the fallback
        answered (``served``: the fallback's answer as the contract reads it).

        Skipped (counted ``skipped``) when the route's calls are at ``max_concurrency`` or
        paused, or when ``candidate``'s upstream does not offer ``op``
        (:meth:`~gateway.relay.operation.Operation.offers`).

        The call runs in a task that inherits the request's context: with tracing on its
        client span is a child of the request's server span (and outlives it); with tracing
        off the caller's ``trace_headers`` are forwarded as they came."""
        shadow = route.shadow
        if shadow is None or self._rng.random() >= shadow.share:
            return
        state = self._state(route.name)
        if (
            state.inflight >= shadow.max_concurrency
            or self._clock() < state.paused_until
            or not op.offers(candidate)
        ):
            state.children["skipped"].inc()
            return
        state.inflight += 1
        task = asyncio.create_task(
            self._call(
                op, route, candidate, body, served, rollout_id, request_id, state, trace_headers
            ),
            name=f"shadow:{route.name}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(
        self,
        op: Operation,
        route: Route,
        candidate: Variant,
        body: dict[str, Any],
        request_id: str,
        trace_headers: dict[str, str] | None,
    ) -> tuple[Reply | None, float]:
        """One non-streaming call of ``op`` to the candidate: its answer (``None``: a body
        that is not one) and the seconds it took. Raises UpstreamError."""
        built = op.payload(route, candidate, body, False)
        payload = built if isinstance(built, bytes) else built[0]
        client = self._upstreams[candidate.upstream]
        started = self._clock()
        response = await client.send(
            payload, request_id=request_id, path=op.path, trace_headers=trace_headers
        )
        seconds = self._clock() - started
        try:
            return op.answer(response.content), seconds
        except msgspec.DecodeError:
            return None, seconds

    async def _call(
        self,
        op: Operation,
        route: Route,
        candidate: Variant,
        body: dict[str, Any],
        served: Answer | str | None,
        rollout_id: str,
        request_id: str,
        state: _RouteShadow,
        trace_headers: dict[str, str] | None = None,
    ) -> None:
        span: Any = None
        if self._tracing is not None:
            span, trace_headers = self._tracing.start_attempt(
                operation=op.name,
                route=route.name,
                variant=candidate.name,
                upstream=candidate.upstream,
                model=candidate.model,
                decision="shadow",
                rollout_id=rollout_id,
            )
        started = self._clock()
        try:
            reply, seconds = await self._ask(op, route, candidate, body, request_id, trace_headers)
            slow = self._monitor.too_slow(route.name, seconds)
            if reply is None:
                invalid = UpstreamProtocolError(
                    f"upstream '{candidate.upstream}' answered with invalid JSON",
                    upstream=candidate.upstream,
                )
                self._telemetry.shadow_call(op.name, candidate, seconds, failed=invalid)
                if span is not None:
                    span, ended = None, span
                    Tracing.failed(ended, invalid)
            else:
                self._telemetry.shadow_call(
                    op.name, candidate, seconds, reply.input_tokens, reply.output_tokens
                )
                if span is not None:
                    span, ended = None, span
                    Tracing.succeeded(
                        ended,
                        response_model=reply.model,
                        response_id=getattr(reply.view, "id", None),
                        input_tokens=reply.input_tokens,
                        output_tokens=reply.output_tokens,
                    )
            answer: Answer | str | None = None
            if reply is not None:
                answer = reply.judged if reply.judged is not None else reply.text
            failed = (
                reply is None
                or bool(self._monitor.judge(route.name, candidate.name, answer))
                or slow
            )
            state.errors_in_a_row = 0
            contract = self._monitor.contracts.get(route.name) or _NO_CONTRACT
            agreed = contract.agree(answer, served)
            state.children["agree" if agreed else "disagree"].inc()
            self._monitor.guard.observe(route.name, rollout_id, "candidate", failed)
            self._monitor.guard.observe_shadow(route.name, rollout_id, agreed)
        except UpstreamError as exc:
            self._telemetry.shadow_call(op.name, candidate, self._clock() - started, failed=exc)
            if span is not None:
                span, ended = None, span
                Tracing.failed(ended, exc)
            state.children["error"].inc()
            state.errors_in_a_row += 1
            self._monitor.guard.observe(route.name, rollout_id, "candidate", True)
            if state.errors_in_a_row >= _TRIP_AFTER:
                state.paused_until = self._clock() + _PAUSE_S
                self._log.warning(
                    "shadow.paused", route=route.name, error=exc.code, pause_s=_PAUSE_S
                )
        except Exception as exc:  # never let a background call die silently
            if span is not None:
                span, ended = None, span
                Tracing.failed(ended, exc)
            state.children["error"].inc()
            self._log.error("shadow.failed", route=route.name, error=type(exc).__name__)
        finally:
            state.inflight -= 1
            if span is not None:  # cancelled at shutdown
                Tracing.failed(span, asyncio.CancelledError(), "the shadow call was cancelled")

    async def aclose(self) -> None:
        """Cancel shadow calls still running (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
