"""The simulator's HTTP surface, in-process: OpenAI shapes, injected faults, control endpoints."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.tools.simulator import (
    INVALID_LABELS,
    LABELS,
    ModelBehaviour,
    SimulatorConfig,
    create_simulator_app,
)

Client = AsyncTestClient[Any]
MODEL = "ft:support-classifier"
REFUND = [
    {"role": "system", "content": "Classify the ticket."},
    {"role": "user", "content": "I was charged twice, please refund me."},
]


def chat_body(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": REFUND, **extra}


def sse_payloads(text: str) -> list[Any]:
    """Split an SSE body into its data payloads (decoded JSON, or the raw string if not JSON)."""
    payloads: list[Any] = []
    for event in text.split("\n\n"):
        if not event:
            continue
        assert event.startswith("data: "), event
        data = event.removeprefix("data: ")
        try:
            payloads.append(msgspec.json.decode(data))
        except msgspec.DecodeError:
            payloads.append(data)
    return payloads


async def stream_events(client: Client, **extra: Any) -> list[Any]:
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True, **extra))
    assert response.status_code == 200
    return sse_payloads(response.text)


async def make_client(config: SimulatorConfig) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_simulator_app(config)) as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    config = SimulatorConfig(seed=1, models={MODEL: ModelBehaviour(), "base": ModelBehaviour()})
    async for made in make_client(config):
        yield made


async def set_behaviour(client: Client, model: str, **fields: Any) -> None:
    response = await client.put(f"/_simulator/models/{model}", json=fields)
    assert response.status_code == 200, response.text


async def test_non_streamed_completion_has_openais_shape_and_usage(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["model"]) == ("chat.completion", MODEL)
    assert isinstance(body["created"], int)
    assert body["system_fingerprint"]
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "billing", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # prompt: (ceil(20/4)+4) + (ceil(38/4)+4) + 3 = 9 + 14 + 3; completion: ceil(7/4)
    assert body["usage"] == {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}


async def test_stream_without_include_usage_has_no_usage_chunk(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(content) == 4  # the default stream_chunks
    assert "".join(content) == "billing"


async def test_stream_with_include_usage_ends_with_a_usage_chunk(client: Client) -> None:
    events = await stream_events(client, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    *chunks, usage_chunk = events[:-1]
    assert all(c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}


async def test_stream_chunks_setting_controls_the_content_chunk_count(client: Client) -> None:
    await set_behaviour(client, MODEL, stream_chunks=20)
    events = await stream_events(client)
    assert len(events) == 1 + 20 + 1 + 1  # role, content, finish, [DONE]


async def answer(client: Client, model: str = MODEL) -> str:
    response = await client.post("/v1/chat/completions", json=chat_body(model))
    assert response.status_code == 200
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


async def test_zero_accuracy_gives_a_valid_but_wrong_label(client: Client) -> None:
    await set_behaviour(client, MODEL, accuracy=0)
    for _ in range(10):
        label = await answer(client)
        assert label in LABELS
        assert label != "billing"


async def test_invalid_label_rate_one_gives_a_label_outside_the_set(client: Client) -> None:
    await set_behaviour(client, MODEL, invalid_label_rate=1)
    label = await answer(client)
    assert label not in LABELS
    assert label in INVALID_LABELS


async def test_echo_mode_returns_the_last_user_message(client: Client) -> None:
    await set_behaviour(client, MODEL, mode="echo")
    assert await answer(client) == REFUND[-1]["content"]


@pytest.mark.parametrize(("status", "err_type"), [(500, "server_error"), (429, "requests")])
async def test_error_rate_one_gives_the_status_and_an_error_envelope(
    client: Client, status: int, err_type: str
) -> None:
    await set_behaviour(client, MODEL, error_rate=1, error_status=status)
    for stream in (False, True):
        response = await client.post("/v1/chat/completions", json=chat_body(stream=stream))
        assert response.status_code == status
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == err_type
        assert response.headers.get("retry-after") == ("1" if status == 429 else None)


async def test_garbage_rate_one_gives_an_unparsable_body(client: Client) -> None:
    await set_behaviour(client, MODEL, garbage_rate=1)
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(response.content)


async def test_garbage_rate_one_in_a_stream_sends_a_broken_event(client: Client) -> None:
    await set_behaviour(client, MODEL, garbage_rate=1)
    events = await stream_events(client)
    assert "{garbage" in events


async def test_latency_delays_the_answer(client: Client) -> None:
    await set_behaviour(client, MODEL, latency_ms=150)
    started = time.perf_counter()
    await answer(client)
    assert time.perf_counter() - started >= 0.12  # lower bound only: CI machines can be slow


async def test_put_merges_and_delete_restores_the_configured_behaviour(client: Client) -> None:
    first = await client.put(f"/_simulator/models/{MODEL}", json={"latency_ms": 5})
    assert first.json()["latency_ms"] == 5
    second = await client.put(f"/_simulator/models/{MODEL}", json={"accuracy": 0.5})
    assert (second.json()["latency_ms"], second.json()["accuracy"]) == (5, 0.5)
    listed = (await client.get("/_simulator/models")).json()
    assert listed["models"][MODEL]["accuracy"] == 0.5
    assert listed["default"] == msgspec.to_builtins(ModelBehaviour())
    reset = await client.delete(f"/_simulator/models/{MODEL}")
    assert reset.status_code == 200
    assert reset.json() == msgspec.to_builtins(ModelBehaviour())


async def test_put_accepts_model_names_with_slashes(client: Client) -> None:
    await set_behaviour(client, "org/model-7b", mode="echo")
    assert (await client.get("/_simulator/models")).json()["models"]["org/model-7b"][
        "mode"
    ] == "echo"
    assert await answer(client, "org/model-7b") == REFUND[-1]["content"]


async def test_put_with_an_invalid_behaviour_gives_a_400_envelope(client: Client) -> None:
    response = await client.put(f"/_simulator/models/{MODEL}", json={"accuracy": 3})
    assert response.status_code == 400
    assert "accuracy" in response.json()["error"]["message"]


async def test_stats_count_requests_tokens_streams_and_errors(client: Client) -> None:
    await client.post("/v1/chat/completions", json=chat_body())
    await client.post("/v1/chat/completions", json=chat_body(stream=True))
    usage_stream = chat_body(stream=True, stream_options={"include_usage": True})
    await client.post("/v1/chat/completions", json=usage_stream)
    await set_behaviour(client, "base", error_rate=1)
    await client.post("/v1/chat/completions", json=chat_body("base"))
    stats = (await client.get("/_simulator/stats")).json()
    ft = stats["models"][MODEL]
    assert ft["requests"] == 3
    # only what was reported: the plain answer and the stream that asked for usage
    assert (ft["prompt_tokens"], ft["completion_tokens"]) == (52, 4)
    assert (ft["streams_started"], ft["streams_completed"], ft["streams_disconnected"]) == (2, 2, 0)
    assert stats["models"]["base"]["errors_injected"] == 1
    assert stats["totals"]["requests"] == 4
    assert stats["totals"]["errors_injected"] == 1
    reset = await client.post("/_simulator/stats/reset")
    assert reset.status_code == 200
    assert reset.json()["models"] == {}
    assert reset.json()["totals"]["requests"] == 0


async def test_models_lists_the_configured_models_in_openais_format(client: Client) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL, "base"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_healthz_is_ok(client: Client) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_api_key_is_required_when_configured() -> None:
    async for client in make_client(SimulatorConfig(api_key="sk-sim")):
        missing = await client.post("/v1/chat/completions", json=chat_body())
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        wrong = {"authorization": "Bearer nope"}
        assert (await client.get("/v1/models", headers=wrong)).status_code == 401
        good = {"authorization": "Bearer sk-sim"}
        ok = await client.post("/v1/chat/completions", json=chat_body(), headers=good)
        assert ok.status_code == 200
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": 3, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"model": "m", "messages": "hi"}',
        b'{"model": "m", "messages": []}',
    ],
)
async def test_bad_request_body_gives_a_400_envelope(client: Client, body: bytes) -> None:
    response = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


async def test_unknown_path_gives_an_error_envelope(client: Client) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_same_seed_gives_the_same_answers() -> None:
    config = SimulatorConfig(seed=9, default=ModelBehaviour(accuracy=0.5))
    runs = []
    for _ in range(2):
        async for client in make_client(config):
            runs.append([await answer(client, "any") for _ in range(12)])
    assert runs[0] == runs[1]
