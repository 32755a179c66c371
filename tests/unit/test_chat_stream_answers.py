"""ChatStream beyond text: tool calls and refusals assembled for the contract, and the route
name shown as every chunk's model (no network)."""

from __future__ import annotations

import json
from typing import Any

from gateway.quality.answer import Answer as Judged
from gateway.quality.answer import ToolCall
from gateway.relay.stream import ChatStream
from gateway.routing.response_model import encode_model
from gateway.telemetry import RequestRecord
from gateway.upstream.redact import Redactor
from tests.unit.test_stream_machine import FakeClock

FT = "ft:gpt-4o-mini:acme:agent:v2"


def event(delta: dict[str, Any], **fields: Any) -> bytes:
    body = {"model": FT, "choices": [{"index": 0, "delta": delta}], **fields}
    return b"data: " + json.dumps(body).encode()


def machine() -> tuple[ChatStream, RequestRecord, FakeClock]:
    clock = FakeClock()
    rec = RequestRecord("req_1", started=9.5)
    return ChatStream(rec, "up", Redactor([]), clock), rec, clock


def test_tool_call_deltas_assemble_into_the_judged_answer() -> None:
    """Arguments split over chunks (and two chunks in one network read) come out whole; the
    first tool call piece is the time to first token; the events pass unchanged."""
    m, rec, clock = machine()
    start = {"index": 0, "id": "call_1", "type": "function"}
    events = [
        event({"role": "assistant", "content": None}),
        event({"tool_calls": [{**start, "function": {"name": "lookup", "arguments": ""}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"order'}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '_id": "A-1"}'}}]}),
    ]
    clock.now = 10.0
    assert m.feed(events[:2]) == events[0] + b"\n\n" + events[1] + b"\n\n"
    assert rec.ttft_seconds == 0.5
    clock.now = 11.0
    m.feed(events[2:])
    m.feed([b"data: [DONE]"])
    answer = m.answer()
    assert answer.judged == Judged(None, (ToolCall("lookup", '{"order_id": "A-1"}'),))
    assert answer.text is None
    assert m.text() == ""
    assert rec.ttft_seconds == 0.5


def test_a_streamed_refusal_is_kept_apart_from_text() -> None:
    m, _, _ = machine()
    m.feed([event({"refusal": "I can't"}), event({"refusal": " help."})])
    assert m.answer().judged == Judged(None, (), "I can't help.")


def test_other_choices_do_not_count() -> None:
    m, _, _ = machine()
    other = (
        b"data: "
        + json.dumps(
            {"choices": [{"index": 1, "delta": {"content": "x", "tool_calls": [{"index": 0}]}}]}
        ).encode()
    )
    m.feed([other, event({"content": "billing"})])
    assert m.answer().judged == Judged("billing")


def test_show_model_puts_the_route_name_in_every_chunk() -> None:
    """Every chunk, usage chunk included, says the route; keep-alives and [DONE] are as sent;
    without show_model the upstream's id stays."""
    m, _, _ = machine()
    m.show_model(encode_model("support-agent"))
    m.wants_usage = True
    usage = (
        b"data: "
        + json.dumps(
            {"model": FT, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
        ).encode()
    )
    out = m.feed([b": keep-alive", event({"content": "hi"}), usage, b"data: [DONE]"])
    assert FT.encode() not in out
    assert out.count(b'"model": "support-agent"') == 2
    assert out.startswith(b": keep-alive\n\n")
    assert out.endswith(b"data: [DONE]\n\n")
    plain, _, _ = machine()
    assert plain.feed([event({"content": "hi"})]) == event({"content": "hi"}) + b"\n\n"
