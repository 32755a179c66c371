"""The answer's model replaced by the route name (gateway.routing.response_model): in place,
byte for byte elsewhere, and a fallback that re-encodes when the scan cannot match."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.routing.response_model import (
    StreamModel,
    encode_model,
    replace_model,
    replace_model_in_event,
)
from gateway.upstream import decode_chunk, decode_completion

ROUTE = encode_model("support-triage")
FT = "ft:gpt-4o-mini:acme:triage:v3"


def body(**extra: object) -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": FT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "model"}}],
            **extra,
        }
    )


def test_the_top_level_model_is_replaced_and_nothing_else_changes() -> None:
    raw = body()
    out = replace_model(raw, decode_completion(raw).model, ROUTE)
    assert out == raw.replace(f'"{FT}"'.encode(), b'"support-triage"')
    assert json.loads(out)["model"] == "support-triage"


@pytest.mark.parametrize(
    "raw",
    [
        # spaced like Python's json.dumps, key order of another server
        json.dumps({"choices": [], "model": FT, "id": "x"}).encode(),
        # a message whose text mentions "model": ... before the real key
        json.dumps(
            {"choices": [{"message": {"content": '"model": "' + FT + '"'}}], "model": FT}
        ).encode(),
        # a string value "model" before the key (role: "model")
        b'{"role": "model", "model" :\n "' + FT.encode() + b'"}',
    ],
)
def test_the_key_is_found_whatever_the_spacing_order_or_text_around(raw: bytes) -> None:
    out = replace_model(raw, json.loads(raw)["model"], ROUTE)
    expected = json.loads(raw)
    expected["model"] = "support-triage"
    assert json.loads(out) == expected


def test_an_escaped_model_id_falls_back_to_re_encoding() -> None:
    """An id written with a JSON escape (\\u002f for '/') cannot be matched as bytes: the
    object is decoded and re-encoded, with the same content."""
    raw = b'{"id": "x", "model": "org\\u002fmodel", "choices": []}'
    out = replace_model(raw, "org/model", ROUTE)
    assert json.loads(out) == {"id": "x", "model": "support-triage", "choices": []}


def test_an_answer_without_model_is_unchanged() -> None:
    raw = b'{"choices": []}'
    assert replace_model(raw, decode_completion(raw).model, ROUTE) is raw


def test_stream_events_are_rewritten_in_place_with_other_lines_kept() -> None:
    data = msgspec.json.encode(
        {"id": "c", "object": "chat.completion.chunk", "model": FT, "choices": []}
    )
    event = b"id: 7\ndata: " + data
    out = replace_model_in_event(event, data, decode_chunk(data).model, ROUTE)
    assert out == b"id: 7\ndata: " + data.replace(FT.encode(), b"support-triage")
    escaped = b'{"model":"a\\u0041","choices":[]}'
    out = replace_model_in_event(b"data: " + escaped, escaped, "aA", ROUTE)
    assert out.startswith(b"data: ")
    assert json.loads(out[6:]) == {"model": "support-triage", "choices": []}
    assert replace_model_in_event(b"data: {}", b"{}", None, ROUTE) == b"data: {}"


def test_a_streams_events_share_one_rewriter() -> None:
    """StreamModel gives the same bytes as replace_model_in_event, for compact events, spaced
    ones, escaped ids, a model that changes mid-stream, and events without a model."""
    rewriter = StreamModel(ROUTE)
    cases = [
        (b'{"id":"c","model":"' + FT.encode() + b'","choices":[]}', FT),
        (b'{"id": "c", "model": "' + FT.encode() + b'", "choices": []}', FT),
        (b'{"model":"other","choices":[]}', "other"),
        (b'{"model":"a\\u0041","choices":[]}', "aA"),
        (b'{"choices":[]}', None),
    ]
    for data, current in cases * 2:
        event = b"data: " + data
        assert rewriter.event(event, data, current) == replace_model_in_event(
            event, data, current, ROUTE
        )
