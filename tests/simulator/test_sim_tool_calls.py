"""Tool-call answers of the simulator: OpenAI's unary and streamed shapes, the planned
function and arguments, and the injected faults (wrong name, cut-short arguments)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.tools.simulator import ModelBehaviour, SimulatorConfig
from gateway.tools.simulator.tool_calls import UNKNOWN_FUNCTION, arguments_for, plan_tool_call
from tests.simulator.test_sim_app import (
    MODEL,
    Client,
    chat_body,
    make_client,
    set_behaviour,
    stream_events,
)

ROUTE_TICKET: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "route_ticket",
        "parameters": {
            "type": "object",
            "properties": {
                "queue": {"type": "string", "enum": ["billing", "technical", "account"]},
                "summary": {"type": "string"},
                "priority": {"type": "integer"},
                "urgent": {"type": "boolean"},
                "tags": {"type": "array"},
            },
            "required": ["queue"],
        },
    },
}
OTHER: dict[str, Any] = {"type": "function", "function": {"name": "escalate", "parameters": {}}}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    config = SimulatorConfig(seed=1, models={MODEL: ModelBehaviour(tool_call_rate=1)})
    async for made in make_client(config):
        yield made


async def test_a_unary_tool_call_has_openais_shape(client: Client) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(tools=[ROUTE_TICKET, OTHER])
    )
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "route_ticket"
    assert json.loads(call["function"]["arguments"]) == {
        "queue": "billing",
        "summary": "billing",
        "priority": 1,
        "urgent": True,
        "tags": [],
    }
    assert response.json()["usage"]["completion_tokens"] > 1


async def test_a_streamed_tool_call_arrives_in_pieces_by_index(client: Client) -> None:
    await set_behaviour(client, MODEL, stream_chunks=5)
    events = await stream_events(client, tools=[ROUTE_TICKET])
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    start = deltas[1]["tool_calls"][0]
    assert start["function"] == {"name": "route_ticket", "arguments": ""}
    assert start["index"] == 0
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1]]
    assert len(pieces) == 5
    assert all(d["tool_calls"][0]["index"] == 0 for d in deltas[2:-1])
    assert json.loads("".join(pieces))["queue"] == "billing"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_faults_name_an_unknown_function_or_cut_the_arguments(client: Client) -> None:
    await set_behaviour(client, MODEL, wrong_tool_rate=1)
    body = (await client.post("/v1/chat/completions", json=chat_body(tools=[ROUTE_TICKET]))).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == UNKNOWN_FUNCTION
    await set_behaviour(client, MODEL, wrong_tool_rate=0, bad_arguments_rate=1)
    body = (await client.post("/v1/chat/completions", json=chat_body(tools=[ROUTE_TICKET]))).json()
    arguments = body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)


async def test_without_tools_or_with_tool_choice_none_the_answer_is_text(client: Client) -> None:
    extras: list[dict[str, Any]] = [{}, {"tools": [ROUTE_TICKET], "tool_choice": "none"}]
    for extra in extras:
        body = (await client.post("/v1/chat/completions", json=chat_body(**extra))).json()
        assert body["choices"][0]["message"]["content"] == "billing"
        assert "tool_calls" not in body["choices"][0]["message"]


def plan(rate: float, tools: Any, choice: Any = None, seed: int = 0) -> Any:
    return plan_tool_call(
        ModelBehaviour(tool_call_rate=rate), tools, choice, "billing", random.Random(seed)
    )


def test_tool_choice_decides_before_the_rate() -> None:
    """required or a named function: always a call (the named one); auto: at the rate."""
    assert plan(0, [ROUTE_TICKET], "required").name == "route_ticket"
    named = {"type": "function", "function": {"name": "escalate"}}
    assert plan(0, [ROUTE_TICKET, OTHER], named).name == "escalate"
    assert plan(0, [ROUTE_TICKET], "auto") is None
    assert plan(1, [ROUTE_TICKET], "auto").name == "route_ticket"
    assert plan(1, [{"type": "web_search"}]) is None  # no function tool to call
    calls = sum(plan(0.5, [ROUTE_TICKET], seed=s) is not None for s in range(400))
    assert 150 < calls < 250


def test_requests_without_tools_take_no_draws() -> None:
    """A seeded run without tools replays as before this feature."""
    rng = random.Random(3)
    assert plan_tool_call(ModelBehaviour(tool_call_rate=1), None, None, "x", rng) is None
    assert rng.random() == random.Random(3).random()


def test_arguments_follow_the_parameter_types_and_enums() -> None:
    args = arguments_for(ROUTE_TICKET["function"], "refund please")
    assert args == {
        "queue": "billing",  # the answer is not in the enum: its first value
        "summary": "refund please",
        "priority": 1,
        "urgent": True,
        "tags": [],
    }
    assert arguments_for({"name": "f"}, "x") == {}
    nullable = {"parameters": {"properties": {"n": {"type": ["null", "number"]}, "o": 3}}}
    assert arguments_for(nullable, "x") == {"n": 1, "o": "x"}
