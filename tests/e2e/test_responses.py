"""``POST /v1/responses`` routed by route name, with the official openai SDK (sync, async,
streaming) against the gateway and the simulator, all in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.support import AUTH, TICKET, assert_error_envelope, metric_value, wait_for
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    start_in_process,
)
from tests.processes import CANDIDATE_MODEL, CLIENT_KEY, FALLBACK_MODEL, routes_yaml

ROUTE = "support-triage"
PRICES = {"finetuned": (0.30, 1.20), "prompted": (0.15, 0.60)}  # USD per million tokens


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    return in_sim


def serve(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, routes: str
) -> Iterator[InProcessGatewayUnderTest]:
    with start_in_process(loop_thread, tmp_path, routes, sim) as gw:
        yield gw


@pytest.fixture
def gw(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    """Half the subjects to the fine-tuned candidate; failover on every reason."""
    yield from serve(loop_thread, tmp_path, sim, routes_yaml(sim.url, weight=50_000))


@pytest.fixture
def candidate_only(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    yield from serve(loop_thread, tmp_path, sim, routes_yaml(sim.url, weight=100_000))


@pytest.fixture
def fallback_only(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    yield from serve(loop_thread, tmp_path, sim, routes_yaml(sim.url, weight=0))


def completed(gw: InProcessGatewayUnderTest, request_id: str) -> dict[str, Any]:
    """The one ``request.completed`` event of ``request_id``."""
    events = wait_for(
        lambda: [e for e in gw.log_events("request.completed") if e["request_id"] == request_id],
        f"request.completed of {request_id}",
    )
    assert len(events) == 1, events
    return events[0]


def expected_cost(variant: str, input_tokens: int, output_tokens: int) -> float:
    price_in, price_out = PRICES[variant]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


def assert_accounted(
    gw: InProcessGatewayUnderTest, request_id: str, variant: str, usage: Any, stream: bool
) -> None:
    """The log event says responses, the variant, the upstream's usage and its cost."""
    event = completed(gw, request_id)
    assert event["operation"] == "responses"
    assert event["route"] == ROUTE
    assert event["variant"] == variant
    assert event["stream"] is stream
    assert event["status"] == 200
    assert (event["input_tokens"], event["output_tokens"]) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    assert event["cost_usd"] == pytest.approx(
        expected_cost(variant, usage.input_tokens, usage.output_tokens)
    )
    assert "checks_failed" not in event  # "billing" is one of the contract's labels


def async_client(gw: InProcessGatewayUnderTest) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=gw.base_url,
        api_key=CLIENT_KEY,
        max_retries=0,
        http_client=httpx.AsyncClient(transport=gw.async_transport(), timeout=30),  # type: ignore[arg-type]
    )


# --- the SDK against the gateway ---------------------------------------------------------------


def test_sync_responses_create_is_routed_with_headers_usage_and_cost(
    gw: InProcessGatewayUnderTest,
) -> None:
    """A string ``input`` on a route: the flag picks the variant, the answer is the
    simulator's label, usage and cost are the variant's, metrics count the tokens."""
    client = gw.openai()
    raw = client.responses.with_raw_response.create(model=ROUTE, input=TICKET, user="alice")
    response = raw.parse()
    assert response.output_text == "billing"
    assert raw.headers["x-gateway-route"] == ROUTE
    variant = raw.headers["x-gateway-variant"]
    assert variant in PRICES
    assert raw.headers["x-gateway-decision"] == "rollout"
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    assert response.model == ROUTE  # response_model: route (the default)
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert_accounted(gw, raw.headers["x-request-id"], variant, response.usage, stream=False)
    metrics = gw.metrics()
    assert metric_value(
        metrics, "gateway_tokens_total", route=ROUTE, variant=variant, type="input"
    ) == (response.usage.input_tokens)


def test_the_variants_prompt_becomes_the_instructions_and_its_examples_go_first(
    gw: InProcessGatewayUnderTest,
) -> None:
    """The prompted fallback's long system prompt (instructions) and 20 few-shot messages cost
    far more input tokens than the fine-tuned candidate's short prompt, whatever the client
    sent as its own instructions."""
    client = gw.openai()
    by_variant: dict[str, int] = {}
    for i in range(40):
        raw = client.responses.with_raw_response.create(
            model=ROUTE,
            input=[{"role": "user", "content": TICKET}],
            instructions="Answer in French.",
            user=f"subject-{i}",
        )
        usage = raw.parse().usage
        assert usage is not None
        by_variant[raw.headers["x-gateway-variant"]] = usage.input_tokens
    assert set(by_variant) == {"finetuned", "prompted"}
    assert by_variant["prompted"] > 10 * by_variant["finetuned"]


def test_sync_stream_relays_the_events_and_accounts_the_completed_usage(
    gw: InProcessGatewayUnderTest,
) -> None:
    client = gw.openai()
    with client.responses.with_streaming_response.create(
        model=ROUTE, input="The app crashes with error 500 on start.", stream=True
    ) as raw:
        variant = raw.headers["x-gateway-variant"]
        request_id = raw.headers["x-request-id"]
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "technical"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "technical"
    assert final.usage is not None
    assert_accounted(gw, request_id, variant, final.usage, stream=True)
    assert completed(gw, request_id)["ttft_ms"] is not None


def test_async_sdk_plain_and_streamed(gw: InProcessGatewayUnderTest) -> None:
    async def run() -> tuple[str, str]:
        async with async_client(gw) as client:
            plain = await client.responses.create(model=ROUTE, input=TICKET)
            stream = await client.responses.create(
                model=ROUTE, input="I cannot log in to my account.", stream=True
            )
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            return plain.output_text, "".join(deltas)

    assert asyncio.run(run()) == ("billing", "account")


def test_the_sdk_against_the_simulator_itself(sim: InProcessSimulator) -> None:
    """The simulator serves the Responses API the SDK expects, plain and streamed."""
    client = sim.openai()
    response = client.responses.create(model=FALLBACK_MODEL, input=TICKET, instructions="x")
    assert response.output_text == "billing"
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.output_tokens == 2  # "billing": ceil(7 / 4)
    assert response.usage.total_tokens == response.usage.input_tokens + 2
    events = list(client.responses.create(model=FALLBACK_MODEL, input=TICKET, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_candidate_5xx_before_the_first_byte_fails_over(
    candidate_only: InProcessGatewayUnderTest, sim: InProcessSimulator, stream: bool
) -> None:
    sim.set_behaviour(CANDIDATE_MODEL, error_rate=1.0, error_status=503)
    response = candidate_only.http.post(
        "/v1/responses", json={"model": ROUTE, "input": TICKET, "stream": stream}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-decision"] == "failover"
    assert response.headers["x-gateway-variant"] == "prompted"
    if stream:
        assert "event: response.completed" in response.text
    else:
        assert response.json()["output"][0]["content"][0]["text"] == "billing"
    metrics = candidate_only.metrics()
    assert metric_value(metrics, "gateway_failovers_total", route=ROUTE, reason="5xx") == 1
    event = completed(candidate_only, response.headers["x-request-id"])
    assert (event["operation"], event["failover_reason"]) == ("responses", "5xx")


def test_garbage_instead_of_a_response_fails_over_as_invalid(
    candidate_only: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(CANDIDATE_MODEL, garbage_rate=1.0)
    raw = candidate_only.openai().responses.with_raw_response.create(model=ROUTE, input=TICKET)
    assert raw.parse().output_text == "billing"
    assert raw.headers["x-gateway-decision"] == "failover"
    metrics = candidate_only.metrics()
    assert (
        metric_value(metrics, "gateway_failovers_total", route=ROUTE, reason="invalid_response")
        == 1
    )


def test_a_stream_cut_midway_ends_in_an_error_the_sdk_raises(
    fallback_only: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    """The upstream drops the connection after one delta: the client has its 200 and the
    events so far, then an error event (the SDK raises APIError); logged as a 502."""
    sim.set_behaviour(FALLBACK_MODEL, cut_stream_after=1, stream_chunks=4)
    client = fallback_only.openai()
    seen: list[str] = []
    with client.responses.with_streaming_response.create(
        model=ROUTE, input=TICKET, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        events = raw.parse()
        with pytest.raises(openai.APIError) as info:
            seen.extend(event.type for event in events)
    assert "response.output_text.delta" in seen
    assert "response.completed" not in seen
    assert "before completion" in info.value.message
    event = completed(fallback_only, request_id)
    assert (event["status"], event["error_code"]) == (502, "stream_interrupted")


def test_garbage_in_the_middle_of_a_stream_ends_it_with_an_error(
    fallback_only: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, garbage_rate=1.0)
    response = fallback_only.http.post(
        "/v1/responses", json={"model": ROUTE, "input": TICKET, "stream": True}, headers=AUTH
    )
    assert response.status_code == 200
    assert "event: error" in response.text
    assert "upstream_invalid_response" in response.text
    event = completed(fallback_only, response.headers["x-request-id"])
    assert (event["status"], event["error_code"]) == (502, "upstream_invalid_response")


def test_a_route_whose_upstream_lacks_the_responses_api_says_so(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """``responses_api: false`` on the upstream: /v1/responses is a 400 that names the route,
    variant and upstream, nothing is sent upstream; chat completions still work."""
    routes = routes_yaml(sim.url, weight=0).replace(
        "    timeout_s: 5.0\n", "    timeout_s: 5.0\n    responses_api: false\n", 1
    )
    assert "responses_api: false" in routes
    with start_in_process(loop_thread, tmp_path, routes, sim) as gw:
        with pytest.raises(openai.BadRequestError) as info:
            gw.openai().responses.create(model=ROUTE, input=TICKET)
        assert info.value.code == "responses_api_unsupported"
        assert "upstream 'simulator'" in info.value.message
        assert "does not offer it" in info.value.message
        response = gw.http.post(
            "/v1/responses", json={"model": ROUTE, "input": TICKET}, headers=AUTH
        )
        assert_error_envelope(response, 400, code="responses_api_unsupported", param="model")
        assert response.headers["x-gateway-route"] == ROUTE
        assert sim.http.get("/_simulator/stats").json()["totals"]["requests"] == 0
        chat = gw.openai().chat.completions.create(
            model=ROUTE, messages=[{"role": "user", "content": TICKET}]
        )
        assert chat.choices[0].message.content == "billing"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": ROUTE, "input": 42}, "input"),
        ({"model": ROUTE, "input": ""}, "input"),
        ({"model": ROUTE, "input": []}, "input"),
        ({"input": TICKET}, "model"),
        ({"model": ROUTE, "input": TICKET, "instructions": 7}, "instructions"),
        ({"model": ROUTE, "input": TICKET, "stream": "yes"}, "stream"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(
    gw: InProcessGatewayUnderTest, body: dict[str, Any], param: str
) -> None:
    response = gw.http.post("/v1/responses", json=body, headers=AUTH)
    assert_error_envelope(response, 400, error_type="invalid_request_error", param=param)
    event = completed(gw, response.headers["x-request-id"])
    assert (event["operation"], event["status"]) == ("responses", 400)


def test_not_json_unknown_route_and_no_key(gw: InProcessGatewayUnderTest) -> None:
    not_json = gw.http.post(
        "/v1/responses",
        content=b"{nope",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert_error_envelope(not_json, 400)
    unknown = gw.http.post("/v1/responses", json={"model": "nope", "input": "x"}, headers=AUTH)
    assert_error_envelope(unknown, 404, code="model_not_found", param="model")
    no_key = gw.http.post("/v1/responses", json={"model": ROUTE, "input": "x"})
    assert_error_envelope(no_key, 401)
    assert gw.http.get("/v1/responses", headers=AUTH).status_code == 405


# --- the contract ------------------------------------------------------------------------------


def test_the_contract_judges_the_output_text_plain_and_streamed(
    candidate_only: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    """The candidate answers labels outside the contract: a unary answer and a stream (judged
    on its assembled text at the end, sent untouched) are both logged ``checks_failed``."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
    client = candidate_only.openai()
    raw = client.responses.with_raw_response.create(model=ROUTE, input=TICKET)
    assert raw.parse().output_text not in ("billing", "technical", "account")
    assert completed(candidate_only, raw.headers["x-request-id"])["checks_failed"] == ["labels"]
    with client.responses.with_streaming_response.create(
        model=ROUTE, input=TICKET, stream=True
    ) as streamed:
        request_id = streamed.headers["x-request-id"]
        assert list(streamed.parse())[-1].type == "response.completed"
    assert completed(candidate_only, request_id)["checks_failed"] == ["labels"]
    metrics = candidate_only.metrics()
    assert (
        metric_value(
            metrics, "gateway_quality_checks_total", route=ROUTE, check="labels", result="fail"
        )
        == 2
    )


def test_on_violation_fallback_answers_from_the_fallback(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    routes = routes_yaml(sim.url, weight=100_000, route_extra="on_violation: fallback")
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
    with start_in_process(loop_thread, tmp_path, routes, sim) as gw:
        raw = gw.openai().responses.with_raw_response.create(model=ROUTE, input=TICKET)
        assert raw.parse().output_text == "billing"
        assert raw.headers["x-gateway-decision"] == "violation"
        assert raw.headers["x-gateway-variant"] == "prompted"
