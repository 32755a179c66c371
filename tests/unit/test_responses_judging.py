"""The Responses API gets what chat completions got: answers judged with their function calls
(unary and streamed), the client's changed fields reported (``x-gateway-overridden``) and the
route's name as the answer's ``model``; all without a network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ContractConfig, FlagConfig, GatewayConfig, Route, Variant
from gateway.quality.answer import Answer, ToolCall
from gateway.quality.contract import Contract
from gateway.quality.responses_answer import ResponsesAnswerAssembler, answer_from_output
from gateway.relay.responses import ResponsesOperation, ResponsesStream
from gateway.routing.response_model import encode_model, replace_model
from gateway.routing.responses_payload import build_responses_request
from gateway.telemetry import RequestRecord
from gateway.upstream.redact import Redactor

ARGS = '{"queue": "billing"}'
CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "route_ticket",
    "arguments": ARGS,
    "status": "completed",
}
CONTRACT = ContractConfig.model_validate(
    {
        "non_empty": True,
        "tool_calls": {
            "allowed": {
                "route_ticket": {
                    "type": "object",
                    "properties": {"queue": {"enum": ["billing", "technical"]}},
                    "required": ["queue"],
                }
            }
        },
    }
)


def message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": list(parts)}


def failed(answer: Answer) -> list[str]:
    return [r.check for r in Contract(CONTRACT).check(answer) if not r.passed]


# --- unary answers ---------------------------------------------------------------------------


def test_a_function_call_answer_is_a_tool_call_and_passes_non_empty() -> None:
    answer = answer_from_output([{"type": "reasoning", "summary": []}, CALL])
    assert answer == Answer(None, (ToolCall("route_ticket", ARGS),), None)
    assert failed(answer) == []


@pytest.mark.parametrize(
    ("call", "check"),
    [
        ({**CALL, "name": "unknown_function"}, "tool_call_name"),
        ({**CALL, "arguments": '{"queue": "bil'}, "tool_call_arguments"),
        ({**CALL, "arguments": '{"queue": "sales"}'}, "tool_call_arguments"),
    ],
)
def test_a_wrong_name_or_bad_arguments_fail_by_name(call: dict[str, Any], check: str) -> None:
    assert failed(answer_from_output([call])) == [check]


def test_text_and_refusal_parts_are_read_from_message_items() -> None:
    answer = answer_from_output(
        [
            message(
                {"type": "output_text", "text": "bill"}, {"type": "output_text", "text": "ing"}
            ),
            message({"type": "refusal", "refusal": "I can't."}),
        ]
    )
    assert answer == Answer("billing", (), "I can't.")
    refused = answer_from_output([message({"type": "refusal", "refusal": "No."})])
    assert refused == Answer(None, (), "No.")
    assert "non_empty" in failed(refused)  # a refusal alone is no answer, as for chat
    assert answer_from_output([]) == Answer(None, (), None)
    assert "non_empty" in failed(answer_from_output([]))


def test_the_operation_reads_the_judged_answer_and_the_upstreams_model() -> None:
    op = ResponsesOperation(GatewayConfig(Path("."), {}, {}))
    body = {"object": "response", "model": "ft:m", "output": [CALL], "usage": None}
    answer = op.answer(json.dumps(body).encode())
    assert answer.judged == Answer(None, (ToolCall("route_ticket", ARGS),), None)
    assert (answer.text, answer.model) == (None, "ft:m")


# --- streams ---------------------------------------------------------------------------------


def ev(kind: str, seq: int, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, "sequence_number": seq, **fields})
    return f"event: {kind}\ndata: {data}".encode()


def call_events(index: int, pieces: list[str], name: str = "route_ticket") -> list[bytes]:
    added = {**CALL, "name": name, "arguments": "", "status": "in_progress"}
    at = {"output_index": index, "item_id": "fc_1"}
    return [
        ev("response.output_item.added", 0, output_index=index, item=added),
        *(ev("response.function_call_arguments.delta", 1, delta=p, **at) for p in pieces),
    ]


def machine() -> tuple[ResponsesStream, RequestRecord]:
    rec = RequestRecord("req_1", started=1.0)
    return ResponsesStream(rec, "up", Redactor([]), lambda: 1.5), rec


def test_a_streamed_function_call_is_assembled_from_its_argument_deltas() -> None:
    m, rec = machine()
    m.feed(call_events(0, ['{"queue"', ': "bil', 'ling"}']))
    answer = m.answer()
    assert answer.judged == Answer(None, (ToolCall("route_ticket", '{"queue": "billing"}'),), None)
    assert answer.text is None
    assert rec.ttft_seconds == 0.5  # the first argument piece is the first token
    assert failed(answer.judged) == []


def test_the_done_events_arguments_win_and_calls_come_in_output_order() -> None:
    m, _ = machine()
    m.feed(call_events(1, ['{"queue": "x"'], name="escalate"))
    m.feed(call_events(0, []))
    m.feed([ev("response.function_call_arguments.done", 2, output_index=0, arguments=ARGS)])
    done = {**CALL, "name": "escalate", "arguments": "{}"}
    m.feed([ev("response.output_item.done", 3, output_index=1, item=done)])
    assert m.answer().judged == Answer(
        None, (ToolCall("route_ticket", ARGS), ToolCall("escalate", "{}")), None
    )


def test_a_streamed_wrong_name_fails_by_name_and_a_refusal_counts_like_chats() -> None:
    m, _ = machine()
    m.feed(call_events(0, [ARGS], name="unknown_function"))
    judged = m.answer().judged
    assert judged is not None
    assert failed(judged) == ["tool_call_name"]
    r, _ = machine()
    r.feed(
        [
            ev("response.refusal.delta", 0, delta="I can"),
            ev("response.refusal.delta", 1, delta="'t."),
        ]
    )
    refused = r.answer().judged
    assert refused == Answer(None, (), "I can't.")
    t, _ = machine()
    t.feed([ev("response.output_text.delta", 0, delta="billing")])
    assert t.answer().judged == Answer("billing", (), None)


def test_the_assembler_ignores_items_that_are_not_function_calls() -> None:
    calls = ResponsesAnswerAssembler()
    calls.item(0, message({"type": "output_text", "text": "x"}), done=True)
    calls.item(1, "not an item", done=False)
    assert calls.answer("") == Answer("", (), None)


# --- x-gateway-overridden ------------------------------------------------------------------


def variant(mode: Any = "enforce", prompt: str | None = "Route it.") -> Variant:
    return Variant("v", "r", "up", "m-1", prompt, (), {"temperature": 0}, 0.0, 0.0, True, mode)


def route(mode: Any = "replace") -> Route:
    return Route("r", {"v": variant()}, "v", "v", FlagConfig(), frozenset(), mode)


def test_replaced_instructions_dropped_items_and_enforced_params_are_reported() -> None:
    body = {
        "model": "r",
        "instructions": "Answer in French.",
        "input": [
            {"role": "developer", "content": "d"},
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.7,
    }
    sent, overridden = build_responses_request(route(), variant(), body, stream=False)
    assert overridden == ("instructions", "input.system", "input.developer", "temperature")
    assert json.loads(sent)["temperature"] == 0


def test_nothing_is_reported_when_nothing_of_the_clients_changed() -> None:
    plain = {"model": "r", "input": "hi", "temperature": 0}
    assert build_responses_request(route(), variant(), plain, stream=False)[1] == ()
    same = {"model": "r", "input": "hi", "instructions": "Route it."}
    assert build_responses_request(route(), variant(), same, stream=False)[1] == ()
    kept = {"model": "r", "input": [{"role": "developer", "content": "d"}], "instructions": "x"}
    assert build_responses_request(route("prepend"), variant(), kept, stream=False)[1] == ()
    assert build_responses_request(route(), variant(prompt=None), kept, stream=False)[1] == ()


def test_params_mode_default_keeps_the_clients_value() -> None:
    body = {"model": "r", "input": "hi", "temperature": 0.7}
    sent, overridden = build_responses_request(route(), variant("default"), body, stream=True)
    assert overridden == ()
    assert json.loads(sent)["temperature"] == 0.7
    sent, _ = build_responses_request(route(), variant("default"), {"input": "x"}, stream=True)
    assert json.loads(sent)["temperature"] == 0


# --- response_model: route -------------------------------------------------------------------

ROUTE_NAME = encode_model("support-agent")
INNER_ARGS = json.dumps({"model": "ft:m", "queue": "billing"})


def test_the_unary_responses_model_is_replaced_not_one_inside_tool_arguments() -> None:
    """Arguments are a JSON string: a ``model`` key in them is escaped and never matched,
    wherever ``output`` comes in the object."""
    call = {**CALL, "arguments": INNER_ARGS}
    for body in (
        {"object": "response", "model": "ft:m", "output": [call]},
        {"object": "response", "output": [call], "model": "ft:m"},
    ):
        out = json.loads(replace_model(json.dumps(body).encode(), "ft:m", ROUTE_NAME))
        assert out["model"] == "support-agent"
        assert json.loads(out["output"][0]["arguments"]) == {"model": "ft:m", "queue": "billing"}


def test_stream_events_show_the_route_in_their_response_object_only() -> None:
    m, _ = machine()
    m.show_model(ROUTE_NAME)
    response = {"id": "resp_1", "model": "ft:m", "output": [], "metadata": {}}
    done_call = {**CALL, "arguments": INNER_ARGS}
    events = [
        ev("response.created", 0, response=response),
        ev("response.output_item.done", 1, output_index=0, item=done_call),
        ev("response.completed", 2, response={**response, "output": [done_call]}),
    ]
    out = m.feed(events).split(b"\n\n")
    data = [json.loads(chunk.split(b"data: ", 1)[1]) for chunk in out if chunk]
    assert [d["response"]["model"] for d in (data[0], data[2])] == ["support-agent"] * 2
    assert out[1] == events[1]  # an event without a response object is untouched
    assert json.loads(data[2]["response"]["output"][0]["arguments"])["model"] == "ft:m"
    assert out[0].startswith(b"event: response.created\n")


def test_an_escaped_model_id_falls_back_to_re_encoding_the_response_object() -> None:
    m, _ = machine()
    m.show_model(ROUTE_NAME)
    model = "ft:m/\u00e9"  # json.dumps escapes it: the byte scan cannot match
    out = m.feed([ev("response.created", 0, response={"model": model, "tools": []})])
    head, data = out.rstrip(b"\n").split(b"\n", 1)
    assert head == b"event: response.created"
    parsed = json.loads(data.removeprefix(b"data: "))
    assert parsed["response"]["model"] == "support-agent"
    assert "model" not in parsed  # not added at the event's top level


def test_a_failed_responses_model_is_the_route_too() -> None:
    m, rec = machine()
    m.show_model(ROUTE_NAME)
    out = m.feed([ev("response.failed", 0, response={"model": "ft:m", "error": {"code": "x"}})])
    assert b'"model":"support-agent"' in out.replace(b" ", b"")
    assert b"ft:m" not in out
    m.close()
    assert rec.error_code == "upstream_stream_error"
