"""Metrics from the config and the request record: GenAI-convention families beside the
gateway's own, and every counter series the routes file can produce born at 0.

The metrics are read the way Prometheus reads them: the text a scrape returns, parsed by
prometheus-client's parser.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from gateway.config import load_config
from gateway.telemetry import Metrics, RequestRecord, Telemetry
from gateway.telemetry.metrics import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    gen_ai_operation,
    observe_each,
    observe_one,
)
from tests.inprocess import CLIENT_KEY, completion, in_process_gateway
from tests.recording_logger import RecordingLogger

ROUTES = """
upstreams:
  oa: {base_url: "http://oa.test/v1"}
  az: {base_url: "http://az.test/v1", provider: azure.ai.openai}
routes:
  guarded:
    variants:
      tuned: {upstream: az, model: ft-model}
      prompted: {upstream: oa, model: base-model}
    candidate: tuned
    fallback: prompted
    failover_on: [connect, timeout]
    guard: {}
    shadow: {share: 0.5}
  plain:
    variants:
      tuned: {upstream: oa, model: ft-model}
      prompted: {upstream: oa, model: base-model}
    candidate: tuned
    fallback: prompted
    guard: {mode: observe}
passthrough:
  oa: [raw-model]
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, or None when the scrape has no such series."""
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def metrics(tmp_path: Path) -> Metrics:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return Metrics(load_config(path))


def test_every_counter_series_the_config_can_produce_starts_at_zero(metrics: Metrics) -> None:
    samples = scrape(generate_latest(metrics.registry).decode())
    for route in ("guarded", "plain"):
        assert value(samples, "gateway_rollbacks_total", route=route, trigger="manual") == 0
        assert value(samples, "gateway_flag_store_restores_total", route=route) == 0
        for variant in ("tuned", "prompted"):
            for verdict in ("positive", "negative"):
                labels = {"route": route, "variant": variant, "result": verdict}
                assert value(samples, "gateway_feedback_total", **labels) == 0
    # A guard rollback only where the guard enforces; failovers only for the reasons listed.
    assert value(samples, "gateway_rollbacks_total", route="guarded", trigger="guard") == 0
    assert value(samples, "gateway_rollbacks_total", route="plain", trigger="guard") is None
    for reason in ("connect", "timeout"):
        assert value(samples, "gateway_failovers_total", route="guarded", reason=reason) == 0
    assert value(samples, "gateway_failovers_total", route="guarded", reason="5xx") is None
    for reason in ("connect", "timeout", "5xx", "429", "invalid_response", "pool_exhausted"):
        assert value(samples, "gateway_failovers_total", route="plain", reason=reason) == 0
    for result in ("agree", "disagree", "error", "skipped"):
        assert (
            value(samples, "gateway_shadow_comparisons_total", route="guarded", result=result) == 0
        )
    assert value(samples, "gateway_shadow_comparisons_total", route="plain", result="agree") is None
    # Pass-through routes have no flag: nothing to roll back.
    assert value(samples, "gateway_rollbacks_total", route="raw-model", trigger="manual") is None


def _record(**fields: object) -> RequestRecord:
    rec = RequestRecord(request_id="r1", started=0.0)
    rec.route, rec.variant, rec.decision = "guarded", "tuned", "rollout"
    rec.upstream, rec.upstream_model = "az", "ft-model"
    for name, field_value in fields.items():
        setattr(rec, name, field_value)
    return rec


GEN_AI = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "azure.ai.openai",
    "gen_ai_request_model": "ft-model",
    "route": "guarded",
    "variant": "tuned",
}


def test_a_request_is_observed_in_the_gen_ai_families(metrics: Metrics) -> None:
    telemetry = Telemetry(metrics, RecordingLogger())
    telemetry.finish(_record(input_tokens=20, output_tokens=3, ttft_seconds=0.2))
    samples = scrape(generate_latest(metrics.registry).decode())
    usage = "gen_ai_client_token_usage"
    assert value(samples, usage + "_sum", **GEN_AI, gen_ai_token_type="input") == 20
    assert value(samples, usage + "_sum", **GEN_AI, gen_ai_token_type="output") == 3
    # The conventions' boundaries: 20 input tokens fall in le=64 and not in le=16.
    bucket = usage + "_bucket"
    assert value(samples, bucket, **GEN_AI, gen_ai_token_type="input", le="16.0") == 0
    assert value(samples, bucket, **GEN_AI, gen_ai_token_type="input", le="64.0") == 1
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert value(samples, duration, **GEN_AI, error_type="") == 1
    # Not a stream: no time to first chunk.
    assert (
        value(samples, "gen_ai_client_operation_time_to_first_chunk_seconds_count", **GEN_AI) == 0
    )


def test_a_failed_request_carries_its_error_type(metrics: Metrics) -> None:
    telemetry = Telemetry(metrics, RecordingLogger())
    telemetry.finish(_record(status=504))
    telemetry.finish(_record(status=504))
    telemetry.finish(_record(status=502))
    samples = scrape(generate_latest(metrics.registry).decode())
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert value(samples, duration, **GEN_AI, error_type="504") == 2
    assert value(samples, duration, **GEN_AI, error_type="502") == 1
    assert value(samples, duration, **GEN_AI, error_type="") == 0
    # No tokens reported, none observed.
    usage = "gen_ai_client_token_usage_count"
    assert value(samples, usage, **GEN_AI, gen_ai_token_type="input") == 0


def test_a_stream_records_time_to_first_chunk_and_each_later_chunk(metrics: Metrics) -> None:
    rec = _record(stream=True)
    for now in (0.3, 0.35, 0.45, 0.5):
        rec.content_chunk(now)
    assert rec.ttft_seconds == pytest.approx(0.3)
    assert rec.chunk_gaps == pytest.approx([0.05, 0.1, 0.05])
    Telemetry(metrics, RecordingLogger()).finish(rec)
    samples = scrape(generate_latest(metrics.registry).decode())
    first = "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert value(samples, first + "_count", **GEN_AI) == 1
    assert value(samples, first + "_sum", **GEN_AI) == pytest.approx(0.3)
    per_chunk = "gen_ai_client_operation_time_per_output_chunk_seconds"
    assert value(samples, per_chunk + "_count", **GEN_AI) == 3
    assert value(samples, per_chunk + "_bucket", **GEN_AI, le="0.08") == 2
    assert value(samples, per_chunk + "_bucket", **GEN_AI, le="0.16") == 3


@pytest.mark.parametrize(
    ("operation", "name"),
    [
        ("chat", "chat"),
        ("responses", "chat"),
        ("completions", "text_completion"),
        ("embeddings", "embeddings"),
    ],
)
def test_operations_map_to_the_conventions_names(
    metrics: Metrics, operation: str, name: str
) -> None:
    assert gen_ai_operation(operation) == name
    Telemetry(metrics, RecordingLogger()).finish(_record(operation=operation))
    samples = scrape(generate_latest(metrics.registry).decode())
    labels = {**GEN_AI, "gen_ai_operation_name": name, "error_type": ""}
    assert value(samples, "gen_ai_client_operation_duration_seconds_count", **labels) == 1


def test_provider_defaults_to_openai_and_buckets_are_the_conventions(metrics: Metrics) -> None:
    Telemetry(metrics, RecordingLogger()).finish(
        _record(variant="prompted", upstream="oa", upstream_model="base-model")
    )
    samples = scrape(generate_latest(metrics.registry).decode())
    labels = {
        **GEN_AI,
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "base-model",
        "variant": "prompted",
        "error_type": "",
    }
    assert value(samples, "gen_ai_client_operation_duration_seconds_count", **labels) == 1
    les = sorted(
        float(dict(key[1])["le"])
        for key in samples
        if key[0] == "gen_ai_client_operation_duration_seconds_bucket"
        and frozenset(labels.items()) <= key[1]
    )
    assert les == [*DURATION_BUCKETS, float("inf")]
    assert TOKEN_BUCKETS[0] == 1
    assert TOKEN_BUCKETS[-1] == 4**13


async def test_a_fresh_gateway_scrapes_its_counters_at_zero(tmp_path: Path) -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion())

    async with in_process_gateway(tmp_path, upstream) as gateway:
        text = (await gateway.client.get("/metrics")).text
        samples = scrape(text)
        assert value(samples, "gateway_rollbacks_total", route="triage", trigger="guard") == 0
        assert value(samples, "gateway_failovers_total", route="triage", reason="5xx") == 0
        assert (
            value(
                samples, "gateway_feedback_total", route="triage", variant="cand", result="negative"
            )
            == 0
        )
        reply = await gateway.chat(headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert reply.status_code == 200
        samples = scrape((await gateway.client.get("/metrics")).text)
        labels = {
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": "openai",
            "gen_ai_request_model": "cand-model",
            "route": "triage",
            "variant": "cand",
        }
        usage = "gen_ai_client_token_usage_sum"
        assert value(samples, usage, **labels, gen_ai_token_type="input") == 3
        assert value(samples, usage, **labels, gen_ai_token_type="output") == 1


async def test_a_metrics_token_guards_the_scrape(tmp_path: Path) -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion())

    token = "scrape-token-5d1e"
    async with in_process_gateway(tmp_path, upstream, metrics_token=SecretStr(token)) as gateway:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": CLIENT_KEY}):
            refused = await gateway.client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            error = refused.json()["error"]
            assert error["code"] == "invalid_api_key"
            assert token not in refused.text
        allowed = await gateway.client.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
        assert "gateway_rollbacks_total" in allowed.text
        # The data plane keeps its own keys.
        assert (await gateway.chat()).status_code == 200


@pytest.mark.parametrize(
    "values",
    [[0.05, 0.1, 0.05], [0.0, 0.01, 0.02, 81.92, 100.0, 0.011], [0.3] * 50, []],
)
def test_observe_each_records_what_observe_records(values: list[float]) -> None:
    """Pins prometheus-client's histogram layout that observe_each writes to."""
    registry = CollectorRegistry()
    one_by_one = Histogram("a_seconds", "a", buckets=DURATION_BUCKETS, registry=registry)
    batched = Histogram("b_seconds", "b", buckets=DURATION_BUCKETS, registry=registry)
    for v in values:
        one_by_one.observe(v)
    observe_each(batched, values)
    samples = scrape(generate_latest(registry).decode())
    for (name, labels), got in samples.items():
        if name.startswith("b_seconds") and not name.endswith("_created"):
            expected = samples[("a" + name[1:], labels)]
            assert got == pytest.approx(expected), (name, labels)
    assert value(samples, "b_seconds_count") == len(values)


@pytest.mark.parametrize("value_", [0.0, 0.005, 0.01, 0.011, 81.92, 100.0, -1.0])
def test_observe_one_records_what_observe_records(value_: float) -> None:
    """Pins prometheus-client's histogram layout that observe_one writes to."""
    registry = CollectorRegistry()
    plain = Histogram("a_seconds", "a", buckets=DURATION_BUCKETS, registry=registry)
    fast = Histogram("b_seconds", "b", buckets=DURATION_BUCKETS, registry=registry)
    tokens_plain = Histogram("c_tokens", "c", buckets=TOKEN_BUCKETS, registry=registry)
    tokens_fast = Histogram("d_tokens", "d", buckets=TOKEN_BUCKETS, registry=registry)
    for _ in range(2):
        plain.observe(value_)
        observe_one(fast, value_)
        tokens_plain.observe(value_ * 1000)
        observe_one(tokens_fast, value_ * 1000)
    samples = scrape(generate_latest(registry).decode())
    for (name, labels), got in samples.items():
        if name.startswith(("b_seconds", "d_tokens")) and not name.endswith("_created"):
            other = {"b": "a", "d": "c"}[name[0]]
            assert got == pytest.approx(samples[(other + name[1:], labels)]), (name, labels)
    assert value(samples, "b_seconds_count") == 2


def test_a_forgotten_guard_ratio_is_absent_or_nan_with_several_workers(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.guard_failure_ratio.labels("guarded", "candidate").set(0.5)
    metrics.forget_guard_failure_ratio("guarded", "candidate")
    samples = scrape(generate_latest(metrics.registry).decode())
    ratio = "gateway_guard_failure_ratio"
    assert value(samples, ratio, route="guarded", role="candidate") is None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics.guard_failure_ratio.labels("guarded", "candidate").set(0.5)
    metrics.forget_guard_failure_ratio("guarded", "candidate")
    samples = scrape(generate_latest(metrics.registry).decode())
    assert math.isnan(value(samples, ratio, route="guarded", role="candidate") or 0.0)


def test_every_gauge_says_how_several_workers_combine(metrics: Metrics) -> None:
    """With GATEWAY_WORKERS > 1 a gauge left in prometheus-client's default mode ("all") is one
    series per worker pid, kept after the worker exits (a dead worker's ramp state would hold
    an alert back): every gauge names its mode, as docs/api.md's table says."""
    gauges = [g for g in vars(metrics).values() if isinstance(g, Gauge)]
    assert len(gauges) >= 10
    unset = [g._name for g in gauges if g._multiprocess_mode == "all"]
    assert unset == []
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    table = docs.split("Gauges are combined per metric:", 1)[1].split("\n\n", 2)[1]
    missing = [g._name for g in gauges if f"`{g._name}`" not in table]
    assert missing == []
