"""parse_chat_request: the request validation the relay does before routing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.relay import MAX_JSON_DEPTH, parse_chat_request

MESSAGES = [{"role": "user", "content": "my invoice is wrong"}]


def raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_valid_request_returns_the_whole_body_and_its_head() -> None:
    """A valid body comes back whole (unknown fields kept for forwarding) with the typed head."""
    body, head = parse_chat_request(
        raw(
            model="support-triage",
            messages=MESSAGES,
            stream=True,
            user="u-1",
            stream_options={"include_usage": True},
            temperature=0.2,
            tools=[],
        )
    )
    assert body["temperature"] == 0.2
    assert body["tools"] == []
    assert body["messages"] == MESSAGES
    assert head.model == "support-triage"
    assert [m.role for m in head.messages] == ["user"]
    assert head.stream is True
    assert head.user == "u-1"
    assert head.stream_options is not None
    assert head.stream_options.include_usage is True


def test_optional_fields_default_to_non_streaming_without_user() -> None:
    """stream defaults to false; user and stream_options to None."""
    _, head = parse_chat_request(raw(model="m", messages=MESSAGES))
    assert head.stream is False
    assert head.user is None
    assert head.stream_options is None


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"model": "m",}', b"\xff\xfe"])
def test_malformed_json_is_a_400_without_param(body: bytes) -> None:
    """A body that is not JSON is InvalidRequestError (400) saying the JSON could not be parsed."""
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    assert info.value.status_code == 400
    assert info.value.param is None
    assert "parse the JSON body" in info.value.message


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_rejected(body: bytes) -> None:
    """JSON arrays, strings, numbers and null are rejected as not an object."""
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body)
    assert "JSON object" in info.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": 1, "messages": MESSAGES}, "model"),
        ({"model": "m", "messages": "hello"}, "messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages"),
        ({"model": "m", "messages": [{"role": 5}]}, "messages"),
        ({"model": "m", "messages": ["hello"]}, "messages"),
        ({"model": "m", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": MESSAGES, "user": 7}, "user"),
        (
            {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": 1}},
            "stream_options",
        ),
    ],
)
def test_wrong_types_name_the_top_level_field_in_param(fields: dict[str, Any], param: str) -> None:
    """A field of the wrong type (also nested inside it) is a 400 whose param is the field."""
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(raw(**fields))
    assert info.value.param == param
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"messages": MESSAGES}, "model"), ({"model": "m"}, "messages")],
)
def test_missing_required_field_is_named_in_param(fields: dict[str, Any], param: str) -> None:
    """A missing model or messages is a 400 whose param names the missing field."""
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(raw(**fields))
    assert info.value.param == param
    assert param in info.value.message


def test_empty_messages_is_rejected_with_param_messages() -> None:
    """An empty messages list is a 400 with param messages (OpenAI's wording)."""
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(raw(model="m", messages=[]))
    assert info.value.param == "messages"
    assert "empty array" in info.value.message


def nested(depth: int) -> str:
    """A JSON value of ``depth`` levels: arrays inside arrays, with an object in the middle."""
    half = depth // 2
    return (
        "[" * half
        + '{"k": '
        + "[" * (depth - half - 1)
        + "1"
        + "]" * (depth - half - 1)
        + "}"
        + "]" * half
    )


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_a_body_nested_deeper_than_the_limit_is_a_400(depth: int) -> None:
    """Deep nesting anywhere in the body (here a forwarded field) is a 400 saying so, never
    a RecursionError: 1,000 levels used to escape as a 500."""
    body = f'{{"model": "m", "messages": {json.dumps(MESSAGES)}, "extra": {nested(depth)}}}'
    with pytest.raises(InvalidRequestError) as info:
        parse_chat_request(body.encode())
    assert info.value.status_code == 400
    assert "nested too deeply" in info.value.message


def test_a_body_nested_exactly_to_the_limit_is_accepted() -> None:
    """The body object itself is level 1: a value of MAX_JSON_DEPTH - 1 levels inside it fits."""
    value = nested(MAX_JSON_DEPTH - 1)
    body = f'{{"model": "m", "messages": {json.dumps(MESSAGES)}, "extra": {value}}}'
    parsed, _ = parse_chat_request(body.encode())
    assert "extra" in parsed
