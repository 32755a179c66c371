"""One record per request, filled in by the relay and turned into metrics and a log event.

Times are ``time.perf_counter()`` seconds; the log event carries milliseconds. ``overhead`` is
total minus the time spent waiting on upstreams (all attempts, failover included).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

from gateway.config import Variant
from gateway.errors import (
    GatewayError,
    PoolExhaustedError,
    UpstreamError,
    UpstreamEventTooLargeError,
)
from gateway.telemetry.metrics import UNKNOWN_ROUTE, Metrics, observe_each, observe_one

__all__ = ["RequestRecord", "Telemetry"]


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request. ``route``/``variant`` stay ``None`` until known."""

    request_id: str
    started: float
    operation: str = "chat"
    """What the client asked for: ``chat`` (``/v1/chat/completions``), ``responses``
    (``/v1/responses``), ``embeddings`` or ``completions``; logged as ``operation`` and mapped
    to OpenTelemetry's ``gen_ai.operation.name`` where metrics and traces need it."""
    client_key: str | None = None
    route: str | None = None
    variant: str | None = None
    decision: str | None = None
    upstream: str | None = None
    upstream_model: str | None = None
    stream: bool = False
    status: int = 200
    upstream_seconds: float = 0.0
    attempt_seconds: float = 0.0
    ttft_seconds: float | None = None
    last_chunk_at: float | None = None
    """When the latest content chunk of a stream arrived (see :meth:`content_chunk`)."""
    chunk_gaps: list[float] | None = None
    """Seconds between consecutive content chunks, one per chunk after the first."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    failover_reason: str | None = None
    failed_variant: str | None = None
    error_code: str | None = None
    client_disconnected: bool = False
    role: str | None = None
    rollout_id: str | None = None
    checks_failed: list[str] | None = None
    pool_exhausted: bool = False
    """An upstream pool had no free connection in time: the gateway's saturation, so the guard
    leaves this request out (see :meth:`gateway.quality.monitor.QualityMonitor.settle`)."""
    completion: str | None = None
    prompt: Any = None
    """The client's messages, kept only when payload logging is on."""

    def add_upstream(self, seconds: float) -> None:
        """Count time spent waiting on the answering upstream (e.g. for a stream's next chunk)."""
        self.upstream_seconds += seconds
        self.attempt_seconds += seconds

    def content_chunk(self, now: float) -> None:
        """A stream's content chunk arrived at ``now`` (``perf_counter`` seconds): the first
        sets ``ttft_seconds``, each later one adds its gap since the previous one to
        ``chunk_gaps`` (``gen_ai.client.operation.time_per_output_chunk``)."""
        last = self.last_chunk_at
        if last is None:
            self.ttft_seconds = now - self.started
        elif self.chunk_gaps is None:
            self.chunk_gaps = [now - last]
        else:
            self.chunk_gaps.append(now - last)
        self.last_chunk_at = now

    def overhead_seconds(self, now: float | None = None) -> float:
        """Gateway time so far: elapsed minus upstream time, never negative."""
        elapsed = (now if now is not None else perf_counter()) - self.started
        return max(0.0, elapsed - self.upstream_seconds)


class Telemetry:
    """Turns finished :class:`RequestRecord` objects into metrics and one log event each."""

    def __init__(self, metrics: Metrics, logger: Any, *, log_payloads: bool = False) -> None:
        """``logger``: a structlog logger for the ``request.completed`` events (the app gives
        :func:`~gateway.telemetry.logging.get_line_logger`'s)."""
        self.metrics = metrics
        self._log = logger
        self._emit: Any = getattr(logger, "emit", None)
        """:func:`~gateway.telemetry.logging.get_line_logger`'s ``emit`` (other loggers, e.g.
        tests' recording ones, get keyword arguments)."""
        self._log_payloads = log_payloads
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        """(route, variant) -> (requests, errors with status >= 500), since start."""
        self._failover_children: dict[tuple[str, str], Any] = {}

    def finish(self, rec: RequestRecord) -> None:
        """Record a finished request: ``request.completed`` log event and every metric."""
        now = perf_counter()
        total = now - rec.started
        overhead = max(0.0, total - rec.upstream_seconds)
        route = rec.route or UNKNOWN_ROUTE
        variant = rec.variant or "_none"
        m = self.metrics
        m.count_request(route, variant, rec.decision or "none", rec.status)
        vm = m.variants.get((route, variant))
        if vm is not None:
            requests, errors = self.counts.get((route, variant), (0, 0))
            self.counts[(route, variant)] = (requests + 1, errors + (rec.status >= 500))
            observe_one(vm.duration, total)
            observe_one(vm.overhead, overhead)
            if rec.attempt_seconds:
                observe_one(vm.upstream_duration, rec.attempt_seconds)
            if rec.ttft_seconds is not None:
                observe_one(vm.ttft, rec.ttft_seconds)
            if rec.input_tokens:
                vm.input_tokens.inc(rec.input_tokens)
            if rec.output_tokens:
                vm.output_tokens.inc(rec.output_tokens)
            if rec.cost_usd:
                vm.cost.inc(rec.cost_usd)
            ga = vm.gen_ai.get(rec.operation)
            if ga is None:
                ga = m.gen_ai_for(vm, rec.operation)
            if rec.status < 400:
                observe_one(ga.duration, total)
            else:
                observe_one(m.gen_ai_failed(ga, rec.status), total)
            if rec.input_tokens:
                observe_one(ga.input_tokens, rec.input_tokens)
            if rec.output_tokens:
                observe_one(ga.output_tokens, rec.output_tokens)
            if rec.stream and rec.ttft_seconds is not None:  # streams only, as the convention
                observe_one(ga.first_chunk, rec.ttft_seconds)
            if rec.chunk_gaps is not None:
                observe_each(ga.per_chunk, rec.chunk_gaps)
        extra: dict[str, Any] | None = None  # the rare fields, only when there are some
        if rec.failover_reason or rec.error_code or rec.client_disconnected:
            extra = {}
            if rec.failover_reason:
                extra["failover_reason"] = rec.failover_reason
                extra["failed_variant"] = rec.failed_variant
            if rec.error_code:
                extra["error_code"] = rec.error_code
            if rec.client_disconnected:
                extra["client_disconnected"] = True
        if rec.checks_failed is not None:
            extra = extra or {}
            extra["checks_failed"] = rec.checks_failed
        if self._log_payloads:
            extra = extra or {}
            extra["messages"] = rec.prompt
            extra["completion"] = rec.completion
        ttft = rec.ttft_seconds
        fields = {
            "request_id": rec.request_id,
            "operation": rec.operation,
            "route": rec.route,
            "variant": rec.variant,
            "decision": rec.decision,
            "upstream": rec.upstream,
            "upstream_model": rec.upstream_model,
            "stream": rec.stream,
            "status": rec.status,
            "duration_ms": round(total * 1000, 3),
            "upstream_duration_ms": round(rec.upstream_seconds * 1000, 3),
            "overhead_ms": round(overhead * 1000, 3),
            "ttft_ms": None if ttft is None else round(ttft * 1000, 3),
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cost_usd": round(rec.cost_usd, 10) if rec.priced else None,
            "client_key": rec.client_key,
        }
        if extra:
            fields.update(extra)
        method = "warning" if rec.status >= 500 else "info"
        if self._emit is not None:  # the line logger: the dict as it is
            self._emit(method, "request.completed", fields)
        else:
            getattr(self._log, method)("request.completed", **fields)

    # --- the relay's other metric updates: every one goes through here ----------------------

    def enter(self, route: str) -> None:
        """A request on ``route`` is being answered (``gateway_inflight_requests``)."""
        self.metrics.inflight_by_route[route].inc()

    def leave(self, route: str) -> None:
        """A request that :meth:`enter` counted is over (answered, failed or abandoned)."""
        self.metrics.inflight_by_route[route].dec()

    def attempt_failed(self, rec: RequestRecord, upstream: str, exc: UpstreamError) -> None:
        """An upstream attempt failed with ``exc``: count an oversized event or an exhausted
        pool on ``upstream``; an exhausted pool also marks ``rec`` (the guard leaves it out)."""
        if isinstance(exc, UpstreamEventTooLargeError):
            self.metrics.events_too_large_by_upstream[upstream].inc()
        elif isinstance(exc, PoolExhaustedError):
            self.metrics.pool_exhausted_by_upstream[upstream].inc()
            rec.pool_exhausted = True

    def event_too_large(self, upstream: str) -> None:
        """A stream already answering ended on an event over the size cap."""
        self.metrics.events_too_large_by_upstream[upstream].inc()

    def failover(self, route: str, variant: str, reason: str, seconds: float) -> None:
        """``variant``'s attempt failed after ``seconds`` and the fallback answers instead
        (``gateway_failovers_total{route,reason}``; the failed attempt's upstream time)."""
        self.metrics.variants[(route, variant)].upstream_duration.observe(seconds)
        child = self._failover_children.get((route, reason))
        if child is None:
            child = self._failover_children[(route, reason)] = self.metrics.failovers.labels(
                route, reason
            )
        child.inc()

    def shadow_call(
        self,
        operation: str,
        variant: Variant,
        seconds: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        failed: GatewayError | None = None,
    ) -> None:
        """A shadow call of ``variant`` (a shadow route's candidate) took ``seconds``: the
        GenAI client metrics under the same labels as a served call of ``operation`` (a failed
        call's ``error_type`` is the status the gateway would have answered, e.g. ``502``),
        and its tokens and cost in ``gateway_tokens_total`` / ``gateway_cost_usd_total`` and
        alone in ``gateway_shadow_tokens_total`` / ``gateway_shadow_cost_usd_total``."""
        m = self.metrics
        vm = m.variants.get((variant.route, variant.name))
        if vm is None:
            return
        ga = vm.gen_ai.get(operation)
        if ga is None:
            ga = m.gen_ai_for(vm, operation)
        if failed is not None:
            m.gen_ai_failed(ga, failed.status_code).observe(seconds)
            return
        ga.duration.observe(seconds)
        cost = variant.cost_usd(input_tokens or 0, output_tokens or 0)
        if input_tokens:
            ga.input_tokens.observe(input_tokens)
            vm.input_tokens.inc(input_tokens)
            if vm.shadow_input_tokens is not None:
                vm.shadow_input_tokens.inc(input_tokens)
        if output_tokens:
            ga.output_tokens.observe(output_tokens)
            vm.output_tokens.inc(output_tokens)
            if vm.shadow_output_tokens is not None:
                vm.shadow_output_tokens.inc(output_tokens)
        if cost:
            vm.cost.inc(cost)
            if vm.shadow_cost is not None:
                vm.shadow_cost.inc(cost)

    def discarded(
        self, route: str, variant: Variant, input_tokens: int, output_tokens: int
    ) -> None:
        """Tokens and cost of an answer that was paid for but not returned to the client."""
        vm = self.metrics.variants[(route, variant.name)]
        vm.input_tokens.inc(input_tokens)
        vm.output_tokens.inc(output_tokens)
        vm.cost.inc(variant.cost_usd(input_tokens, output_tokens))
