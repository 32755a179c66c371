"""This replica's per-route, per-variant figures for the console, read from its own metrics.

Nothing is added to the request path: the figures are the samples of the Prometheus metrics the
gateway already keeps (``gateway_requests_total``, ``gateway_tokens_total``,
``gateway_cost_usd_total``, ``gateway_request_duration_seconds``), read when the console asks.
They are cumulative since this process started; the page turns two readings into rates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["MetricSource", "route_stats"]


class _Sample(Protocol):
    name: str
    labels: dict[str, str]
    value: float


class _Family(Protocol):
    @property
    def samples(self) -> list[Any]: ...


class MetricSource(Protocol):
    """A prometheus-client metric (what ``Counter``/``Histogram`` objects are)."""

    def collect(self) -> Iterable[_Family]: ...


def _samples(metric: MetricSource, suffix: str) -> Iterable[_Sample]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample


def _variant(out: dict[str, dict[str, Any]], route: str, variant: str) -> dict[str, Any] | None:
    if route not in out:
        return None
    variants: dict[str, dict[str, Any]] = out[route]["variants"]
    return variants.setdefault(
        variant,
        {
            "requests": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "cost_per_1k_requests_usd": None,
            "latency_mean_s": None,
            "latency_p95_s": None,
            "_duration": [0.0, 0.0, {}],
        },
    )


def route_stats(
    routes: Iterable[str],
    *,
    requests: MetricSource,
    tokens: MetricSource,
    cost: MetricSource,
    duration: MetricSource,
) -> dict[str, dict[str, Any]]:
    """Per route: ``decisions`` (requests by ``x-gateway-decision``, all variants) and
    ``variants``, each ``{requests, errors (status >= 500), input_tokens, output_tokens,
    cost_usd, cost_per_1k_requests_usd, latency_mean_s, latency_p95_s}``.

    ``latency_p95_s`` is the upper bound of the histogram bucket holding the 95th percentile
    (``None`` beyond the last finite bucket or without requests); the cost per 1,000 requests
    is ``cost_usd / requests * 1000`` (``None`` without requests). Only ``routes`` are kept.
    """
    out: dict[str, dict[str, Any]] = {r: {"decisions": {}, "variants": {}} for r in routes}
    for s in _samples(requests, "_total"):
        route, variant = s.labels.get("route", ""), s.labels.get("variant", "")
        if route not in out:
            continue
        decisions = out[route]["decisions"]
        decision = s.labels.get("decision", "none")
        decisions[decision] = decisions.get(decision, 0) + int(s.value)
        v = _variant(out, route, variant)
        if v is not None and variant != "_none":
            v["requests"] += int(s.value)
            if s.labels.get("status", "").startswith("5"):
                v["errors"] += int(s.value)
    for s in _samples(tokens, "_total"):
        v = _variant(out, s.labels.get("route", ""), s.labels.get("variant", ""))
        if v is not None:
            kind = "input_tokens" if s.labels.get("type") == "input" else "output_tokens"
            v[kind] += int(s.value)
    for s in _samples(cost, "_total"):
        v = _variant(out, s.labels.get("route", ""), s.labels.get("variant", ""))
        if v is not None:
            v["cost_usd"] += s.value
    for family in duration.collect():
        for s in family.samples:
            v = _variant(out, s.labels.get("route", ""), s.labels.get("variant", ""))
            if v is None:
                continue
            acc = v["_duration"]
            if s.name.endswith("_sum"):
                acc[0] = s.value
            elif s.name.endswith("_count"):
                acc[1] = s.value
            elif s.name.endswith("_bucket"):
                acc[2][float(s.labels["le"])] = s.value
    for figures in out.values():
        figures["variants"].pop("_none", None)
        for v in figures["variants"].values():
            total, count, buckets = v.pop("_duration")
            if v["requests"]:
                v["cost_per_1k_requests_usd"] = v["cost_usd"] / v["requests"] * 1000
            if count:
                v["latency_mean_s"] = total / count
                v["latency_p95_s"] = _quantile_bound(buckets, count, 0.95)
    return out


def _quantile_bound(buckets: dict[float, float], count: float, q: float) -> float | None:
    """The smallest bucket bound with at least ``q`` of ``count`` observations at or below it
    (cumulative Prometheus buckets); None when that is only the ``+Inf`` bucket."""
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return None if bound == float("inf") else bound
    return None
