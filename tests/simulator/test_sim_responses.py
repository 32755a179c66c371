"""Token counting, content splitting and OpenAI error envelopes of the simulator."""

from __future__ import annotations

import msgspec
import pytest

from gateway.tools.simulator.responses import (
    ChunkBuilder,
    completion_id,
    count_completion_tokens,
    count_prompt_tokens,
    error_body,
    split_content,
    sse_event,
)


def test_prompt_tokens_are_a_quarter_of_characters_plus_framing() -> None:
    messages = [{"role": "system", "content": "x" * 8}, {"role": "user", "content": "y" * 5}]
    # (2 + 4) + (2 + 4) + 3
    assert count_prompt_tokens(messages) == 15


def test_completion_tokens_are_at_least_one() -> None:
    assert count_completion_tokens("") == 1
    assert count_completion_tokens("billing") == 2


@pytest.mark.parametrize(("content", "chunks"), [("billing", 4), ("billing", 20), ("abc", 1)])
def test_split_content_gives_exactly_the_requested_chunk_count(content: str, chunks: int) -> None:
    pieces = split_content(content, chunks)
    assert len(pieces) == chunks
    assert "".join(pieces) == content
    sizes = [len(p) for p in pieces]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_completion_id_looks_like_openai() -> None:
    assert completion_id().startswith("chatcmpl-")
    assert completion_id() != completion_id()


def test_sse_event_frames_json_as_a_data_line() -> None:
    assert sse_event({"a": 1}) == b'data: {"a":1}\n\n'


def test_chunks_carry_null_usage_only_when_usage_was_asked_for() -> None:
    with_usage = ChunkBuilder(model="m", include_usage=True, id_="chatcmpl-1", created=1)
    without = ChunkBuilder(model="m", include_usage=False, id_="chatcmpl-1", created=1)
    assert msgspec.json.decode(with_usage.content_chunk("x")[6:])["usage"] is None
    assert "usage" not in msgspec.json.decode(without.content_chunk("x")[6:])


@pytest.mark.parametrize(
    ("status", "err_type", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (429, "requests", "rate_limit_exceeded"),
        (500, "server_error", None),
        (418, "invalid_request_error", None),
        (599, "server_error", None),
    ],
)
def test_error_body_is_openais_envelope(status: int, err_type: str, code: str | None) -> None:
    error = msgspec.json.decode(error_body(status))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (err_type, code, None)
    assert error["message"]
