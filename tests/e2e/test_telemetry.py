"""Telemetry end to end: metrics and ``request.completed`` events agree with the upstream.

The simulator counts the tokens it actually reported; the gateway's Prometheus counters, costs
and per-request log events must match those counts exactly, per variant, for a mix of streamed
and unary requests. Metric labels come only from config, whatever model names clients send.
The gateway and the simulator run in-process (``tests.inprocess_sim``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import openai
import pytest

from tests.e2e.support import TICKET, AnyGateway, chat, metric_samples, metric_value, wait_for
from tests.inprocess_sim import (
    InProcessSimulator,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import (
    CANDIDATE_MODEL,
    CLIENT_KEY,
    FALLBACK_MODEL,
    routes_yaml,
)

ROUTE = "support-triage"
MODEL_OF = {"finetuned": CANDIDATE_MODEL, "prompted": FALLBACK_MODEL}
# USD per million tokens, as routes_yaml writes them in `prices`.
PRICE_OF = {"finetuned": (0.30, 1.20), "prompted": (0.15, 0.60)}
EVENT_FIELDS = {
    "request_id",
    "route",
    "variant",
    "decision",
    "upstream",
    "upstream_model",
    "stream",
    "status",
    "duration_ms",
    "upstream_duration_ms",
    "overhead_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "client_key",
}
LABELLED_BY_ROUTE = (
    "gateway_requests_total",
    "gateway_request_duration_seconds_count",
    "gateway_overhead_seconds_count",
    "gateway_tokens_total",
    "gateway_cost_usd_total",
    "gateway_failovers_total",
    "gateway_inflight_requests",
    "gateway_flag_weight",
)
TICKETS = [
    TICKET,
    "The app crashes with error 500 on start.",
    "Reset my password please, I am locked out.",
]


@pytest.fixture(scope="module")
def simulator(loop_thread: LoopThread) -> Iterator[InProcessSimulator]:
    """The module's simulator, in-process."""
    with in_process_simulator(loop_thread) as simulator:
        yield simulator


@pytest.fixture
def sim(simulator: InProcessSimulator) -> Iterator[InProcessSimulator]:
    """The module's simulator, reset before and after the test."""
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(scope="module")
def gateway(
    simulator: InProcessSimulator,
    loop_thread: LoopThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AnyGateway]:
    """Half the subjects on each variant."""
    routes = routes_yaml(simulator.url, weight=50_000)
    tmp = tmp_path_factory.mktemp("telemetry")
    with start_in_process(loop_thread, tmp, routes, simulator) as gw:
        yield gw


@pytest.fixture
def client(gateway: AnyGateway, sim: InProcessSimulator) -> openai.OpenAI:
    return gateway.openai(api_key=CLIENT_KEY)


def cost(variant: str, input_tokens: float, output_tokens: float) -> float:
    input_price, output_price = PRICE_OF[variant]
    return (input_tokens * input_price + output_tokens * output_price) / 1e6


def send_mixed_requests(client: openai.OpenAI, n: int) -> dict[str, tuple[str, bool]]:
    """``n`` requests, alternately unary and streamed (some streams asking for usage), each
    with its own subject. Returns request id -> (variant that answered, streamed)."""
    sent: dict[str, tuple[str, bool]] = {}
    for i in range(n):
        request_id = f"telemetry-{uuid4().hex}"
        messages: Any = [{"role": "user", "content": TICKETS[i % len(TICKETS)]}]
        headers = {"x-request-id": request_id}
        if i % 2 == 0:
            raw = client.chat.completions.with_raw_response.create(
                model=ROUTE, messages=messages, user=f"subject-{i}", extra_headers=headers
            )
            assert raw.parse().choices[0].message.content in ("billing", "technical", "account")
            headers_back = raw.headers
        else:
            with client.chat.completions.with_streaming_response.create(
                model=ROUTE,
                messages=messages,
                user=f"subject-{i}",
                stream=True,
                stream_options={"include_usage": True} if i % 4 == 1 else openai.omit,
                extra_headers=headers,
            ) as response:
                headers_back = response.headers
                assert list(response.parse())
        assert headers_back["x-request-id"] == request_id
        sent[request_id] = (headers_back["x-gateway-variant"], i % 2 == 1)
    return sent


def test_tokens_requests_and_cost_match_what_the_upstream_reported(
    gateway: AnyGateway, client: openai.OpenAI, sim: InProcessSimulator
) -> None:
    before = gateway.metrics()
    sent = send_mixed_requests(client, 30)
    wait_for(
        lambda: {e["request_id"] for e in gateway.log_events("request.completed")} >= set(sent),
        "a request.completed event for every request",
    )
    after = gateway.metrics()
    stats = sim.stats()["models"]
    assert {variant for variant, _ in sent.values()} == {"finetuned", "prompted"}

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    for variant, model in MODEL_OF.items():
        upstream = stats[model]
        answered = sum(1 for v, _ in sent.values() if v == variant)
        streamed = sum(1 for v, s in sent.values() if v == variant and s)
        assert upstream["requests"] == answered
        labels = {"route": ROUTE, "variant": variant}
        assert delta("gateway_requests_total", **labels, decision="rollout", status="200") == (
            answered
        )
        assert delta("gateway_requests_total", **labels) == answered
        input_tokens = delta("gateway_tokens_total", **labels, type="input")
        output_tokens = delta("gateway_tokens_total", **labels, type="output")
        assert input_tokens == upstream["prompt_tokens"] > 0
        assert output_tokens == upstream["completion_tokens"] > 0
        assert delta("gateway_cost_usd_total", **labels) == pytest.approx(
            cost(variant, input_tokens, output_tokens), rel=1e-9
        )
        assert delta("gateway_request_duration_seconds_count", **labels) == answered
        assert delta("gateway_time_to_first_token_seconds_count", **labels) == streamed
    assert metric_value(after, "gateway_inflight_requests", route=ROUTE) == 0

    events = [e for e in gateway.log_events("request.completed") if e["request_id"] in sent]
    assert sorted(e["request_id"] for e in events) == sorted(sent)  # exactly one each
    for event in events:
        variant, streamed = sent[event["request_id"]]
        assert set(event) >= EVENT_FIELDS, EVENT_FIELDS - set(event)
        assert event["route"] == ROUTE
        assert event["variant"] == variant
        assert event["decision"] == "rollout"
        assert event["upstream"] == "simulator"
        assert event["upstream_model"] == MODEL_OF[variant]
        assert event["stream"] is streamed
        assert event["status"] == 200
        assert event["client_key"] == "test-app"
        assert event["input_tokens"] > 0
        assert event["output_tokens"] > 0
        assert event["cost_usd"] == pytest.approx(
            cost(variant, event["input_tokens"], event["output_tokens"]), rel=1e-6
        )
        assert event["duration_ms"] >= event["upstream_duration_ms"] >= 0
        assert event["overhead_ms"] >= 0
        if streamed:
            assert event["ttft_ms"] is not None
            assert 0 < event["ttft_ms"] <= event["duration_ms"]
    for variant, model in MODEL_OF.items():
        logged = [e for e in events if e["variant"] == variant]
        assert sum(e["input_tokens"] for e in logged) == stats[model]["prompt_tokens"]
        assert sum(e["output_tokens"] for e in logged) == stats[model]["completion_tokens"]
    assert CLIENT_KEY not in gateway.log_path.read_text()


def test_unknown_model_names_from_clients_add_no_metric_series(
    gateway: AnyGateway, sim: InProcessSimulator
) -> None:
    def series(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return {
            (name, frozenset(labels.items()))
            for name in LABELLED_BY_ROUTE
            for labels, _ in metric_samples(text, name)
        }

    chat(gateway)  # at least one ordinary series exists before
    before_text = gateway.metrics()
    names = [f"model-{uuid4().hex}" for _ in range(50)]
    for name in names:
        response = chat(gateway, {"model": name, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"
    after_text = gateway.metrics()
    unknown_404 = frozenset(
        {"route": "_unknown", "variant": "_none", "decision": "none", "status": "404"}.items()
    )
    assert series(after_text) - series(before_text) <= {("gateway_requests_total", unknown_404)}
    assert (
        metric_value(after_text, "gateway_requests_total", route="_unknown", status="404")
        - metric_value(before_text, "gateway_requests_total", route="_unknown", status="404")
        == 50
    )
    routes = {
        labels["route"]
        for name in LABELLED_BY_ROUTE
        for labels, _ in metric_samples(after_text, name)
    }
    assert routes <= {ROUTE, "_unknown"}
    assert not any(name in after_text for name in names)


def test_healthz_and_readyz_answer_200_json(gateway: AnyGateway) -> None:
    health = gateway.http.get(gateway.url + "/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = gateway.http.get(gateway.url + "/readyz")
    assert ready.status_code == 200
    assert ready.headers["content-type"].startswith("application/json")
    assert ready.json()["status"] == "ready"
    assert ready.json()["routes"] == 1


@pytest.mark.parametrize("payloads", [False, True], ids=["default", "payload-logging-on"])
def test_prompt_and_completion_text_are_logged_only_when_payload_logging_is_on(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path, payloads: bool
) -> None:
    env = {"GATEWAY_LOG_PAYLOADS": "true"} if payloads else {}
    with start_in_process(loop_thread, tmp_path, routes_yaml(sim.url), sim, env=env) as gw:
        for stream in (False, True):
            body = {"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]}
            response = chat(gw, {**body, "stream": stream})
            assert response.status_code == 200

        def both_logged() -> list[dict[str, Any]]:
            logged = gw.log_events("request.completed")
            return logged if len(logged) == 2 else []

        events = wait_for(both_logged, "two request.completed events")
        text = gw.log_path.read_text()
    if payloads:
        for event in events:
            assert event["messages"] == [{"role": "user", "content": TICKET}]
            assert event["completion"] == "billing"
    else:
        assert TICKET not in text
        assert all("messages" not in e and "completion" not in e for e in events)
