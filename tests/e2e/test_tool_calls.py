"""Tool calls judged right, and what the gateway changes in a request said out loud, end to
end: the official ``openai`` SDK against the gateway and the simulator, in-process.

* answers made of tool calls pass ``non_empty`` and a ``tool_calls`` contract, unary and
  streamed (judged on the assembled calls), and the guard leaves a healthy candidate alone;
  a wrong function name or bad arguments fail by name, and ``on_violation: fallback``
  replaces only those;
* a ``developer`` message is replaced like a system message (``prepend`` keeps it);
* enforced params that change the client's values are listed in ``x-gateway-overridden``;
  ``params_mode: default`` keeps the client's;
* the answer's ``model`` is the route name, unless the route says ``response_model: upstream``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.support import metric_value
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    start_in_process,
)
from tests.processes import CANDIDATE_MODEL, CLIENT_KEY, FALLBACK_MODEL

ROUTE = "support-agent"
TICKET = "I was charged twice, please refund me."
ROUTE_TICKET: Any = {
    "type": "function",
    "function": {
        "name": "route_ticket",
        "description": "Send the ticket to a support queue.",
        "parameters": {
            "type": "object",
            "properties": {"queue": {"type": "string", "enum": ["billing", "technical"]}},
            "required": ["queue"],
            "additionalProperties": False,
        },
    },
}
MESSAGES: list[Any] = [{"role": "user", "content": TICKET}]


def routes(route_extra: str = "", candidate_extra: str = "", weight: int = 100_000) -> str:
    extra = textwrap.indent(textwrap.dedent(route_extra).strip("\n"), "    ")
    return f"""
upstreams:
  simulator:
    base_url: http://simulator.test/v1
routes:
  {ROUTE}:
    contract:
      non_empty: true
      tool_calls:
        allowed:
          route_ticket:
            type: object
            properties: {{queue: {{enum: [billing, technical, account]}}}}
            required: [queue]
          escalate: null
    variants:
      finetuned:
        upstream: simulator
        model: "{CANDIDATE_MODEL}"
        system_prompt: "Route the ticket."
        params: {{temperature: 0}}
        {candidate_extra}
      prompted:
        upstream: simulator
        model: {FALLBACK_MODEL}
        system_prompt: "You route support tickets to queues."
    candidate: finetuned
    fallback: prompted
    flag: {{enabled: true, weight: {weight}}}
    guard: {{min_samples: 20}}
{extra}
"""


class Recording(httpx.AsyncBaseTransport):
    """Forwards to the simulator and keeps every request body the gateway sent upstream."""

    def __init__(self, target: httpx.AsyncBaseTransport) -> None:
        self.target = target
        self.bodies: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(await request.aread()))
        return await self.target.handle_async_request(request)


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    return in_sim


@pytest.fixture
def recording(sim: InProcessSimulator) -> Recording:
    return Recording(sim.transport())


def start(
    loop_thread: LoopThread,
    tmp_path: Path,
    sim: InProcessSimulator,
    recording: Recording,
    text: str,
) -> Any:
    return start_in_process(loop_thread, tmp_path, text, sim, upstreams={"simulator": recording})


@pytest.fixture
def agent(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> Iterator[InProcessGatewayUnderTest]:
    with start(loop_thread, tmp_path, sim, recording, routes()) as gw:
        yield gw


def checks(gw: InProcessGatewayUnderTest, check: str, result: str) -> float:
    return metric_value(
        gw.metrics(),
        "gateway_quality_checks_total",
        route=ROUTE,
        variant="finetuned",
        check=check,
        result=result,
    )


def completed(gw: InProcessGatewayUnderTest) -> list[dict[str, Any]]:
    return [e for e in gw.log_events("request.completed") if e.get("route") == ROUTE]


def test_tool_call_answers_pass_the_contract_and_keep_a_healthy_candidate(
    sim: InProcessSimulator, agent: InProcessGatewayUnderTest
) -> None:
    """The issue's case: 40 answers with valid tool calls (half streamed) are not empty and
    pass the tool-call checks; the guard (min_samples 20) does not roll the candidate back."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, stream_chunks=6)
    client = agent.openai()
    for i in range(20):
        raw = client.chat.completions.with_raw_response.create(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET]
        )
        message = raw.parse().choices[0].message
        assert raw.headers["x-gateway-variant"] == "finetuned", i
        assert message.content is None
        assert message.tool_calls is not None
        call = message.tool_calls[0]
        assert call.type == "function"
        assert call.function.name == "route_ticket"
        assert json.loads(call.function.arguments) == {"queue": "billing"}
    for _ in range(20):
        stream = client.chat.completions.create(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET], stream=True
        )
        pieces = []
        for chunk in stream:
            for choice in chunk.choices:
                for delta_call in choice.delta.tool_calls or []:
                    assert delta_call.function is not None
                    pieces.append(delta_call.function.arguments or "")
        assert json.loads("".join(pieces)) == {"queue": "billing"}

    events = completed(agent)
    assert len(events) == 40
    assert [e for e in events if e.get("checks_failed")] == []
    assert sum(e["stream"] for e in events) == 20
    for check in ("non_empty", "tool_call_name", "tool_call_arguments"):
        assert checks(agent, check, "pass") == 40
        assert checks(agent, check, "fail") == 0
    last = client.chat.completions.with_raw_response.create(model=ROUTE, messages=MESSAGES)
    assert last.headers["x-gateway-decision"] == "rollout"  # not rolled back
    assert last.parse().choices[0].message.content == "billing"  # text: no tool offered


@pytest.mark.parametrize(
    ("fault", "check"),
    [("wrong_tool_rate", "tool_call_name"), ("bad_arguments_rate", "tool_call_arguments")],
)
def test_a_wrong_function_name_or_bad_arguments_fail_by_name(
    sim: InProcessSimulator, agent: InProcessGatewayUnderTest, fault: str, check: str
) -> None:
    """Unary and streamed: the client still gets the candidate's answer (on_violation is
    record), the log names the failed check and the metric counts it."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, **{fault: 1})
    client = agent.openai()
    message = (
        client.chat.completions.create(model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET])
        .choices[0]
        .message
    )
    assert message.tool_calls
    streamed = list(
        client.chat.completions.create(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET], stream=True
        )
    )
    assert streamed
    assert [e.get("checks_failed") for e in completed(agent)] == [[check], [check]]
    assert checks(agent, check, "fail") == 2
    assert checks(agent, "non_empty", "pass") == 2


def test_on_violation_fallback_keeps_valid_tool_calls_and_replaces_broken_ones(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> None:
    """Valid tool calls from the candidate are served (no more thrown away); a call to an
    unknown function is replaced by the fallback's answer (x-gateway-decision: violation)."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1)
    sim.set_behaviour(FALLBACK_MODEL, tool_call_rate=1)
    text = routes("on_violation: fallback")
    with start(loop_thread, tmp_path, sim, recording, text) as gw:
        client = gw.openai()
        raw = client.chat.completions.with_raw_response.create(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET]
        )
        assert raw.headers["x-gateway-decision"] == "rollout"
        assert raw.parse().choices[0].message.tool_calls
        sim.set_behaviour(CANDIDATE_MODEL, wrong_tool_rate=1)
        raw = client.chat.completions.with_raw_response.create(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET]
        )
        assert raw.headers["x-gateway-decision"] == "violation"
        calls = raw.parse().choices[0].message.tool_calls
        assert calls
        assert calls[0].function.name == "route_ticket"  # the fallback's valid call


def test_a_developer_message_is_replaced_like_a_system_message_and_reported(
    agent: InProcessGatewayUnderTest, recording: Recording
) -> None:
    """replace (the default): the upstream sees the variant's system prompt, not the client's
    developer message; the client's temperature 0.7 became the variant's enforced 0; the
    header says both."""
    client = agent.openai()
    raw = client.chat.completions.with_raw_response.create(
        model=ROUTE,
        messages=[{"role": "developer", "content": "Answer in French."}, *MESSAGES],
        temperature=0.7,
        top_p=1,
    )
    assert raw.parse().choices[0].message.content == "billing"
    assert raw.headers["x-gateway-overridden"] == "messages.developer,temperature"
    sent = recording.bodies[-1]
    assert sent["messages"] == [{"role": "system", "content": "Route the ticket."}, *MESSAGES]
    assert (sent["temperature"], sent["top_p"]) == (0, 1)

    plain = client.chat.completions.with_raw_response.create(model=ROUTE, messages=MESSAGES)
    assert "x-gateway-overridden" not in plain.headers


def test_prepend_keeps_the_developer_message_and_default_params_keep_the_clients(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> None:
    text = routes("system_prompt_mode: prepend", candidate_extra="params_mode: default")
    developer = {"role": "developer", "content": "Answer in French."}
    with start(loop_thread, tmp_path, sim, recording, text) as gw:
        raw = gw.openai().chat.completions.with_raw_response.create(
            model=ROUTE, messages=[developer, *MESSAGES], temperature=0.7
        )
        assert "x-gateway-overridden" not in raw.headers
    sent = recording.bodies[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Route the ticket."},
        developer,
        *MESSAGES,
    ]
    assert sent["temperature"] == 0.7


def test_the_answers_model_is_the_route_name_unless_the_route_says_upstream(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> None:
    """Unary and in every stream chunk (usage chunk included); response_model: upstream
    keeps the candidate's own id."""
    with start(loop_thread, tmp_path / "route", sim, recording, routes()) as gw:
        client = gw.openai()
        assert client.chat.completions.create(model=ROUTE, messages=MESSAGES).model == ROUTE
        chunks = list(
            client.chat.completions.create(
                model=ROUTE,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None
        assert {chunk.model for chunk in chunks} == {ROUTE}
    text = routes("response_model: upstream")
    with start(loop_thread, tmp_path / "upstream", sim, recording, text) as gw:
        client = gw.openai()
        answer = client.chat.completions.create(model=ROUTE, messages=MESSAGES)
        assert answer.model == CANDIDATE_MODEL
        chunks = list(client.chat.completions.create(model=ROUTE, messages=MESSAGES, stream=True))
        assert {chunk.model for chunk in chunks} == {CANDIDATE_MODEL}


async def test_the_async_sdk_sees_the_same(
    loop_thread: LoopThread, tmp_path: Path, sim: InProcessSimulator, recording: Recording
) -> None:
    """The async client: a streamed tool call assembled by the SDK's own helper."""
    sim.set_behaviour(CANDIDATE_MODEL, tool_call_rate=1, stream_chunks=4)
    with start(loop_thread, tmp_path, sim, recording, routes()) as gw:
        client = openai.AsyncOpenAI(
            base_url=gw.base_url,
            api_key=CLIENT_KEY,
            http_client=httpx.AsyncClient(transport=gw.async_transport()),  # type: ignore[arg-type]
            max_retries=0,
        )
        async with client.chat.completions.stream(
            model=ROUTE, messages=MESSAGES, tools=[ROUTE_TICKET]
        ) as stream:
            final = await stream.get_final_completion()
        calls = final.choices[0].message.tool_calls
        assert calls
        assert calls[0].function.name == "route_ticket"
        assert json.loads(calls[0].function.arguments) == {"queue": "billing"}
        assert final.model == ROUTE
