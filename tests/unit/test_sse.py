"""The SSE relay parser: event splitting, data extraction, chunk and completion decoding."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.upstream.sse import (
    DONE,
    SSEDecoder,
    SSEEventTooLarge,
    decode_chunk,
    decode_completion,
    event_data,
    sse_error_event,
)


def chunk(delta: dict[str, str], finish: str | None = None) -> str:
    """One OpenAI ``chat.completion.chunk`` as the API serialises it (extra fields included)."""
    return json.dumps(
        {
            "id": "chatcmpl-abc",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_1",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }
    )


USAGE_CHUNK = json.dumps(
    {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {"prompt_tokens": 42, "completion_tokens": 2, "total_tokens": 44},
    }
)

EVENTS = [
    "data: " + chunk({"role": "assistant", "content": ""}),
    "data: " + chunk({"content": "bill"}),
    ": keep-alive",
    "data: " + chunk({"content": "ing"}),
    "data: " + chunk({}, finish="stop"),
    "data: " + USAGE_CHUNK,
    "data: [DONE]",
]
STREAM = "".join(e + "\n\n" for e in EVENTS).encode()
EXPECTED = [e.encode() for e in EVENTS]


def feed_all(pieces: list[bytes]) -> tuple[list[bytes], bytes]:
    decoder = SSEDecoder()
    events: list[bytes] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events, decoder.pending


def test_whole_stream_in_one_chunk_gives_every_event_without_separators() -> None:
    """One feed of a complete stream yields each event, without its blank line, nothing left."""
    events, pending = feed_all([STREAM])
    assert events == EXPECTED
    assert pending == b""


def test_byte_by_byte_feeding_gives_the_same_events() -> None:
    """Feeding one byte at a time yields exactly the events of one big feed."""
    events, pending = feed_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert events == EXPECTED
    assert pending == b""


def test_every_two_chunk_split_gives_the_same_events() -> None:
    """Wherever the network cuts the stream in two, the events are the same."""
    for cut in range(len(STREAM) + 1):
        events, pending = feed_all([STREAM[:cut], STREAM[cut:]])
        assert events == EXPECTED, cut
        assert pending == b""


def test_crlf_line_ends_are_normalised_even_when_split_between_cr_and_lf() -> None:
    """A CRLF stream gives the same events as LF, fed whole or one byte at a time."""
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert feed_all([crlf])[0] == EXPECTED
    assert feed_all([crlf[i : i + 1] for i in range(len(crlf))])[0] == EXPECTED
    for cut in range(len(crlf) + 1):
        assert feed_all([crlf[:cut], crlf[cut:]])[0] == EXPECTED, cut


def test_a_cut_stream_leaves_the_partial_event_pending() -> None:
    """An event without its blank line is not emitted; ``pending`` shows its bytes."""
    events, pending = feed_all([b'data: 1\n\ndata: {"partial'])
    assert events == [b"data: 1"]
    assert pending == b'data: {"partial'


def test_extra_blank_lines_do_not_produce_empty_events() -> None:
    """Runs of blank lines between events yield no empty events."""
    events, _ = feed_all([b"data: a\n\n\n\ndata: b\n\n"])
    assert [event_data(e) for e in events] == [b"a", b"b"]
    assert b"" not in events


def test_event_data_of_a_single_data_line_strips_one_space() -> None:
    """``data: x`` gives x; ``data:x`` gives x; only one leading space is removed."""
    assert event_data(b"data: {}") == b"{}"
    assert event_data(b"data:{}") == b"{}"
    assert event_data(b"data:  two") == b" two"
    assert event_data(b"data: [DONE]") == DONE


def test_event_data_joins_multiple_data_lines_with_lf() -> None:
    """Several data lines in one event are joined with LF (the SSE rule)."""
    assert event_data(b"data: first\ndata: second\ndata:third") == b"first\nsecond\nthird"


def test_event_data_ignores_comments_and_other_fields() -> None:
    """Comments (``:``) and event/id/retry lines are skipped; no data line gives None."""
    assert event_data(b": keep-alive") is None
    assert event_data(b"event: ping\nid: 7") is None
    assert event_data(b": comment\nevent: message\nid: 3\ndata: payload\nretry: 10") == b"payload"


def test_decode_chunk_reads_content_finish_reason_and_usage() -> None:
    """A real chunk decodes to its content delta; the final chunks give finish_reason and usage."""
    first = decode_chunk(chunk({"content": "bill"}).encode())
    assert len(first.choices) == 1
    assert first.choices[0].delta is not None
    assert first.choices[0].delta.content == "bill"
    assert first.choices[0].finish_reason is None
    assert first.usage is None
    assert first.error is None

    final = decode_chunk(chunk({}, finish="stop").encode())
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].delta is not None
    assert final.choices[0].delta.content is None

    usage = decode_chunk(USAGE_CHUNK.encode())
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (42, 2)


def test_decode_chunk_exposes_an_error_object() -> None:
    """An in-stream error event (vLLM, OpenAI) is visible as ``error``."""
    view = decode_chunk(b'{"error": {"message": "overloaded", "type": "server_error"}}')
    assert view.error == {"message": "overloaded", "type": "server_error"}
    assert view.choices == []


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b"", b'{"choices": 5}', b'{"choices": [{"delta": "x"}]}', b"<html>502</html>"],
)
def test_decode_chunk_raises_decode_error_on_garbage(garbage: bytes) -> None:
    """Malformed or wrongly-shaped chunk data raises msgspec.DecodeError (the relay's catch)."""
    with pytest.raises(msgspec.DecodeError):
        decode_chunk(garbage)


def test_decode_completion_reads_message_and_usage() -> None:
    """A real non-streaming chat.completion decodes to its content, finish reason and usage."""
    body = json.dumps(
        {
            "id": "chatcmpl-xyz",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "billing", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 1234,
                "completion_tokens": 1,
                "total_tokens": 1235,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
            "system_fingerprint": "fp_1",
        }
    ).encode()
    view = decode_completion(body)
    assert view.choices[0].message is not None
    assert view.choices[0].message.content == "billing"
    assert view.choices[0].finish_reason == "stop"
    assert view.usage is not None
    assert (view.usage.prompt_tokens, view.usage.completion_tokens) == (1234, 1)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{", b"[]", b"{}", b'{"choices": null}', b"upstream connect error or disconnect"],
)
def test_decode_completion_raises_decode_error_on_garbage(garbage: bytes) -> None:
    """Non-JSON, a non-object, or a body without a choices list raises msgspec.DecodeError."""
    with pytest.raises(msgspec.DecodeError):
        decode_completion(garbage)


def test_sse_error_event_is_one_event_with_the_openai_envelope() -> None:
    """The error event parses as one SSE event whose data is OpenAI's error envelope, even when
    the message has quotes and newlines."""
    message = 'upstream "sim" failed\nmid-stream'
    raw = sse_error_event(message, "upstream_stream_error")
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"\n\n")
    events = SSEDecoder().feed(raw)
    assert len(events) == 1
    data = event_data(events[0])
    assert data is not None
    assert json.loads(data) == {
        "error": {
            "message": message,
            "type": "upstream_error",
            "param": None,
            "code": "upstream_stream_error",
        }
    }
    assert decode_chunk(data).error is not None


def test_sse_error_event_takes_a_custom_type() -> None:
    """The error_type argument becomes error.type."""
    data = event_data(sse_error_event("slow down", "rate_limited", "rate_limit_error").rstrip())
    assert data is not None
    assert json.loads(data)["error"]["type"] == "rate_limit_error"


def test_a_large_event_fed_in_small_chunks_is_scanned_in_linear_work() -> None:
    """A 16 MiB event arriving in 1 KiB chunks is searched for its end about once per byte, not
    once per byte per chunk (the old decoder re-scanned the whole buffer: ~8 GiB of work)."""
    payload = b"data: " + b"x" * (16 * 1024 * 1024) + b"\n\n"
    decoder = SSEDecoder()
    events: list[bytes] = []
    step = 1024
    for i in range(0, len(payload), step):
        events.extend(decoder.feed(payload[i : i + step]))
    assert [len(e) for e in events] == [len(payload) - 2]
    assert decoder.pending == b""
    chunks = -(-len(payload) // step)
    assert decoder.scanned <= len(payload) + chunks  # one byte of overlap per chunk at most


def test_many_small_events_in_one_chunk_are_each_scanned_once() -> None:
    """Ten thousand events in one chunk: the scan covers the chunk once."""
    data = b"data: {}\n\n" * 10_000
    decoder = SSEDecoder()
    assert len(decoder.feed(data)) == 10_000
    assert decoder.scanned <= len(data)


def test_an_event_larger_than_the_cap_raises_even_before_it_is_complete() -> None:
    """A partial event past ``max_event_bytes`` raises at once: the relay need not wait for a
    blank line that may never come."""
    decoder = SSEDecoder(max_event_bytes=1000)
    assert decoder.feed(b"data: " + b"x" * 900) == []
    with pytest.raises(SSEEventTooLarge) as info:
        decoder.feed(b"x" * 200)
    assert info.value.limit == 1000


def test_a_complete_event_larger_than_the_cap_raises_and_smaller_ones_pass() -> None:
    """Events up to the cap pass; one complete event past it in the same chunk raises."""
    decoder = SSEDecoder(max_event_bytes=100)
    assert decoder.feed(b"data: " + b"y" * 94 + b"\n\n") == [b"data: " + b"y" * 94]
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"data: ok\n\ndata: " + b"z" * 200 + b"\n\ndata: next")
