"""The console's per-variant figures, read from the gateway's own Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.console.stats import route_stats
from gateway.telemetry import Metrics
from tests.inprocess import routes_text


@pytest.fixture
def metrics(tmp_path: Path) -> Metrics:
    path = tmp_path / "routes.yaml"
    path.write_text(routes_text())
    return Metrics(load_config(path))


def figures(m: Metrics) -> dict[str, dict[str, object]]:
    return route_stats(
        ["triage"], requests=m.requests, tokens=m.tokens, cost=m.cost, duration=m.duration
    )


def test_counts_tokens_cost_and_latency_per_variant(metrics: Metrics) -> None:
    """Requests by variant and decision, 5xx errors, tokens, cost per 1,000 requests, mean
    latency and the bucket bound of the 95th percentile."""
    m = metrics
    for _ in range(19):
        m.requests.labels("triage", "cand", "rollout", "200").inc()
        m.duration.labels("triage", "cand").observe(0.02)
    m.requests.labels("triage", "cand", "failover", "502").inc()
    m.duration.labels("triage", "cand").observe(3.0)
    m.requests.labels("triage", "fall", "rolled_back", "200").inc(5)
    m.tokens.labels("triage", "cand", "input").inc(100)
    m.tokens.labels("triage", "cand", "output").inc(20)
    m.cost.labels("triage", "cand").inc(0.5)
    m.requests.labels("_unknown", "_none", "none", "404").inc()  # not a route: left out
    out = figures(m)
    assert set(out) == {"triage"}
    route = out["triage"]
    assert route["decisions"] == {"rollout": 19, "failover": 1, "rolled_back": 5}
    cand = route["variants"]["cand"]  # type: ignore[index]
    assert cand["requests"] == 20
    assert cand["errors"] == 1
    assert (cand["input_tokens"], cand["output_tokens"]) == (100, 20)
    assert cand["cost_per_1k_requests_usd"] == pytest.approx(25.0)
    assert cand["latency_mean_s"] == pytest.approx((19 * 0.02 + 3.0) / 20)
    assert cand["latency_p95_s"] == 0.025  # 19 of 20 (95%) at or below the 25 ms bucket
    fall = route["variants"]["fall"]  # type: ignore[index]
    assert fall["requests"] == 5
    assert fall["latency_mean_s"] is None


def test_a_variant_without_requests_has_no_rates(metrics: Metrics) -> None:
    """No requests: zero counts, and no cost per 1,000 requests or latency (not zero)."""
    out = figures(metrics)
    for variant in ("cand", "fall"):
        v = out["triage"]["variants"][variant]  # type: ignore[index]
        assert v["requests"] == 0
        assert v["cost_per_1k_requests_usd"] is None
        assert v["latency_p95_s"] is None


def test_p95_beyond_the_last_bucket_is_unknown(metrics: Metrics) -> None:
    """When the 95th percentile is only in the +Inf bucket there is no finite bound."""
    metrics.requests.labels("triage", "cand", "rollout", "200").inc()
    metrics.duration.labels("triage", "cand").observe(500.0)
    v = figures(metrics)["triage"]["variants"]["cand"]  # type: ignore[index]
    assert v["latency_p95_s"] is None
    assert v["latency_mean_s"] == pytest.approx(500.0)
