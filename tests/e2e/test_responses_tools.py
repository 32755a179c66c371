"""``POST /v1/responses`` gets what chat completions got, end to end: the official ``openai``
SDK (``client.responses.create``, plain and streamed) against the gateway and the simulator,
in-process.

* answers made of ``function_call`` items pass ``non_empty`` and the route's ``tool_calls``
  contract, and the guard leaves a healthy tool-calling candidate alone; a wrong function name
  or bad arguments fail by name;
* the client's fields the gateway changed are listed in ``x-gateway-overridden``;
* the response's ``model`` is the route name, unless the route says ``response_model:
  upstream``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_tool_calls import ROUTE, TICKET, Recording, checks, completed, routes, start
from tests.inprocess_sim import InProcessGatewayUnderTest, InProcessSimulator, LoopThread
from tests.processes import CANDIDATE_MODEL

ROUTE_TICKET: Any = {
    "type": "function",
    "name": "route_ticket",
    "description": "Send the ticket to a support queue.",
    "parameters": {
        "type": "object",
        "properties": {"queue": {"type": "string", "enum": ["billing", "technical"]}},
        "required": ["queue"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    return in_sim


@pytest.fixture
def recording(sim: InProcessSimulator) -> Recording:
    return Recording(sim.transport())


@pytest.fixture
def agent(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> Iterator[InProcessGatewayUnderTest]:
    with start(loop_thread, tmp_path, sim, recording, routes()) as gw:
        yield gw


def streamed_calls(stream: Any) -> tuple[list[Any], Any]:
    """The ``function_call`` items done in a Responses stream, and its final response."""
    calls, final = [], None
    for event in stream:
        if event.type == "response.output_item.done" and event.item.type == "function_call":
            calls.append(event.item)
        elif event.type == "response.completed":
            final = event.response
    return calls, final


def test_function_call_answers_pass_the_contract_and_keep_a_healthy_candidate(
    sim: InProcessSimulator, agent: InProcessGatewayUnderTest
) -> None:
    """The issue's case for the Responses API: 40 answers made only of function calls (half
    streamed) are not empty and pass the tool-call checks; the guard (min_samples 20) does
    not roll the candidate back."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, stream_chunks=6)
    client = agent.openai()
    for i in range(20):
        raw = client.responses.with_raw_response.create(
            model=ROUTE, input=TICKET, tools=[ROUTE_TICKET]
        )
        response = raw.parse()
        assert raw.headers["x-gateway-variant"] == "finetuned", i
        assert response.output_text == ""
        [call] = response.output
        assert call.type == "function_call"
        assert call.name == "route_ticket"
        assert json.loads(call.arguments) == {"queue": "billing"}
    for _ in range(20):
        stream = client.responses.create(
            model=ROUTE, input=TICKET, tools=[ROUTE_TICKET], stream=True
        )
        calls, final = streamed_calls(stream)
        assert [json.loads(call.arguments) for call in calls] == [{"queue": "billing"}]
        assert final is not None

    events = completed(agent)
    assert len(events) == 40
    assert [e for e in events if e.get("checks_failed")] == []
    assert {e["operation"] for e in events} == {"responses"}
    for check in ("non_empty", "tool_call_name", "tool_call_arguments"):
        assert checks(agent, check, "pass") == 40
        assert checks(agent, check, "fail") == 0
    last = client.responses.with_raw_response.create(model=ROUTE, input=TICKET)
    assert last.headers["x-gateway-decision"] == "rollout"  # not rolled back
    assert last.parse().output_text == "billing"  # text: no tool offered


@pytest.mark.parametrize(
    ("fault", "check"),
    [("wrong_tool_rate", "tool_call_name"), ("bad_arguments_rate", "tool_call_arguments")],
)
def test_a_wrong_function_name_or_bad_arguments_fail_by_name(
    sim: InProcessSimulator, agent: InProcessGatewayUnderTest, fault: str, check: str
) -> None:
    """Unary and streamed: the client still gets the candidate's answer (on_violation is
    record); the log names the failed check and the metric counts it."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, **{fault: 1})
    client = agent.openai()
    response = client.responses.create(model=ROUTE, input=TICKET, tools=[ROUTE_TICKET])
    assert response.output[0].type == "function_call"
    calls, _ = streamed_calls(
        client.responses.create(model=ROUTE, input=TICKET, tools=[ROUTE_TICKET], stream=True)
    )
    assert len(calls) == 1
    assert [e.get("checks_failed") for e in completed(agent)] == [[check], [check]]
    assert checks(agent, check, "fail") == 2
    assert checks(agent, "non_empty", "pass") == 2


def test_replaced_instructions_and_enforced_params_are_reported(
    agent: InProcessGatewayUnderTest, recording: Recording
) -> None:
    """replace (the default): the upstream sees the variant's prompt as ``instructions``, not
    the client's, nor its developer item; the client's temperature 0.7 became the variant's
    enforced 0; the header says so, and nothing when nothing changed."""
    client = agent.openai()
    raw = client.responses.with_raw_response.create(
        model=ROUTE,
        instructions="Answer in French.",
        input=[
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": TICKET},
        ],
        temperature=0.7,
    )
    assert raw.parse().output_text == "billing"
    assert raw.headers["x-gateway-overridden"] == "instructions,input.developer,temperature"
    sent = recording.bodies[-1]
    assert sent["instructions"] == "Route the ticket."
    assert sent["input"] == [{"role": "user", "content": TICKET}]
    assert sent["temperature"] == 0

    streamed = client.responses.with_streaming_response.create(
        model=ROUTE, input=TICKET, temperature=0.7, stream=True
    )
    with streamed as response:
        assert response.headers["x-gateway-overridden"] == "temperature"
        response.read()
    plain = client.responses.with_raw_response.create(model=ROUTE, input=TICKET)
    assert "x-gateway-overridden" not in plain.headers


def test_the_responses_model_is_the_route_name_unless_the_route_says_upstream(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> None:
    """Unary and in every event's ``response`` object; a ``model`` inside a function call's
    arguments is left alone; ``response_model: upstream`` keeps the candidate's own id."""
    with start(loop_thread, tmp_path / "route", sim, recording, routes()) as gw:
        client = gw.openai()
        assert client.responses.create(model=ROUTE, input=TICKET).model == ROUTE
        models = [
            event.response.model
            for event in client.responses.create(model=ROUTE, input=TICKET, stream=True)
            if hasattr(event, "response")
        ]
        assert len(models) == 3  # created, in_progress, completed
        assert set(models) == {ROUTE}
        sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, mode="echo")
        pick = {
            "type": "function",
            "name": "route_ticket",
            "parameters": {"type": "object", "properties": {"model": {"type": "string"}}},
        }
        response = client.responses.create(model=ROUTE, input=CANDIDATE_MODEL, tools=[pick])
        assert response.model == ROUTE
        assert json.loads(response.output[0].arguments) == {"model": CANDIDATE_MODEL}
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=0, mode="classify")
    text = routes("response_model: upstream")
    with start(loop_thread, tmp_path / "upstream", sim, recording, text) as gw:
        client = gw.openai()
        assert client.responses.create(model=ROUTE, input=TICKET).model == CANDIDATE_MODEL
        models = [
            event.response.model
            for event in client.responses.create(model=ROUTE, input=TICKET, stream=True)
            if hasattr(event, "response")
        ]
        assert set(models) == {CANDIDATE_MODEL}
