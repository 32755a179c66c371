"""The simulator's ``POST /v1/responses``: the Responses API's shapes, the same behaviours
(labels, faults, stream pacing) and counters as chat completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.tools.simulator import ModelBehaviour, SimulatorConfig, create_simulator_app
from gateway.tools.simulator.responses_api import ResponsesRequest, as_messages

Client = AsyncTestClient[Any]
MODEL = "ft:support-classifier"
REFUND = "I was charged twice, please refund me."


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    config = SimulatorConfig(seed=1, models={MODEL: ModelBehaviour()})
    async with AsyncTestClient(app=create_simulator_app(config)) as made:
        yield made


def events(text: str) -> list[tuple[str, Any]]:
    """(event name, decoded data) of each SSE event (raw data when it is not JSON)."""
    out: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name, data = "", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        try:
            out.append((name, msgspec.json.decode(data)))
        except msgspec.DecodeError:
            out.append((name, data))
    return out


def test_instructions_and_input_items_are_read_as_chat_messages() -> None:
    request = ResponsesRequest(
        model="m",
        instructions="Classify.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call_output", "call_id": "c", "output": "{}"},
            {"role": "assistant", "content": "billing"},
        ],
    )
    assert as_messages(request) == [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "assistant", "content": "billing"},
    ]


async def test_a_plain_response_has_one_message_with_the_label_and_usage(client: Client) -> None:
    response = await client.post("/v1/responses", json={"model": MODEL, "input": REFUND})
    assert response.status_code == 200
    body = response.json()
    assert (body["object"], body["status"], body["model"]) == ("response", "completed", MODEL)
    assert body["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "billing",
        "annotations": [],
        "logprobs": [],
    }
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] == 2


async def test_a_stream_sends_the_event_sequence_and_completes_with_usage(client: Client) -> None:
    await client.put(f"/_simulator/models/{MODEL}", json={"stream_chunks": 3})
    response = await client.post(
        "/v1/responses", json={"model": MODEL, "input": REFUND, "stream": True}
    )
    got = events(response.text)
    names = [name for name, _ in got]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in got)
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    assert "".join(d["delta"] for n, d in got if n == "response.output_text.delta") == "billing"
    assert got[-1][1]["response"]["usage"]["output_tokens"] == 2
    stats = (await client.get("/_simulator/stats")).json()["models"][MODEL]
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 1)


async def test_faults_apply_as_for_chat(client: Client) -> None:
    await client.put(f"/_simulator/models/{MODEL}", json={"error_rate": 1, "error_status": 503})
    failed = await client.post("/v1/responses", json={"model": MODEL, "input": REFUND})
    assert failed.status_code == 503
    assert "error" in failed.json()
    await client.put(f"/_simulator/models/{MODEL}", json={"error_rate": 0, "garbage_rate": 1})
    garbage = await client.post("/v1/responses", json={"model": MODEL, "input": REFUND})
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(garbage.content)
    streamed = await client.post(
        "/v1/responses", json={"model": MODEL, "input": REFUND, "stream": True}
    )
    assert events(streamed.text)[-1] == ("", "{garbage")


@pytest.mark.parametrize(
    "body",
    [
        {"input": REFUND},
        {"model": MODEL},
        {"model": MODEL, "input": 3},
        {"model": "", "input": "x"},
    ],
)
async def test_a_bad_body_is_a_400_envelope(client: Client, body: dict[str, Any]) -> None:
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
