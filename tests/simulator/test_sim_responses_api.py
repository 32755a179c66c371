"""The simulator's ``POST /v1/responses``: the Responses API's shapes, the same behaviours
(labels, faults, stream pacing) and counters as chat completions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.exceptions import LitestarException
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


ROUTE_TICKET = {
    "type": "function",
    "name": "route_ticket",
    "parameters": {
        "type": "object",
        "properties": {"queue": {"type": "string", "enum": ["billing", "technical"]}},
        "required": ["queue"],
    },
}


async def test_a_tool_call_answer_is_one_function_call_item(client: Client) -> None:
    await client.put(f"/_simulator/models/{MODEL}", json={"tool_call_rate": 1})
    body = {"model": MODEL, "input": REFUND, "tools": [ROUTE_TICKET]}
    output = (await client.post("/v1/responses", json=body)).json()["output"]
    assert len(output) == 1
    item = output[0]
    assert (item["type"], item["name"], item["status"]) == (
        "function_call",
        "route_ticket",
        "completed",
    )
    assert msgspec.json.decode(item["arguments"]) == {"queue": "billing"}
    assert item["call_id"].startswith("call_")
    none = {**body, "tool_choice": "none"}
    text = (await client.post("/v1/responses", json=none)).json()["output"][0]
    assert text["type"] == "message"


async def test_a_named_tool_choice_and_the_faults_follow_the_behaviour(client: Client) -> None:
    escalate = {"type": "function", "name": "escalate", "parameters": {"type": "object"}}
    body = {
        "model": MODEL,
        "input": REFUND,
        "tools": [ROUTE_TICKET, escalate],
        "tool_choice": {"type": "function", "name": "escalate"},
    }
    item = (await client.post("/v1/responses", json=body)).json()["output"][0]
    assert (item["name"], item["arguments"]) == ("escalate", "{}")  # rate 0: named is forced
    await client.put(
        f"/_simulator/models/{MODEL}",
        json={"tool_call_rate": 1, "wrong_tool_rate": 1, "bad_arguments_rate": 1},
    )
    plain = {"model": MODEL, "input": REFUND, "tools": [ROUTE_TICKET]}
    item = (await client.post("/v1/responses", json=plain)).json()["output"][0]
    assert item["name"] == "unknown_function"
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(item["arguments"])


async def test_a_streamed_tool_call_sends_the_function_call_events(client: Client) -> None:
    await client.put(f"/_simulator/models/{MODEL}", json={"tool_call_rate": 1, "stream_chunks": 3})
    body = {"model": MODEL, "input": REFUND, "tools": [ROUTE_TICKET], "stream": True}
    got = events((await client.post("/v1/responses", json=body)).text)
    assert [name for name, _ in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * 3,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    added, done = got[2][1]["item"], got[-2][1]["item"]
    assert (added["type"], added["arguments"], added["call_id"]) == (
        "function_call",
        "",
        done["call_id"],
    )
    pieces = "".join(d["delta"] for n, d in got if n == "response.function_call_arguments.delta")
    assert msgspec.json.decode(pieces) == {"queue": "billing"}
    assert got[-3][1]["arguments"] == pieces == done["arguments"]
    assert got[-1][1]["response"]["output"] == [done]
    stats = (await client.get("/_simulator/stats")).json()["models"][MODEL]
    assert (stats["streams_started"], stats["streams_completed"]) == (1, 1)


async def test_a_cut_tool_call_stream_is_counted_as_cut(client: Client) -> None:
    await client.put(
        f"/_simulator/models/{MODEL}",
        json={"tool_call_rate": 1, "stream_chunks": 3, "cut_stream_after": 1},
    )
    body = {"model": MODEL, "input": REFUND, "tools": [ROUTE_TICKET], "stream": True}
    with pytest.raises(LitestarException):  # the in-process client surfaces the abort
        await client.post("/v1/responses", json=body)
    stats = (await client.get("/_simulator/stats")).json()["models"][MODEL]
    assert stats["streams_cut"] == 1
