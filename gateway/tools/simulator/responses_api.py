"""``POST /v1/responses``: the simulated model answering OpenAI's Responses API, streamed or not.

The same model behaviour as chat completions (``gateway.tools.simulator.chat``): the request's
``instructions`` and ``input`` are read as chat messages (``instructions`` as a system message,
a string ``input`` as one user message, list items with a ``role`` as messages whose text is
their ``input_text``/``output_text`` parts), then ``plan_outcome`` decides between an answer, an
injected error and garbage, and the tokens are counted as for chat.

Shapes follow OpenAI's Responses API (the ``Response`` object and its streaming events in
OpenAI's OpenAPI spec): one ``message`` output item with one ``output_text`` part. A stream is
``event: <type>`` / ``data: <json>`` pairs: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per piece (``stream_chunks``), ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, ``response.completed`` (with the
usage); no ``[DONE]``. ``cut_stream_after`` drops the connection after that many deltas;
garbage is a ``data:`` line that is not JSON.

A request offering function ``tools`` (the Responses API's flat ``{"type": "function", "name",
"parameters"}``) may be answered with a call instead, exactly as chat decides it
(:func:`~gateway.tools.simulator.tool_calls.plan_tool_call`: ``tool_call_rate``,
``wrong_tool_rate``, ``bad_arguments_rate``, ``tool_choice``): one ``function_call`` output item
(``call_id``, ``name``, ``arguments``). Streamed: ``response.output_item.added`` (the item with
empty ``arguments``), one ``response.function_call_arguments.delta`` per piece,
``response.function_call_arguments.done``, ``response.output_item.done``,
``response.completed``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.tools.simulator import responses
from gateway.tools.simulator.behaviour import ModelBehaviour
from gateway.tools.simulator.chat import (
    SimulatedStreamCut,
    authorized,
    simulator_state,
)
from gateway.tools.simulator.outcome import plan_outcome
from gateway.tools.simulator.state import ModelStats
from gateway.tools.simulator.tool_calls import PlannedToolCall, call_id, plan_tool_call

__all__ = [
    "ResponsesRequest",
    "as_chat_tools",
    "as_messages",
    "create_response",
    "function_call_item",
    "response_object",
]

_JSON = "application/json"
GARBAGE_BODY = b'{"id": "resp_garbage", "object": "response", "output": [<html>oops'


class ResponsesRequest(msgspec.Struct, kw_only=True):
    """The part of a Responses API request the simulator reads; other fields are ignored."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: str | list[Any]
    instructions: str | None = None
    stream: bool | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


def as_chat_tools(tools: list[Any] | None, tool_choice: Any) -> tuple[list[Any] | None, Any]:
    """The Responses API's ``tools`` and ``tool_choice`` in chat completions' shapes
    (``{"type": "function", "function": {...}}``; a named choice
    ``{"type": "function", "function": {"name": ...}}``), for ``plan_tool_call``."""
    if tools is not None:
        tools = [
            {"type": "function", "function": tool}
            if isinstance(tool, dict) and tool.get("type") == "function" and "function" not in tool
            else tool
            for tool in tools
        ]
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("name"), str):
        tool_choice = {"type": "function", "function": {"name": tool_choice["name"]}}
    return tools, tool_choice


def function_call_item(
    item_id: str, call: PlannedToolCall, call_id_: str, arguments: str, status: str
) -> dict[str, Any]:
    """A ``function_call`` output item (``arguments``: what has been written so far)."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id_,
        "name": call.name,
        "arguments": arguments,
    }


def as_messages(request: ResponsesRequest) -> list[dict[str, Any]]:
    """The request as chat messages (see the module docstring); items without a ``role``
    (tool outputs, references) are left out."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
        return messages
    for item in request.input:
        if isinstance(item, Mapping) and isinstance(item.get("role"), str):
            messages.append({"role": item["role"], "content": item.get("content")})
    return messages


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _message(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def response_object(
    *,
    id_: str,
    item_id: str,
    created_at: int,
    model: str,
    instructions: str | None,
    text: str | None,
    usage_obj: dict[str, Any] | None,
    call: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object: ``completed`` with the ``function_call`` item ``call`` when given,
    else with one message when ``text`` is given, else ``in_progress`` with no output (the
    stream's first events)."""
    if call is not None:
        output = [call]
    else:
        output = [] if text is None else [_message(item_id, text, "completed")]
    return {
        "id": id_,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress" if not output else "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage_obj,
        "metadata": {},
    }


def _event(kind: str, sequence: int, fields: dict[str, Any]) -> bytes:
    payload = {"type": kind, "sequence_number": sequence, **fields}
    return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"


async def _stream_body(
    *,
    behaviour: ModelBehaviour,
    stats: ModelStats,
    base: dict[str, Any],
    content: str,
    usage_obj: dict[str, Any],
    garbage: bool,
    call: PlannedToolCall | None = None,
) -> AsyncIterator[bytes]:
    """Yield the events of one Responses stream and keep the stream counters (as chat's).

    Raises:
        SimulatedStreamCut: when ``behaviour.cut_stream_after`` is set.
    """
    stats.streams_started += 1
    ended = False
    pending = response_object(**base, text=None, usage_obj=None)
    seq = 0
    try:
        yield _event("response.created", seq, {"response": pending})
        seq += 1
        yield _event("response.in_progress", seq, {"response": pending})
        if garbage:
            await _pause(behaviour.chunk_delay_ms)
            yield responses.SSE_GARBAGE
            ended = True
            stats.streams_completed += 1
            return
        if call is not None:
            async for event in _call_events(behaviour, base, call, usage_obj, seq):
                yield event
        else:
            async for event in _text_events(behaviour, base, content, usage_obj, seq):
                yield event
        stats.prompt_tokens += usage_obj["input_tokens"]
        stats.completion_tokens += usage_obj["output_tokens"]
        ended = True
        stats.streams_completed += 1
    except SimulatedStreamCut:
        ended = True
        stats.streams_cut += 1
        raise
    finally:
        if not ended:
            stats.streams_disconnected += 1


async def _call_events(
    behaviour: ModelBehaviour,
    base: dict[str, Any],
    call: PlannedToolCall,
    usage_obj: dict[str, Any],
    seq: int,
) -> AsyncIterator[bytes]:
    """The events of a streamed function call, after ``response.in_progress`` (``seq``)."""
    delay, cut_after = behaviour.chunk_delay_ms, behaviour.cut_stream_after
    item_id, call_id_ = base["item_id"], call_id()
    at = {"output_index": 0, "item_id": item_id}
    seq += 1
    added = function_call_item(item_id, call, call_id_, "", "in_progress")
    yield _event("response.output_item.added", seq, {"output_index": 0, "item": added})
    for index, piece in enumerate(responses.split_content(call.arguments, behaviour.stream_chunks)):
        if cut_after is not None and index >= cut_after:
            break
        await _pause(delay)
        seq += 1
        yield _event("response.function_call_arguments.delta", seq, {**at, "delta": piece})
    if cut_after is not None:
        raise SimulatedStreamCut(f"stream cut after {cut_after} argument deltas")
    await _pause(delay)
    seq += 1
    yield _event("response.function_call_arguments.done", seq, {**at, "arguments": call.arguments})
    done = function_call_item(item_id, call, call_id_, call.arguments, "completed")
    seq += 1
    yield _event("response.output_item.done", seq, {"output_index": 0, "item": done})
    seq += 1
    finished = response_object(**base, text=None, usage_obj=usage_obj, call=done)
    yield _event("response.completed", seq, {"response": finished})


async def _text_events(
    behaviour: ModelBehaviour,
    base: dict[str, Any],
    content: str,
    usage_obj: dict[str, Any],
    seq: int,
) -> AsyncIterator[bytes]:
    """The events of a streamed text answer, after ``response.in_progress`` (``seq``)."""
    delay, cut_after = behaviour.chunk_delay_ms, behaviour.cut_stream_after
    item_id = base["item_id"]
    at = {"output_index": 0, "item_id": item_id}
    part = {"type": "output_text", "text": "", "annotations": []}
    seq += 1
    yield _event(
        "response.output_item.added",
        seq,
        {"output_index": 0, "item": {**_message(item_id, "", "in_progress"), "content": []}},
    )
    seq += 1
    yield _event("response.content_part.added", seq, {**at, "content_index": 0, "part": part})
    for index, piece in enumerate(responses.split_content(content, behaviour.stream_chunks)):
        if cut_after is not None and index >= cut_after:
            break
        await _pause(delay)
        seq += 1
        yield _event(
            "response.output_text.delta",
            seq,
            {**at, "content_index": 0, "delta": piece, "logprobs": []},
        )
    if cut_after is not None:
        raise SimulatedStreamCut(f"stream cut after {cut_after} text deltas")
    await _pause(delay)
    seq += 1
    yield _event(
        "response.output_text.done",
        seq,
        {**at, "content_index": 0, "text": content, "logprobs": []},
    )
    seq += 1
    yield _event(
        "response.content_part.done",
        seq,
        {**at, "content_index": 0, "part": {**part, "text": content}},
    )
    seq += 1
    yield _event(
        "response.output_item.done",
        seq,
        {"output_index": 0, "item": _message(item_id, content, "completed")},
    )
    seq += 1
    done = response_object(**base, text=content, usage_obj=usage_obj)
    yield _event("response.completed", seq, {"response": done})


async def _pause(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


def _error(status: int, message: str | None = None, *, param: str | None = None) -> Response[bytes]:
    headers = {"retry-after": "1"} if status == 429 else None
    return Response(
        responses.error_body(status, message, param=param),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


@post("/v1/responses", status_code=200)
async def create_response(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answer a Responses API request like the requested model's ``ModelBehaviour`` says.

    Errors: 401 ``invalid_api_key`` without the configured key; 400 ``invalid_request_error``
    when the body is not a JSON object with a non-empty ``model`` string and an ``input``
    string or list; injected statuses as configured.
    """
    state = simulator_state(request)
    if not authorized(state, request):
        return _error(401)
    try:
        parsed = msgspec.json.decode(await request.body(), type=ResponsesRequest)
    except msgspec.DecodeError as exc:
        return _error(400, f"Invalid request body: {exc}")
    messages = as_messages(parsed)
    behaviour = state.behaviour_for(parsed.model)
    stats = state.stats_for(parsed.model)
    stats.requests += 1
    outcome = plan_outcome(behaviour, messages, state.rng)
    await _pause(behaviour.latency_ms)
    if outcome.kind == "error":
        stats.errors_injected += 1
        return _error(outcome.status)
    garbage = outcome.kind == "garbage"
    if garbage:
        stats.garbage_injected += 1
    tools, tool_choice = as_chat_tools(parsed.tools, parsed.tool_choice)
    call = plan_tool_call(behaviour, tools, tool_choice, outcome.content, state.rng)
    answered = call.name + call.arguments if call else outcome.content
    usage_obj = _usage(
        responses.count_prompt_tokens(messages),
        responses.count_completion_tokens(answered),
    )
    base: dict[str, Any] = {
        "id_": f"resp_{uuid.uuid4().hex}",
        "item_id": f"{'fc' if call else 'msg'}_{uuid.uuid4().hex}",
        "created_at": responses.now(),
        "model": parsed.model,
        "instructions": parsed.instructions,
    }
    if parsed.stream:
        body = _stream_body(
            behaviour=behaviour,
            stats=stats,
            base=base,
            content=outcome.content,
            usage_obj=usage_obj,
            garbage=garbage,
            call=call,
        )
        return Stream(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    if garbage:
        return Response(GARBAGE_BODY, media_type=_JSON)
    stats.prompt_tokens += usage_obj["input_tokens"]
    stats.completion_tokens += usage_obj["output_tokens"]
    item = None
    if call is not None:
        item = function_call_item(base["item_id"], call, call_id(), call.arguments, "completed")
    payload = response_object(**base, text=outcome.content, usage_obj=usage_obj, call=item)
    return Response(msgspec.json.encode(payload), media_type=_JSON)
