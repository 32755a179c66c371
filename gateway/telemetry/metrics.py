"""Prometheus metrics, named as DESIGN.md section 4 says, in a registry of the app's own.

Label values come only from the routes file (route, variant, upstream names) and from closed sets
(decision reasons, HTTP status codes, token types), so a client cannot create series. Children
for each route and variant are made once at start-up (:class:`VariantMetrics`); the request path
never looks a label set up by name.

The names map one to one onto OpenTelemetry GenAI: ``gateway_tokens_total{type}`` is
``gen_ai.client.token.usage`` with ``gen_ai.token.type``, ``gateway_request_duration_seconds``
is ``gen_ai.client.operation.duration``, ``gateway_time_to_first_token_seconds`` is the time to
the first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.config import GatewayConfig

__all__ = ["UNKNOWN_ROUTE", "Metrics", "VariantMetrics"]

UNKNOWN_ROUTE = "_unknown"
"""Route label for requests that named no configured route (404, 400 before routing)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


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


class Metrics:
    """Every metric the gateway exports; ``registry`` is what ``/metrics`` renders."""

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
            "Tokens reported by the upstream (gen_ai.client.token.usage).",
            ["route", "variant", "type"],
            registry=r,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "Cost in USD from the routes file's prices.",
            ["route", "variant"],
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
        self.flag_weight = Gauge(
            "gateway_flag_weight",
            "The candidate's weight (0..100000) as this replica sees it.",
            ["route"],
            registry=r,
        )
        self.flag_store_up = Gauge(
            "gateway_flag_store_up",
            "1 when this replica reaches its flag store, 0 while it serves its last-known flags.",
            registry=r,
        )
        self.flag_source = Gauge(
            "gateway_flag_source",
            "1 for where this replica's flag of the route comes from (store: what the store "
            "holds; snapshot: its own last-known state; routes_file: never written; none: "
            "nothing loaded, the fallback is served), 0 for the others.",
            ["route", "source"],
            registry=r,
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
        )
        self.guard_outcomes = Gauge(
            "gateway_guard_outcomes",
            "Outcomes of the route's current rollout the guard counts, route-wide (all replicas).",
            ["route", "role"],
            registry=r,
        )
        self.guard_failure_ratio = Gauge(
            "gateway_guard_failure_ratio",
            "Failed share of the current rollout's outcomes, route-wide, per side (absent "
            "while a side has no outcomes).",
            ["route", "role"],
            registry=r,
        )
        self.route_failure_ratio = Gauge(
            "gateway_route_failure_ratio",
            "Failed share of the current rollout's outcomes, both sides together, route-wide.",
            ["route"],
            registry=r,
        )
        self.guard_ceiling = Gauge(
            "gateway_guard_ceiling",
            "The route's guard ceiling (failure rate), from the routes file.",
            ["route"],
            registry=r,
        )
        self.guard_pending_rollbacks = Gauge(
            "gateway_guard_pending_rollbacks",
            "1 while this replica's guard has rolled the route back locally and the flag "
            "store write has not landed yet.",
            ["route"],
            registry=r,
        )
        self.guard_evidence_up = Gauge(
            "gateway_guard_evidence_up",
            "1 when the last exchange of outcome counts with the flag store succeeded (the guard "
            "decides on route-wide totals), 0 while it adds only this replica's outcomes.",
            registry=r,
        )
        # -- the ramp (progressive delivery; set by gateway.telemetry.ramp_metrics) --
        self.ramp_step = Gauge(
            "gateway_ramp_step",
            "The ramp's current step, 0-based, as this replica's flag says.",
            ["route"],
            registry=r,
        )
        self.ramp_state = Gauge(
            "gateway_ramp_state",
            "1 for the ramp's state (ramping, paused, complete, stopped), 0 for the others.",
            ["route", "state"],
            registry=r,
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
                self.variants[(route.name, variant.name)] = self._bind(
                    route.name, variant.name, variant.upstream
                )
        self._requests_children: dict[tuple[str, str, str, int], Any] = {}

    def _bind(self, route: str, variant: str, upstream: str) -> VariantMetrics:
        return VariantMetrics(
            duration=self.duration.labels(route, variant),
            overhead=self.overhead.labels(route, variant),
            upstream_duration=self.upstream_duration.labels(route, variant, upstream),
            ttft=self.ttft.labels(route, variant),
            input_tokens=self.tokens.labels(route, variant, "input"),
            output_tokens=self.tokens.labels(route, variant, "output"),
            cost=self.cost.labels(route, variant),
        )

    def count_request(self, route: str, variant: str, decision: str, status: int) -> None:
        """``gateway_requests_total`` += 1; children cached per label set (all from closed sets)."""
        key = (route, variant, decision, status)
        child = self._requests_children.get(key)
        if child is None:
            child = self._requests_children[key] = self.requests.labels(
                route, variant, decision, str(status)
            )
        child.inc()
