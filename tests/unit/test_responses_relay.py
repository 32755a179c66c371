"""The Responses API operation: body, payload (prompt as instructions), answers, the stream
state machine and the first-event check; all without a network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.config import FlagConfig, GatewayConfig, Route, UpstreamConfig, Variant
from gateway.errors import InvalidRequestError, UpstreamProtocolError
from gateway.relay.responses import (
    ResponsesOperation,
    ResponsesStream,
    check_responses_first,
    parse_responses_request,
)
from gateway.routing.responses_payload import apply_instructions, build_responses_payload
from gateway.telemetry import RequestRecord
from gateway.upstream.redact import Redactor

SECRET = "sk-upstream-secret-123"
FEW_SHOT = ({"role": "user", "content": "ex"}, {"role": "assistant", "content": "billing"})


def variant(
    prompt: str | None = "Be brief.",
    few_shot: tuple[dict[str, str], ...] = (),
    params: dict[str, Any] | None = None,
    upstream: str = "up",
) -> Variant:
    return Variant("v", "r", upstream, "m-1", prompt, few_shot, params or {}, 0.0, 0.0, True)


def route(mode: Any = "replace", passthrough: bool = False) -> Route:
    v = variant()
    return Route("r", {"v": v}, "v", "v", FlagConfig(), frozenset(), mode, passthrough=passthrough)


# --- payload ---------------------------------------------------------------------------------


def test_replace_mode_makes_the_prompt_the_instructions_and_drops_system_items() -> None:
    items = [
        {"role": "developer", "content": "be rude"},
        {"role": "system", "content": "ignore all"},
        {"role": "user", "content": "hi"},
        {"type": "function_call_output", "call_id": "c1", "output": "{}"},
    ]
    instructions, sent = apply_instructions(route(), variant(), "client's own", items)
    assert instructions == "Be brief."
    assert sent == [items[2], items[3]]
    assert len(items) == 4  # the client's list is not modified


def test_prepend_mode_puts_the_prompt_before_the_clients_instructions() -> None:
    items = [{"role": "developer", "content": "d"}, {"role": "user", "content": "hi"}]
    instructions, sent = apply_instructions(route("prepend"), variant(), "Answer in French.", items)
    assert instructions == "Be brief.\n\nAnswer in French."
    assert sent == items
    assert apply_instructions(route("prepend"), variant(), None, "hi") == ("Be brief.", "hi")


def test_without_a_system_prompt_the_clients_instructions_stay() -> None:
    assert apply_instructions(route(), variant(prompt=None), "mine", "hi") == ("mine", "hi")


def test_few_shot_messages_go_first_and_a_string_input_becomes_a_user_message() -> None:
    v = variant(few_shot=FEW_SHOT)
    _, sent = apply_instructions(route(), v, None, "my invoice")
    assert sent == [*FEW_SHOT, {"role": "user", "content": "my invoice"}]
    _, sent = apply_instructions(route(), v, None, [{"role": "user", "content": "x"}])
    assert sent == [*FEW_SHOT, {"role": "user", "content": "x"}]


def test_the_payload_sets_model_and_params_and_forwards_the_rest() -> None:
    body = {
        "model": "r",
        "input": "hi",
        "instructions": "mine",
        "temperature": 0.9,
        "tools": [{"type": "function", "name": "f"}],
        "stream": True,
    }
    sent = json.loads(
        build_responses_payload(route(), variant(params={"temperature": 0}), body, stream=True)
    )
    assert sent == {**body, "model": "m-1", "instructions": "Be brief.", "temperature": 0}
    unary = json.loads(build_responses_payload(route(), variant(), body, stream=False))
    assert unary["stream"] is False  # a streamed request answered in one piece
    passthrough = json.loads(
        build_responses_payload(route(passthrough=True), variant(), body, False)
    )
    assert (passthrough["instructions"], passthrough["input"]) == ("mine", "hi")


def test_an_upstream_without_the_responses_api_is_refused_before_sending(tmp_path: Path) -> None:
    config = GatewayConfig(
        tmp_path,
        {
            "up": UpstreamConfig(base_url="http://up.test/v1"),
            "old": UpstreamConfig(base_url="http://old.test/v1", responses_api=False),
        },
        {},
    )
    op = ResponsesOperation(config)
    assert json.loads(op.payload(route(), variant(), {"model": "r", "input": "x"}, False)[0])
    with pytest.raises(InvalidRequestError) as info:
        op.payload(route(), variant(upstream="old"), {"model": "r", "input": "x"}, False)
    assert info.value.code == "responses_api_unsupported"
    assert info.value.status_code == 400
    assert "'old'" in info.value.message


# --- body and answers ------------------------------------------------------------------------


def test_the_body_takes_a_string_or_a_list_and_optional_instructions() -> None:
    body, head = parse_responses_request(b'{"model": "r", "input": "hi", "store": false}')
    assert (head.model, head.input, head.instructions, head.stream) == ("r", "hi", None, False)
    assert body["store"] is False
    _, head = parse_responses_request(
        b'{"model": "r", "input": [{"role": "user", "content": "hi"}], "user": "u", '
        b'"stream": true, "instructions": "x"}'
    )
    assert (head.user, head.stream, head.instructions) == ("u", True, "x")


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"input": "hi"}', "model"),
        (b'{"model": "r", "input": {"a": 1}}', "input"),
        (b'{"model": "r", "input": ""}', "input"),
        (b'{"model": "r", "input": "x", "user": 1}', "user"),
        (b"[1]", None),
    ],
)
def test_a_bad_body_is_a_400(raw: bytes, param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_responses_request(raw)
    assert info.value.param == param


def response_body(*texts: str, usage: bool = True) -> bytes:
    body: dict[str, Any] = {
        "object": "response",
        "output": [
            {"type": "reasoning", "summary": []},
            {
                "type": "message",
                "content": [{"type": "output_text", "text": t} for t in texts]
                + [{"type": "refusal", "refusal": "no"}],
            },
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ],
    }
    if usage:
        body["usage"] = {"input_tokens": 11, "output_tokens": 2, "total_tokens": 13}
    return json.dumps(body).encode()


def test_the_answer_text_joins_the_output_text_parts_and_usage_is_read() -> None:
    op = ResponsesOperation(GatewayConfig(Path("."), {}, {}))
    answer = op.answer(response_body("bill", "ing"))
    assert (answer.text, answer.input_tokens, answer.output_tokens) == ("billing", 11, 2)
    bare = op.answer(response_body(usage=False))
    assert (bare.text, bare.input_tokens) == (None, None)
    with pytest.raises(msgspec.DecodeError):
        op.answer(b'{"choices": []}')  # a chat completion is not a response


# --- the stream ------------------------------------------------------------------------------


def ev(kind: str, seq: int, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, "sequence_number": seq, **fields})
    return f"event: {kind}\ndata: {data}".encode()


def completed_event(seq: int) -> bytes:
    usage = {"input_tokens": 20, "output_tokens": 3, "total_tokens": 23}
    return ev("response.completed", seq, response={"status": "completed", "usage": usage})


def machine() -> tuple[ResponsesStream, RequestRecord]:
    rec = RequestRecord("req_1", started=1.0)
    return ResponsesStream(rec, "up", Redactor([SECRET]), lambda: 1.25), rec


def test_events_pass_unchanged_deltas_make_the_text_and_completed_the_usage() -> None:
    m, rec = machine()
    events = [
        ev("response.created", 0, response={"status": "in_progress"}),
        ev("response.output_text.delta", 1, delta="bill"),
        ev("response.output_text.delta", 2, delta="ing"),
        ev("response.function_call_arguments.delta", 3, delta="{"),
    ]
    assert m.feed(events) == b"".join(e + b"\n\n" for e in events)
    assert m.text() == "billing"
    assert rec.ttft_seconds == 0.25
    assert not m.done
    tail = [completed_event(4), b"data: [DONE]"]
    assert m.feed(tail) == completed_event(4) + b"\n\n"
    assert m.done
    assert (rec.input_tokens, rec.output_tokens) == (20, 3)
    assert m.close() == b""
    assert rec.status == 200


def test_an_incomplete_response_is_complete_too() -> None:
    m, rec = machine()
    m.feed([ev("response.incomplete", 0, response={"usage": {"input_tokens": 1}})])
    assert m.done
    assert m.close() == b""
    assert rec.input_tokens == 1


@pytest.mark.parametrize(
    "failure",
    [
        ev("response.failed", 1, response={"error": {"message": f"key {SECRET}"}}),
        ev("error", 1, code="server_error", message=f"key {SECRET}"),
        b'data: {"error": {"message": "key ' + SECRET.encode() + b'"}}',
    ],
    ids=["response.failed", "error", "error-object"],
)
def test_an_upstream_failure_event_is_relayed_redacted_and_ends_the_stream(
    failure: bytes,
) -> None:
    m, rec = machine()
    out = m.feed([ev("response.created", 0), failure, ev("response.output_text.delta", 2)])
    assert SECRET.encode() not in out
    assert b"[redacted]" in out
    assert b"output_text.delta" not in out
    assert m.close() == b""
    assert (rec.status, rec.error_code) == (502, "upstream_stream_error")


def test_a_cut_stream_gets_an_error_event_the_sdk_raises_on() -> None:
    """The gateway's own error event is a Responses ``error`` event (next sequence number)
    that also carries OpenAI's error envelope (``error``), which the SDKs raise."""
    m, rec = machine()
    m.feed([ev("response.created", 0), ev("response.output_text.delta", 7, delta="x")])
    tail = m.close()
    assert tail.startswith(b"event: error\ndata: ")
    event = json.loads(tail.split(b"data: ", 1)[1])
    assert (event["type"], event["code"], event["sequence_number"]) == (
        "error",
        "stream_interrupted",
        8,
    )
    assert event["error"]["code"] == "stream_interrupted"
    assert rec.status == 502


def test_an_event_that_is_not_json_ends_the_stream_as_invalid() -> None:
    m, rec = machine()
    assert m.feed([b"data: {garbage"]) == b""
    assert b"upstream_invalid_response" in m.close()
    assert rec.error_code == "upstream_invalid_response"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"type": "response.created", "response": {}}', None),
        (b'{"choices": [{"delta": {"content": "x"}}]}', "upstream_invalid_response"),
        (b"{garbage", "upstream_invalid_response"),
        (b'{"type": "error", "message": "overloaded"}', "upstream_stream_error"),
        (b'{"type": "response.failed", "response": {}}', "upstream_stream_error"),
        (b'{"error": {"message": "overloaded"}}', "upstream_invalid_response"),
    ],
)
def test_the_first_event_must_start_a_responses_stream(data: bytes, code: str | None) -> None:
    """Checked before the 200: anything else fails over as an invalid response."""
    if code is None:
        check_responses_first(data, "up")
        return
    with pytest.raises(UpstreamProtocolError) as info:
        check_responses_first(data, "up")
    assert info.value.code == code
    assert info.value.failover_reason == "invalid_response"
