"""The chat stream state machine: upstream events in, client bytes out (no network)."""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import UpstreamTimeoutError
from gateway.relay.stream import ChatStream
from gateway.telemetry import RequestRecord
from gateway.upstream.redact import Redactor

SECRET = "sk-upstream-secret-123"


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def chunk(content: str | None = None, **fields: Any) -> bytes:
    body: dict[str, Any] = {"choices": [], **fields}
    if content is not None:
        body["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return b"data: " + json.dumps(body).encode()


def machine(wants_usage: bool = False) -> tuple[ChatStream, RequestRecord, FakeClock]:
    clock = FakeClock()
    rec = RequestRecord("req_1", started=9.5)
    m = ChatStream(rec, "up", Redactor([SECRET]), clock, wants_usage=wants_usage)
    return m, rec, clock


def test_content_chunks_pass_unchanged_and_assemble_the_answer() -> None:
    """Each event goes out as it came, with its blank line; the first content sets the time to
    first token once (from the record's start, by the machine's clock)."""
    m, rec, clock = machine()
    first, second = chunk("bill"), chunk("ing")
    assert m.feed([first]) == first + b"\n\n"
    clock.now = 11.0
    assert m.feed([second]) == second + b"\n\n"
    assert m.text() == "billing"
    assert m.answer().text == "billing"
    assert rec.ttft_seconds == 0.5
    assert not m.done
    assert m.failed is None


def test_events_of_one_chunk_go_out_together_and_done_drops_what_follows() -> None:
    m, _, _ = machine()
    out = m.feed([b": keep-alive", chunk("a"), b"data: [DONE]", chunk("late")])
    assert out == b": keep-alive\n\n" + chunk("a") + b"\n\ndata: [DONE]\n\n"
    assert m.done
    assert m.text() == "a"
    assert m.close() == b""


def test_the_usage_chunk_sets_tokens_and_is_hidden_unless_asked_for() -> None:
    usage = chunk(usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    hidden, rec, _ = machine(wants_usage=False)
    assert hidden.feed([usage]) == b""
    assert (rec.input_tokens, rec.output_tokens) == (12, 3)
    shown, rec2, _ = machine(wants_usage=True)
    assert shown.feed([usage]) == usage + b"\n\n"
    assert (rec2.input_tokens, rec2.output_tokens) == (12, 3)


def test_a_stream_that_ends_without_done_is_interrupted() -> None:
    """No [DONE] before the upstream ended: an error event for the client, 502 on the record."""
    m, rec, _ = machine()
    m.feed([chunk("bill")])
    tail = m.close()
    error = json.loads(tail.removeprefix(b"data: "))["error"]
    assert error["code"] == "stream_interrupted"
    assert tail.endswith(b"\n\n")
    assert (rec.status, rec.error_code) == (502, "stream_interrupted")


def test_an_invalid_event_ends_the_stream_as_an_invalid_response() -> None:
    m, rec, _ = machine()
    assert m.feed([chunk("a"), b"data: {garbage", chunk("b")]) == chunk("a") + b"\n\n"
    assert m.failed is not None
    assert json.loads(m.close()[6:])["error"]["code"] == "upstream_invalid_response"
    assert rec.status == 502
    assert m.text() == "a"


def test_an_upstream_error_event_is_relayed_redacted_once() -> None:
    """The upstream's error event goes to the client with secrets replaced, and no second
    error event is added at the end."""
    m, rec, _ = machine()
    event = b'data: {"error": {"message": "bad key ' + SECRET.encode() + b'"}}'
    out = m.feed([event, chunk("never")])
    assert SECRET.encode() not in out
    assert b"[redacted]" in out
    assert m.close() == b""
    assert (rec.status, rec.error_code) == (502, "upstream_stream_error")


def test_an_interruption_from_the_transport_keeps_its_kind() -> None:
    """A read timeout under the stream ends it as a 504 timeout, said in the error event."""
    m, rec, _ = machine()
    m.feed([chunk("a")])
    m.interrupt(UpstreamTimeoutError("upstream 'up' timed out", upstream="up"))
    assert json.loads(m.close()[6:])["error"]["code"] == "upstream_timeout"
    assert rec.status == 504
