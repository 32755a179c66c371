"""Prometheus metrics in a registry of the app's own: the gateway's ``gateway_*`` families and,
beside them, OpenTelemetry's GenAI client metrics in Prometheus form (``gen_ai_*``).

Label values come only from the routes file (route, variant, upstream, model and provider names)
and from closed sets (decision reasons, HTTP status codes, token types, operation names), so a
client cannot create series. Children for each route and variant are made once at start-up
(:class:`VariantMetrics`); the request path never looks a label set up by name. Every counter
series the routes file can produce (rollbacks by trigger, failovers by reason, shadow
comparisons, feedback, restores) is created at start-up at 0, so that ``rate()`` and
``increase()`` see the first event.

The GenAI families follow the GenAI client metrics of the OpenTelemetry semantic conventions
(``gen_ai.client.token.usage``, ``gen_ai.client.operation.duration``,
``gen_ai.client.operation.time_to_first_chunk``, ``gen_ai.client.operation.time_per_output_chunk``
and the attributes ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.token.type``, ``error.type``), version 1.44.0 of the semantic conventions (the Python
package ``opentelemetry-semantic-conventions`` 0.66b2, whose GenAI part points at the
``semantic-conventions-genai`` repository it moved to), with the conventions' explicit bucket
boundaries and the OpenTelemetry-to-Prometheus name translation (dots become underscores, unit
``s`` adds ``_seconds``, ``{token}`` adds nothing).

With several workers (``GATEWAY_WORKERS`` > 1) every metric lives in prometheus-client's
multiprocess files (:mod:`gateway.telemetry.multiproc`); each gauge says how workers' values are
combined (``multiprocess_mode``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.config import FAILOVER_REASONS, GatewayConfig
from gateway.telemetry import multiproc

__all__ = [
    "DURATION_BUCKETS",
    "GEN_AI_OPERATIONS",
    "TOKEN_BUCKETS",
    "UNKNOWN_ROUTE",
    "GenAIMetrics",
    "Metrics",
    "VariantMetrics",
    "gen_ai_operation",
    "observe_each",
]

UNKNOWN_ROUTE = "_unknown"
"""Route label for requests that named no configured route (404, 400 before routing)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
"""``gen_ai.client.token.usage``'s explicit bucket boundaries (tokens), from the conventions."""

DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""Seconds: the explicit bucket boundaries the conventions give ``gen_ai.client.operation.*``
(duration, time to first chunk, time per output chunk)."""

GEN_AI_OPERATIONS: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
"""The request record's ``operation`` -> ``gen_ai.operation.name``. ``/v1/responses`` is
``chat``: the conventions have no value of their own for OpenAI's Responses API, and it is the
same generation a chat completion is (``generate_content`` is Gemini's multimodal API)."""

_FEEDBACK_RESULTS = ("positive", "negative")
_SHADOW_RESULTS = ("agree", "disagree", "error", "skipped")
_ROLLBACK_TRIGGERS = ("manual", "guard")


def gen_ai_operation(operation: str) -> str:
    """``gen_ai.operation.name`` of a request record's ``operation`` (itself if unknown)."""
    return GEN_AI_OPERATIONS.get(operation, operation)


def observe_one(child: Any, value: float) -> None:
    """``child.observe(value)`` for a histogram child, without its checks and its Python loop
    over the buckets: a bisect and the same two locked increments (0.65 -> 0.43 µs a call;
    seven per request). Same layout as :func:`observe_each`, pinned by tests/unit/test_metrics.py
    against ``observe``."""
    child._sum.inc(value)
    child._buckets[bisect_left(child._upper_bounds, value)].inc(1)


def observe_each(child: Any, values: list[float]) -> None:
    """Record every value of ``values`` in the histogram child ``child``, exactly as one
    ``child.observe(value)`` per value would, but with one locked increment per bucket touched
    instead of two per value (a stream's per-chunk gaps: 50 chunks cost 90 µs observed one by
    one, a few µs here). Relies on prometheus-client's histogram layout (non-cumulative
    ``_buckets`` under ``_upper_bounds``, a ``_sum``), which tests/unit/test_metrics.py pins
    against ``observe``."""
    bounds = child._upper_bounds
    counts: dict[int, int] = {}
    for value in values:
        index = bisect_left(bounds, value)  # the first bucket with value <= bound, as observe
        counts[index] = counts.get(index, 0) + 1
    child._sum.inc(sum(values))
    buckets = child._buckets
    for index, n in counts.items():
        buckets[index].inc(n)


@dataclass(slots=True)
class GenAIMetrics:
    """The pre-bound GenAI-convention children of one (route, variant, operation name).

    ``failed`` holds ``gen_ai_client_operation_duration_seconds`` children by ``error_type``
    (the HTTP status the gateway answered), made on first use from that closed set.
    """

    operation: str
    provider: str
    model: str
    route: str
    variant: str
    duration: Any
    input_tokens: Any
    output_tokens: Any
    first_chunk: Any
    per_chunk: Any
    failed: dict[int, Any] = field(default_factory=dict)


@dataclass(slots=True)
class VariantMetrics:
    """The pre-bound children of one (route, variant)."""

    duration: Any
    overhead: Any
    upstream_duration: Any
    ttft: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any
    shadow_input_tokens: Any = None
    shadow_output_tokens: Any = None
    shadow_cost: Any = None
    """The ``gateway_shadow_*`` children, bound only for a shadow route's candidate."""
    route: str = ""
    variant: str = ""
    upstream: str = ""
    model: str = ""
    gen_ai: dict[str, GenAIMetrics] = field(default_factory=dict)
    """By the request record's ``operation``; ``chat`` made at start-up, others on first use."""


class Metrics:
    """Every metric the gateway exports; ``registry`` is what ``/metrics`` renders (with one
    worker; with several, :func:`gateway.telemetry.multiproc.render` reads every worker's)."""

    def __init__(self, config: GatewayConfig) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by outcome.",
            ["route", "variant", "decision", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to last byte.",
            ["route", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway: total minus upstream.",
            ["route", "variant"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time spent waiting on the upstream.",
            ["route", "variant", "upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time from request to the first content chunk.",
            ["route", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens reported by the upstream.",
            ["route", "variant", "type"],
            registry=r,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Cost in USD from the routes file's prices.",
            ["route", "variant"],
            registry=r,
        )
        self.shadow_tokens = Counter(
            "gateway_shadow_tokens",
            "Tokens reported for shadow calls of the candidate (also in gateway_tokens).",
            ["route", "variant", "type"],
            registry=r,
        )
        self.shadow_cost = Counter(
            "gateway_shadow_cost_usd",
            "Cost in USD of shadow calls (also in gateway_cost_usd).",
            ["route", "variant"],
            registry=r,
        )
        gen_ai_labels = [
            "gen_ai_operation_name",
            "gen_ai_provider_name",
            "gen_ai_request_model",
            "route",
            "variant",
        ]
        self.gen_ai_token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used (gen_ai.client.token.usage).",
            [*gen_ai_labels, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.gen_ai_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (gen_ai.client.operation.duration); error_type on failures.",
            [*gen_ai_labels, "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.gen_ai_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from the request to the first content chunk of a stream "
            "(gen_ai.client.operation.time_to_first_chunk).",
            gen_ai_labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.gen_ai_per_chunk = Histogram(
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "Time between consecutive content chunks of a stream, one observation per chunk after "
            "the first (gen_ai.client.operation.time_per_output_chunk).",
            gen_ai_labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.quality_checks = Counter(
            "gateway_quality_checks",
            "Answers checked against the route's contract.",
            ["route", "variant", "check", "result"],
            registry=r,
        )
        self.failovers = Counter(
            "gateway_failovers",
            "Requests switched to the fallback because the candidate failed.",
            ["route", "reason"],
            registry=r,
        )
        self.shadow_comparisons = Counter(
            "gateway_shadow_comparisons",
            "Shadow answers of the candidate compared with the fallback's.",
            ["route", "result"],
            registry=r,
        )
        self.feedback = Counter(
            "gateway_feedback",
            "Feedback received, by verdict.",
            ["route", "variant", "result"],
            registry=r,
        )
        self.rollbacks = Counter(
            "gateway_rollbacks",
            "Flag rollbacks.",
            ["route", "trigger"],
            registry=r,
        )
        # Gauges and how several workers' values are combined (multiprocess_mode; "live" modes
        # forget a worker that has exited): a flag's state is the same in every worker, so the
        # latest value or the largest; "up" gauges are the smallest (one worker cut off is
        # cut off); requests in flight add up.
        self.flag_weight = Gauge(
            "gateway_flag_weight",
            "The candidate's weight (0..100000) as this replica sees it.",
            ["route"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.flag_store_up = Gauge(
            "gateway_flag_store_up",
            "1 when this replica reaches its flag store, 0 while it serves its last-known flags.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.flag_source = Gauge(
            "gateway_flag_source",
            "1 for where this replica's flag of the route comes from (store: what the store "
            "holds; snapshot: its own last-known state; routes_file: never written; none: "
            "nothing loaded, the fallback is served), 0 for the others.",
            ["route", "source"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.flag_store_restores = Counter(
            "gateway_flag_store_restores",
            "Flags this replica wrote back into a store that had lost or rolled them back.",
            ["route"],
            registry=r,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests",
            "Requests being answered now.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.guard_outcomes = Gauge(
            "gateway_guard_outcomes",
            "Outcomes of the route's current rollout the guard counts, route-wide (all replicas).",
            ["route", "role"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.guard_failure_ratio = Gauge(
            "gateway_guard_failure_ratio",
            "Failed share of the current rollout's outcomes, route-wide, per side (absent "
            "while a side has no outcomes).",
            ["route", "role"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.route_failure_ratio = Gauge(
            "gateway_route_failure_ratio",
            "Failed share of the current rollout's outcomes, both sides together, route-wide.",
            ["route"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.guard_ceiling = Gauge(
            "gateway_guard_ceiling",
            "The route's guard ceiling (failure rate), from the routes file.",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.guard_pending_rollbacks = Gauge(
            "gateway_guard_pending_rollbacks",
            "1 while this replica's guard has rolled the route back locally and the flag "
            "store write has not landed yet.",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.guard_evidence_up = Gauge(
            "gateway_guard_evidence_up",
            "1 when the last exchange of outcome counts with the flag store succeeded (the guard "
            "decides on route-wide totals), 0 while it adds only this replica's outcomes.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # -- the ramp (progressive delivery; set by gateway.telemetry.ramp_metrics) --
        self.ramp_step = Gauge(
            "gateway_ramp_step",
            "The ramp's current step, 0-based, as this replica's flag says.",
            ["route"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.ramp_state = Gauge(
            "gateway_ramp_state",
            "1 for the ramp's state (ramping, paused, complete, stopped), 0 for the others.",
            ["route", "state"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.events_too_large = Counter(
            "gateway_upstream_events_too_large",
            "Upstream streams ended because one SSE event exceeded the size limit.",
            ["upstream"],
            registry=r,
        )
        self.events_too_large_by_upstream = {
            name: self.events_too_large.labels(name) for name in config.upstreams
        }
        self.pool_exhausted = Counter(
            "gateway_pool_exhausted",
            "Upstream calls that found no free pooled connection within the pool timeout "
            "(the gateway's saturation; never counted against a variant by the guard).",
            ["upstream"],
            registry=r,
        )
        self.pool_exhausted_by_upstream = {
            name: self.pool_exhausted.labels(name) for name in config.upstreams
        }
        self._providers = {name: up.provider for name, up in config.upstreams.items()}
        self.variants: dict[tuple[str, str], VariantMetrics] = {}
        self.inflight_by_route: dict[str, Any] = {}
        for route in config.routes.values():
            self.inflight_by_route[route.name] = self.inflight.labels(route.name)
            if not route.passthrough:
                self.flag_weight.labels(route.name).set(route.flag.weight)
            if route.guard is not None and route.guard.mode != "off" and not route.passthrough:
                self.guard_ceiling.labels(route.name).set(route.guard.ceiling)
                self.guard_pending_rollbacks.labels(route.name).set(0)
            for variant in route.variants.values():
                vm = self.variants[(route.name, variant.name)] = self._bind(
                    route.name, variant.name, variant.upstream, variant.model
                )
                self.gen_ai_for(vm, "chat")
                if route.shadow is not None and variant.name == route.candidate:
                    vm.shadow_input_tokens = self.shadow_tokens.labels(
                        route.name, variant.name, "input"
                    )
                    vm.shadow_output_tokens = self.shadow_tokens.labels(
                        route.name, variant.name, "output"
                    )
                    vm.shadow_cost = self.shadow_cost.labels(route.name, variant.name)
        self._zero_counters(config)
        self._requests_children: dict[tuple[str, str, str, int], Any] = {}

    def _zero_counters(self, config: GatewayConfig) -> None:
        """Create every counter series the routes file can produce, at 0, so that ``rate()``
        and ``increase()`` see its first event (a series born at 1 has no increase)."""
        for route in config.routes.values():
            for variant in route.variants:
                for verdict in _FEEDBACK_RESULTS:
                    self.feedback.labels(route.name, variant, verdict)
            if route.passthrough:
                continue
            self.flag_store_restores.labels(route.name)
            self.rollbacks.labels(route.name, "manual")
            if route.guard is not None and route.guard.mode == "enforce":
                self.rollbacks.labels(route.name, "guard")
            if route.candidate != route.fallback:
                for reason in FAILOVER_REASONS:
                    if reason in route.failover_on:
                        self.failovers.labels(route.name, reason)
            if route.shadow is not None:
                for result in _SHADOW_RESULTS:
                    self.shadow_comparisons.labels(route.name, result)

    def _bind(self, route: str, variant: str, upstream: str, model: str) -> VariantMetrics:
        return VariantMetrics(
            duration=self.duration.labels(route, variant),
            overhead=self.overhead.labels(route, variant),
            upstream_duration=self.upstream_duration.labels(route, variant, upstream),
            ttft=self.ttft.labels(route, variant),
            input_tokens=self.tokens.labels(route, variant, "input"),
            output_tokens=self.tokens.labels(route, variant, "output"),
            cost=self.cost.labels(route, variant),
            route=route,
            variant=variant,
            upstream=upstream,
            model=model,
        )

    def gen_ai_for(self, vm: VariantMetrics, operation: str) -> GenAIMetrics:
        """The GenAI children of a request record's ``operation`` on ``vm``'s (route, variant),
        made on first use (``chat`` at start-up; the operations are a closed set)."""
        children = vm.gen_ai.get(operation)
        if children is None:
            name = gen_ai_operation(operation)
            provider = self._providers[vm.upstream]
            common = (name, provider, vm.model, vm.route, vm.variant)
            children = vm.gen_ai[operation] = GenAIMetrics(
                operation=name,
                provider=provider,
                model=vm.model,
                route=vm.route,
                variant=vm.variant,
                duration=self.gen_ai_duration.labels(*common, ""),
                input_tokens=self.gen_ai_token_usage.labels(*common, "input"),
                output_tokens=self.gen_ai_token_usage.labels(*common, "output"),
                first_chunk=self.gen_ai_first_chunk.labels(*common),
                per_chunk=self.gen_ai_per_chunk.labels(*common),
            )
        return children

    def gen_ai_failed(self, children: GenAIMetrics, status: int) -> Any:
        """``gen_ai_client_operation_duration_seconds`` child for a failure, ``error_type`` the
        HTTP status answered (the conventions' ``error.type`` example ``500``)."""
        child = children.failed.get(status)
        if child is None:
            child = children.failed[status] = self.gen_ai_duration.labels(
                children.operation,
                children.provider,
                children.model,
                children.route,
                children.variant,
                str(status),
            )
        return child

    def forget_guard_failure_ratio(self, route: str, role: str) -> None:
        """A side of the route has no outcomes (a new rollout): drop its
        ``gateway_guard_failure_ratio`` series. With several workers, where prometheus-client
        cannot remove a series, set it to NaN instead: no alert compares NaN true, and
        dashboards draw a gap."""
        if multiproc.enabled():
            self.guard_failure_ratio.labels(route, role).set(math.nan)
        else:
            self.guard_failure_ratio.remove(route, role)

    def count_request(self, route: str, variant: str, decision: str, status: int) -> None:
        """``gateway_requests_total`` += 1; children cached per label set (all from closed sets)."""
        key = (route, variant, decision, status)
        child = self._requests_children.get(key)
        if child is None:
            child = self._requests_children[key] = self.requests.labels(
                route, variant, decision, str(status)
            )
        child.inc()
