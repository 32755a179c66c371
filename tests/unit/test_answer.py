"""Answers as the contract sees them (gateway.quality.answer): read from a unary message, and
assembled from stream deltas whose tool calls arrive in pieces by index."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.quality.answer import Answer, AnswerAssembler, ToolCall, answer_from_message
from gateway.upstream import decode_chunk, decode_completion

CALL = ToolCall("lookup_order", '{"order_id": "A-17", "note": "ünï \\"q\\""}')


def completion(message: dict[str, object]) -> bytes:
    return msgspec.json.encode({"choices": [{"index": 0, "message": message}]})


def test_a_unary_message_with_tool_calls_has_them_in_order_and_no_text() -> None:
    """content null and two tool calls: text None, both calls with name and arguments."""
    body = completion(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": '{"x":1}'}},
            ],
        }
    )
    answer = answer_from_message(decode_completion(body).choices[0].message)
    assert answer == Answer(None, (ToolCall("a", "{}"), ToolCall("b", '{"x":1}')))
    assert not answer.has_text


def test_a_unary_text_message_and_a_refusal() -> None:
    """Plain content is the text; a structured-output refusal is kept apart from it."""
    text = decode_completion(completion({"role": "assistant", "content": "billing"}))
    assert answer_from_message(text.choices[0].message) == Answer("billing")
    refused = decode_completion(
        completion({"role": "assistant", "content": None, "refusal": "I can't help."})
    )
    assert answer_from_message(refused.choices[0].message) == Answer(None, (), "I can't help.")
    assert answer_from_message(None) is None


def test_a_tool_call_of_another_type_has_no_name() -> None:
    """A tool call without a function keeps its place with an empty name and arguments."""
    body = completion({"role": "assistant", "tool_calls": [{"id": "c", "type": "custom"}]})
    answer = answer_from_message(decode_completion(body).choices[0].message)
    assert answer == Answer(None, (ToolCall("", ""),))


def chunk(delta: dict[str, object]) -> bytes:
    return msgspec.json.encode({"choices": [{"index": 0, "delta": delta}]})


def feed(assembler: AnswerAssembler, data: bytes) -> None:
    """What the relay does with choice 0 of each chunk."""
    for choice in decode_chunk(data).choices:
        delta = choice.delta
        if delta is None:
            continue
        if delta.content:
            assembler.text(delta.content)
        if delta.refusal:
            assembler.refusal(delta.refusal)
        if delta.tool_calls:
            assembler.tool_calls(delta.tool_calls)


def tool_call_chunks(calls: list[ToolCall], size: int) -> list[bytes]:
    """OpenAI's shape: the first piece of each call has id, type and name with empty
    arguments; then the arguments in pieces of ``size`` characters, calls interleaved."""
    chunks = [chunk({"role": "assistant", "content": None})]
    for index, call in enumerate(calls):
        first = {"index": index, "id": f"call_{index}", "type": "function"}
        chunks.append(
            chunk({"tool_calls": [{**first, "function": {"name": call.name, "arguments": ""}}]})
        )
    pieces = [
        [call.arguments[i : i + size] for i in range(0, len(call.arguments), size)]
        for call in calls
    ]
    for step in range(max(len(p) for p in pieces)):
        parts = [
            {"index": index, "function": {"arguments": p[step]}}
            for index, p in enumerate(pieces)
            if step < len(p)
        ]
        chunks.append(chunk({"tool_calls": parts}))
    last = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    chunks.append(msgspec.json.encode({"choices": [last]}))
    return chunks


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_streamed_tool_calls_are_assembled_from_split_arguments(size: int) -> None:
    """Arguments split after every 1, 2, 3, 7 characters (inside escapes and multi-byte
    characters) or not at all, two calls interleaved: the same calls as a unary answer."""
    calls = [CALL, ToolCall("escalate", '{"reason": "angry customer", "level": 2}')]
    assembler = AnswerAssembler()
    for data in tool_call_chunks(calls, size):
        feed(assembler, data)
    answer = assembler.answer()
    assert answer == Answer(None, tuple(calls))
    assert json.loads(answer.tool_calls[0].arguments)["note"] == 'ünï "q"'


def test_pieces_out_of_index_order_are_returned_by_index() -> None:
    """Calls come back in index order, whatever order their pieces arrived in; a name sent
    again with a later piece does not double it."""
    assembler = AnswerAssembler()
    for index, name, arguments in ((1, "b", "{"), (0, "a", "{}"), (1, "b", "}")):
        part = {"index": index, "function": {"name": name, "arguments": arguments}}
        feed(assembler, chunk({"tool_calls": [part]}))
    assert assembler.answer().tool_calls == (ToolCall("a", "{}"), ToolCall("b", "{}"))


def test_streamed_text_and_refusal() -> None:
    """Text pieces join; no content at all but a refusal gives text None like a unary one;
    a stream with no pieces at all is an empty text."""
    assembler = AnswerAssembler()
    for piece in ("bil", "", "ling"):
        feed(assembler, chunk({"content": piece}))
    assert assembler.answer() == Answer("billing")
    assert assembler.text_so_far == "billing"
    refused = AnswerAssembler()
    for piece in ("I can", "'t."):
        feed(refused, chunk({"refusal": piece}))
    assert refused.answer() == Answer(None, (), "I can't.")
    assert AnswerAssembler().answer() == Answer("")


def test_text_and_tool_calls_in_one_answer() -> None:
    """Some models say something and then call: both are kept."""
    assembler = AnswerAssembler()
    feed(assembler, chunk({"content": "Let me look."}))
    for data in tool_call_chunks([CALL], 5):
        feed(assembler, data)
    assert assembler.answer() == Answer("Let me look.", (CALL,))
