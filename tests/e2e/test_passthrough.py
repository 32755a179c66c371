"""Pass-through ``/v1/embeddings`` and ``/v1/completions``, chat completions on a pass-through
model, and ``GET /v1/models/{id}``, end to end in-process: the official ``openai`` SDK (sync,
async, streaming) against the gateway and the simulator; headers, the log event, tokens, cost
and metrics; every failure path."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.support import (
    AUTH,
    assert_error_envelope,
    metric_value,
    wait_for,
)
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import CLIENT_KEY, routes_yaml

EMBED = "text-embedding-3-small"
INSTRUCT = "gpt-3.5-turbo-instruct"
ODD_ID = "acme/embedder:v2"
"""A pass-through model id with a slash and a colon (as fine-tuned and hub names have)."""
UNPRICED = "unpriced-embedder"
PRICES = {EMBED: (0.02, 0.0), INSTRUCT: (1.50, 2.00)}  # USD per million tokens
REFUND = "I was charged twice, please refund me."


def passthrough_routes(simulator_url: str) -> str:
    """routes_yaml's support-triage route plus pass-through models (priced, one not)."""
    return (
        routes_yaml(simulator_url)
        + "".join(f'  "{m}": {{input: {i}, output: {o}}}\n' for m, (i, o) in PRICES.items())
        + f'passthrough:\n  simulator: [{EMBED}, {INSTRUCT}, "{ODD_ID}", {UNPRICED}]\n'
    )


@pytest.fixture(scope="module")
def simulator(loop_thread: LoopThread) -> Iterator[InProcessSimulator]:
    with in_process_simulator(loop_thread) as simulator:
        yield simulator


@pytest.fixture
def sim(simulator: InProcessSimulator) -> Iterator[InProcessSimulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(scope="module")
def gateway(
    simulator: InProcessSimulator,
    loop_thread: LoopThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InProcessGatewayUnderTest]:
    tmp = tmp_path_factory.mktemp("passthrough")
    routes = passthrough_routes(simulator.url)
    with start_in_process(
        loop_thread, tmp, routes, simulator, env={"GATEWAY_MAX_BODY_BYTES": "4096"}
    ) as gw:
        yield gw


@pytest.fixture
def client(gateway: InProcessGatewayUnderTest, sim: InProcessSimulator) -> openai.OpenAI:
    return gateway.openai()


def event_of(gateway: InProcessGatewayUnderTest, request_id: str) -> dict[str, Any]:
    """The request's ``request.completed`` event (waiting for a stream's to be written)."""

    def find() -> dict[str, Any] | None:
        for event in gateway.log_events("request.completed"):
            if event["request_id"] == request_id:
                return event
        return None

    found: dict[str, Any] | None = wait_for(find, f"the log event of {request_id}")
    assert found is not None
    return found


def usd(model: str, input_tokens: int, output_tokens: int) -> float:
    price_in, price_out = PRICES[model]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


# --- embeddings -------------------------------------------------------------------------------


def test_sync_embeddings_are_relayed_with_headers_usage_log_and_metrics(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI, sim: InProcessSimulator
) -> None:
    before = gateway.metrics()
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=[REFUND, "hello"])
    result = raw.parse()
    direct = sim.openai().embeddings.create(model=EMBED, input=[REFUND, "hello"])
    assert [d.embedding for d in result.data] == [d.embedding for d in direct.data]
    assert raw.headers["x-gateway-route"] == EMBED
    assert raw.headers["x-gateway-variant"] == "passthrough"
    assert raw.headers["x-gateway-decision"] == "passthrough"
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    tokens = math.ceil(len(REFUND) / 4) + math.ceil(len("hello") / 4)
    assert result.usage.prompt_tokens == tokens
    event = event_of(gateway, raw.headers["x-request-id"])
    assert event["operation"] == "embeddings"
    assert (event["route"], event["variant"], event["decision"]) == (
        EMBED,
        "passthrough",
        "passthrough",
    )
    assert (event["upstream"], event["upstream_model"], event["status"]) == (
        "simulator",
        EMBED,
        200,
    )
    assert (event["input_tokens"], event["output_tokens"]) == (tokens, 0)
    assert event["cost_usd"] == pytest.approx(usd(EMBED, tokens, 0))
    assert event["client_key"] == "test-app"
    after = gateway.metrics()

    def grew(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    labels = {"route": EMBED, "variant": "passthrough"}
    assert grew("gateway_tokens_total", type="input", **labels) == tokens
    assert grew("gateway_cost_usd_total", **labels) == pytest.approx(usd(EMBED, tokens, 0))
    assert grew("gateway_requests_total", decision="passthrough", status="200", **labels) == 1


def test_async_embeddings_and_an_unpriced_model(
    gateway: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    async def embed() -> list[Any]:
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url,
            api_key=CLIENT_KEY,
            max_retries=0,
            http_client=httpx.AsyncClient(transport=gateway.async_transport()),  # type: ignore[arg-type]
        ) as aclient:
            return list(
                await asyncio.gather(
                    aclient.embeddings.with_raw_response.create(model=EMBED, input="a b c d"),
                    aclient.embeddings.with_raw_response.create(model=UNPRICED, input="x"),
                )
            )

    priced, unpriced = asyncio.run(embed())
    assert len(priced.parse().data[0].embedding) > 0
    assert unpriced.parse().usage.prompt_tokens == 1
    assert event_of(gateway, priced.headers["x-request-id"])["cost_usd"] == pytest.approx(
        usd(EMBED, 2, 0)
    )
    assert event_of(gateway, unpriced.headers["x-request-id"])["cost_usd"] is None


# --- completions ------------------------------------------------------------------------------


def test_sync_completion_with_usage_and_cost(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI
) -> None:
    raw = client.completions.with_raw_response.create(model=INSTRUCT, prompt=REFUND)
    completion = raw.parse()
    assert completion.choices[0].text == "billing"
    assert raw.headers["x-gateway-variant"] == "passthrough"
    usage = completion.usage
    assert usage is not None
    event = event_of(gateway, raw.headers["x-request-id"])
    assert event["operation"] == "completions"
    assert event["stream"] is False
    assert (event["input_tokens"], event["output_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert event["cost_usd"] == pytest.approx(
        usd(INSTRUCT, usage.prompt_tokens, usage.completion_tokens)
    )


def test_streamed_completion_counts_tokens_and_hides_usage_not_asked_for(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(INSTRUCT, mode="echo", stream_chunks=3)
    with client.completions.with_streaming_response.create(
        model=INSTRUCT, prompt="please echo this", stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-gateway-decision"] == "passthrough"
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].text for c in chunks) == "please echo this"
    assert all(c.usage is None and c.choices for c in chunks)
    event = event_of(gateway, request_id)
    assert event["stream"] is True
    assert event["status"] == 200
    assert event["ttft_ms"] is not None
    assert event["input_tokens"] == math.ceil(len("please echo this") / 4)
    assert event["output_tokens"] == math.ceil(len("please echo this") / 4)
    assert event["cost_usd"] == pytest.approx(
        usd(INSTRUCT, event["input_tokens"], event["output_tokens"])
    )


def test_streamed_completion_keeps_the_usage_chunk_asked_for(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model=INSTRUCT, prompt=REFUND, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == math.ceil(len(REFUND) / 4)


def test_async_streamed_completion(gateway: InProcessGatewayUnderTest) -> None:
    async def stream() -> str:
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url,
            api_key=CLIENT_KEY,
            max_retries=0,
            http_client=httpx.AsyncClient(transport=gateway.async_transport()),  # type: ignore[arg-type]
        ) as aclient:
            events = await aclient.completions.create(model=INSTRUCT, prompt=REFUND, stream=True)
            return "".join([c.choices[0].text async for c in events if c.choices])

    assert asyncio.run(stream()) == "billing"


def test_a_stream_cut_by_the_upstream_ends_in_an_error_event(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(INSTRUCT, cut_stream_after=1, stream_chunks=3)
    with client.completions.with_streaming_response.create(
        model=INSTRUCT, prompt=REFUND, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        with pytest.raises(openai.APIError, match="broke the stream off"):
            list(response.parse())
    event = event_of(gateway, request_id)
    assert (event["status"], event["error_code"]) == (502, "stream_interrupted")


def test_a_garbage_first_event_is_an_error_before_any_byte(
    gateway: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(INSTRUCT, garbage_rate=1)
    response = gateway.http.post(
        "/v1/completions",
        json={"model": INSTRUCT, "prompt": REFUND, "stream": True},
        headers=AUTH,
    )
    assert_error_envelope(response, 502, code="upstream_invalid_response")
    assert response.headers["x-gateway-route"] == INSTRUCT


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "owned_by"),
    [
        ("support-triage", "gateway"),
        (EMBED, "gateway-passthrough"),
        (ODD_ID, "gateway-passthrough"),
    ],
)
def test_models_retrieve_finds_routes_and_passthrough_models(
    client: openai.OpenAI, model: str, owned_by: str
) -> None:
    found = client.models.retrieve(model)
    assert (found.id, found.object, found.owned_by) == (model, "model", owned_by)
    listed = {m.id: m for m in client.models.list()}
    assert found == listed[model]


def test_models_retrieve_accepts_a_percent_encoded_id(
    gateway: InProcessGatewayUnderTest,
) -> None:
    response = gateway.http.get("/v1/models/acme%2Fembedder%3Av2", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == ODD_ID


def test_models_retrieve_unknown_is_model_not_found(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("ft:gpt-4o-mini:org::abc")
    assert caught.value.code == "model_not_found"
    response = gateway.http.get("/v1/models/nope", headers=AUTH)
    assert_error_envelope(response, 404, code="model_not_found", param="model")
    no_key = gateway.http.get(f"/v1/models/{EMBED}")
    assert_error_envelope(no_key, 401, code="invalid_api_key")


# --- refusals ---------------------------------------------------------------------------------


def test_a_route_name_is_refused_with_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as embedding:
        client.embeddings.create(model="support-triage", input=REFUND)
    assert embedding.value.code == "model_not_supported"
    assert "routes serve /v1/chat/completions" in embedding.value.message
    with pytest.raises(openai.BadRequestError) as completion:
        client.completions.create(model="support-triage", prompt=REFUND)
    assert "/v1/completions serves only" in completion.value.message


def test_an_unknown_model_is_model_not_found(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.with_raw_response.create(model="nope", input=REFUND)
    assert caught.value.code == "model_not_found"
    event = event_of(gateway, caught.value.response.headers["x-request-id"])
    assert (event["operation"], event["status"], event["route"]) == ("embeddings", 404, None)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/completions"])
def test_keys_bodies_and_json_are_checked(gateway: InProcessGatewayUnderTest, path: str) -> None:
    body = {"model": EMBED, "input": "x"}
    assert_error_envelope(gateway.http.post(path, json=body), 401, code="invalid_api_key")
    wrong = {"authorization": "Bearer sk-wrong"}
    assert_error_envelope(gateway.http.post(path, json=body, headers=wrong), 401)
    big = {"model": EMBED, "input": "x" * 5000}
    assert_error_envelope(
        gateway.http.post(path, json=big, headers=AUTH), 413, code="payload_too_large"
    )
    garbage = gateway.http.post(
        path, content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert_error_envelope(garbage, 400, error_type="invalid_request_error")
    no_model = gateway.http.post(path, json={"input": "x"}, headers=AUTH)
    assert_error_envelope(no_model, 400, param="model")
    wrong_type = gateway.http.post(path, json={"model": 7}, headers=AUTH)
    assert_error_envelope(wrong_type, 400, param="model")


def test_upstream_errors_are_relayed_or_mapped(
    gateway: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    body = {"model": EMBED, "input": REFUND}
    sim.set_behaviour(EMBED, error_rate=1, error_status=429)
    limited = gateway.http.post("/v1/embeddings", json=body, headers=AUTH)
    assert_error_envelope(limited, 429, code="rate_limit_exceeded")
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-gateway-route"] == EMBED
    sim.set_behaviour(EMBED, error_status=500)
    failed = gateway.http.post("/v1/embeddings", json=body, headers=AUTH)
    assert_error_envelope(failed, 502, code="upstream_status_500")
    sim.set_behaviour(EMBED, error_rate=0, garbage_rate=1)
    garbage = gateway.http.post("/v1/embeddings", json=body, headers=AUTH)
    assert_error_envelope(garbage, 502, code="upstream_invalid_response")
    invalid = gateway.http.post("/v1/embeddings", json={"model": EMBED, "input": ""}, headers=AUTH)
    assert_error_envelope(invalid, 400, param="input")  # the upstream's own answer, relayed
    event = event_of(gateway, failed.headers["x-request-id"])
    assert (event["status"], event["error_code"]) == (502, "upstream_status_500")


def test_payloads_are_logged_only_when_payload_logging_is_on(
    gateway: InProcessGatewayUnderTest,
    simulator: InProcessSimulator,
    loop_thread: LoopThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    quiet = gateway.openai().embeddings.with_raw_response.create(model=EMBED, input=REFUND)
    assert "messages" not in event_of(gateway, quiet.headers["x-request-id"])
    routes = passthrough_routes(simulator.url)
    tmp = tmp_path_factory.mktemp("payloads")
    env = {"GATEWAY_LOG_PAYLOADS": "true"}
    with start_in_process(loop_thread, tmp, routes, simulator, env=env) as loud:
        client = loud.openai()
        embedded = client.embeddings.with_raw_response.create(model=EMBED, input=[REFUND])
        completed = client.completions.with_raw_response.create(model=INSTRUCT, prompt=REFUND)
        with client.completions.with_streaming_response.create(
            model=INSTRUCT, prompt=REFUND, stream=True
        ) as streamed:
            list(streamed.parse())
        messages: Any = [{"role": "user", "content": REFUND}]
        chatted = client.chat.completions.with_raw_response.create(
            model=INSTRUCT, messages=messages
        )
        events = [
            event_of(loud, r.headers["x-request-id"])
            for r in (embedded, completed, streamed, chatted)
        ]
    assert [(e["messages"], e["completion"]) for e in events] == [
        ([REFUND], None),
        (REFUND, "billing"),
        (REFUND, "billing"),
        (messages, chatted.parse().choices[0].message.content),
    ]


# --- chat completions on a pass-through model --------------------------------------------------


def test_chat_on_a_passthrough_model_is_relayed_accounted_and_can_get_feedback(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI, sim: InProcessSimulator
) -> None:
    """A unary chat request for a pass-through model: the upstream's answer (its own
    ``model``), the routing headers, tokens and cost in the log line, feedback accepted."""
    messages: Any = [{"role": "user", "content": REFUND}]
    raw = client.chat.completions.with_raw_response.create(
        model=INSTRUCT, messages=messages, temperature=0.25, user="u-7"
    )
    completion = raw.parse()
    assert completion.model == INSTRUCT
    assert completion.choices[0].message.content
    assert [raw.headers[f"x-gateway-{h}"] for h in ("route", "variant", "decision")] == [
        INSTRUCT,
        "passthrough",
        "passthrough",
    ]
    assert "x-gateway-overridden" not in raw.headers
    request_id = raw.headers["x-request-id"]
    usage = completion.usage
    assert usage is not None
    event = event_of(gateway, request_id)
    assert (event["operation"], event["stream"], event["status"]) == ("chat", False, 200)
    assert (event["route"], event["variant"], event["decision"]) == (
        INSTRUCT,
        "passthrough",
        "passthrough",
    )
    assert (event["input_tokens"], event["output_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert event["cost_usd"] == pytest.approx(
        usd(INSTRUCT, usage.prompt_tokens, usage.completion_tokens)
    )
    feedback = gateway.http.post(
        "/v1/feedback", json={"request_id": request_id, "correct": False}, headers=AUTH
    )
    assert feedback.status_code == 200, feedback.text
    again = gateway.http.post(
        "/v1/feedback", json={"request_id": request_id, "correct": True}, headers=AUTH
    )
    assert again.status_code == 409, again.text  # one verdict per answer


def test_chat_on_a_passthrough_model_streams_with_usage_only_when_asked(
    gateway: InProcessGatewayUnderTest, client: openai.OpenAI
) -> None:
    messages: Any = [{"role": "user", "content": REFUND}]
    with client.chat.completions.with_streaming_response.create(
        model=INSTRUCT, messages=messages, stream=True
    ) as response:
        assert response.headers["x-gateway-decision"] == "passthrough"
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert all(c.usage is None for c in chunks)
    event = event_of(gateway, request_id)
    assert (event["operation"], event["stream"], event["status"]) == ("chat", True, 200)
    assert event["input_tokens"] > 0
    assert event["cost_usd"] == pytest.approx(
        usd(INSTRUCT, event["input_tokens"], event["output_tokens"])
    )
    asked = list(
        client.chat.completions.create(
            model=INSTRUCT, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == []
    assert asked[-1].usage is not None
    assert asked[-1].usage.prompt_tokens == event["input_tokens"]


def test_chat_on_a_passthrough_model_errors_as_for_any_chat_model(
    gateway: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    """The relay's checks and error mapping hold for a pass-through model: a bad body, a
    forced variant from a key not allowed to, an upstream's status, garbage from it, and a
    body nested too deeply."""
    path = "/v1/chat/completions"
    empty = gateway.http.post(path, json={"model": INSTRUCT, "messages": []}, headers=AUTH)
    assert_error_envelope(empty, 400, param="messages")
    untyped = gateway.http.post(path, json={"model": INSTRUCT, "messages": [{}]}, headers=AUTH)
    assert_error_envelope(untyped, 400, param="messages")
    deep: Any = "x"
    for _ in range(101):
        deep = [deep]
    too_deep = gateway.http.post(
        path,
        json={"model": INSTRUCT, "messages": [{"role": "user", "content": "x"}], "meta": deep},
        headers=AUTH,
    )
    assert_error_envelope(too_deep, 400, error_type="invalid_request_error")
    assert "nested too deeply" in too_deep.json()["error"]["message"]
    body = {"model": INSTRUCT, "messages": [{"role": "user", "content": REFUND}]}
    forced = gateway.http.post(
        path, json=body, headers={**AUTH, "x-gateway-variant": "passthrough"}
    )
    assert_error_envelope(forced, 403)
    sim.set_behaviour(INSTRUCT, error_rate=1, error_status=429)
    limited = gateway.http.post(path, json=body, headers=AUTH)
    assert_error_envelope(limited, 429, code="rate_limit_exceeded")
    assert limited.headers["retry-after"] == "1"
    assert [limited.headers[f"x-gateway-{h}"] for h in ("route", "variant", "decision")] == [
        INSTRUCT,
        "passthrough",
        "passthrough",
    ]
    sim.set_behaviour(INSTRUCT, error_rate=0, garbage_rate=1)
    garbage = gateway.http.post(path, json=body, headers=AUTH)
    assert_error_envelope(garbage, 502, code="upstream_invalid_response")
    event = event_of(gateway, garbage.headers["x-request-id"])
    assert (event["status"], event["error_code"], event["decision"]) == (
        502,
        "upstream_invalid_response",
        "passthrough",
    )
