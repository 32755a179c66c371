"""One record per request, filled in by the relay and turned into metrics and a log event.

Times are ``time.perf_counter()`` seconds; the log event carries milliseconds. ``overhead`` is
total minus the time spent waiting on upstreams (all attempts, failover included).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

from gateway.telemetry.metrics import UNKNOWN_ROUTE, Metrics

__all__ = ["RequestRecord", "Telemetry"]


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request. ``route``/``variant`` stay ``None`` until known."""

    request_id: str
    started: float
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

    def overhead_seconds(self, now: float | None = None) -> float:
        """Gateway time so far: elapsed minus upstream time, never negative."""
        elapsed = (now if now is not None else perf_counter()) - self.started
        return max(0.0, elapsed - self.upstream_seconds)


class Telemetry:
    """Turns finished :class:`RequestRecord` objects into metrics and one log event each."""

    def __init__(self, metrics: Metrics, logger: Any, *, log_payloads: bool = False) -> None:
        self.metrics = metrics
        self._log = logger
        self._log_payloads = log_payloads
        self.counts: dict[tuple[str, str], tuple[int, int]] = {}
        """(route, variant) -> (requests, errors with status >= 500), since start."""

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
            vm.duration.observe(total)
            vm.overhead.observe(overhead)
            if rec.attempt_seconds:
                vm.upstream_duration.observe(rec.attempt_seconds)
            if rec.ttft_seconds is not None:
                vm.ttft.observe(rec.ttft_seconds)
            if rec.input_tokens:
                vm.input_tokens.inc(rec.input_tokens)
            if rec.output_tokens:
                vm.output_tokens.inc(rec.output_tokens)
            if rec.cost_usd:
                vm.cost.inc(rec.cost_usd)
        event: dict[str, Any] = {
            "request_id": rec.request_id,
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
            "ttft_ms": None if rec.ttft_seconds is None else round(rec.ttft_seconds * 1000, 3),
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cost_usd": round(rec.cost_usd, 10) if rec.priced else None,
            "client_key": rec.client_key,
        }
        if rec.failover_reason:
            event["failover_reason"] = rec.failover_reason
            event["failed_variant"] = rec.failed_variant
        if rec.error_code:
            event["error_code"] = rec.error_code
        if rec.client_disconnected:
            event["client_disconnected"] = True
        if rec.checks_failed is not None:
            event["checks_failed"] = rec.checks_failed
        if self._log_payloads:
            event["messages"] = rec.prompt
            event["completion"] = rec.completion
        if rec.status >= 500:
            self._log.warning("request.completed", **event)
        else:
            self._log.info("request.completed", **event)
