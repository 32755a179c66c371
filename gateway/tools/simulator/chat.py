"""``POST /v1/chat/completions``: the simulated model answering, streamed or not.

Per request: check the key (401), decode and minimally validate the body (400), wait
``latency_ms``, then ``plan_outcome`` decides between an answer, an injected error and
garbage, and ``plan_tool_call`` whether an answer to a request with ``tools`` is a tool call
(its arguments streamed in ``stream_chunks`` pieces, like OpenAI's deltas).
Streams are SSE (``text/event-stream``) ending in ``data: [DONE]``, unless
``cut_stream_after`` makes the generator raise ``SimulatedStreamCut`` so the server drops the
connection in the middle of the chunked body.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.tools.simulator import responses
from gateway.tools.simulator.behaviour import ModelBehaviour
from gateway.tools.simulator.outcome import plan_outcome
from gateway.tools.simulator.state import ModelStats, SimulatorState
from gateway.tools.simulator.tool_calls import PlannedToolCall, call_id, plan_tool_call

__all__ = [
    "ChatRequest",
    "SimulatedStreamCut",
    "authorized",
    "chat_completions",
    "simulator_state",
]

_JSON = "application/json"


class SimulatedStreamCut(Exception):
    """Raised inside a streaming body on purpose so the server aborts the connection."""


class ChatRequest(msgspec.Struct, kw_only=True):
    """The part of a Chat Completions request the simulator reads; other fields are ignored."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


def simulator_state(request: Request[Any, Any, Any]) -> SimulatorState:
    """The ``SimulatorState`` that ``create_simulator_app`` put on ``app.state.simulator``."""
    state: SimulatorState = request.app.state.simulator
    return state


def _error(status: int, message: str | None = None, *, code: str | None = None) -> Response[bytes]:
    headers = {"retry-after": "1"} if status == 429 else None
    return Response(
        responses.error_body(status, message, code=code),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


def authorized(state: SimulatorState, request: Request[Any, Any, Any]) -> bool:
    """True when no key is configured or the request bears ``Authorization: Bearer <key>``."""
    expected = state.config.api_key
    if expected is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())


async def _pause(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


async def _stream_body(
    *,
    behaviour: ModelBehaviour,
    stats: ModelStats,
    builder: responses.ChunkBuilder,
    content: str,
    usage_obj: dict[str, int],
    garbage: bool,
    tool_call: PlannedToolCall | None = None,
) -> AsyncIterator[bytes]:
    """Yield the SSE events of one stream and keep the stream counters.

    A stream that neither reaches ``[DONE]`` nor is cut on purpose counts as disconnected:
    the client went away (the server cancels this generator or closes it unfinished).

    Raises:
        SimulatedStreamCut: when ``behaviour.cut_stream_after`` is set.
    """
    stats.streams_started += 1
    ended = False
    delay = behaviour.chunk_delay_ms
    cut_after = behaviour.cut_stream_after
    try:
        yield builder.role_chunk()
        if garbage:
            await _pause(delay)
            yield responses.SSE_GARBAGE
        else:
            pieces = responses.split_content(
                tool_call.arguments if tool_call else content, behaviour.stream_chunks
            )
            if tool_call is not None:
                yield builder.tool_call_start(call_id(), tool_call.name)
            for index, piece in enumerate(pieces):
                if cut_after is not None and index >= cut_after:
                    break
                await _pause(delay)
                if tool_call is not None:
                    yield builder.tool_call_arguments(piece)
                else:
                    yield builder.content_chunk(piece)
            if cut_after is not None:
                ended = True
                stats.streams_cut += 1
                raise SimulatedStreamCut(f"stream cut after {cut_after} content chunks")
            await _pause(delay)
            yield builder.finish_chunk("tool_calls" if tool_call else "stop")
            if builder.include_usage:
                yield builder.usage_chunk(usage_obj)
                stats.prompt_tokens += usage_obj["prompt_tokens"]
                stats.completion_tokens += usage_obj["completion_tokens"]
        yield responses.SSE_DONE
        ended = True
        stats.streams_completed += 1
    finally:
        if not ended:
            stats.streams_disconnected += 1


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answer a chat completion like the requested model's ``ModelBehaviour`` says.

    Errors: 401 ``invalid_api_key`` without the configured key; 400 ``invalid_request_error``
    when the body is not a JSON object with a non-empty ``model`` string and a non-empty
    ``messages`` list of objects; injected statuses as configured.
    """
    state = simulator_state(request)
    if not authorized(state, request):
        return _error(401)
    try:
        chat = msgspec.json.decode(await request.body(), type=ChatRequest)
    except msgspec.DecodeError as exc:
        return _error(400, f"Invalid request body: {exc}")
    behaviour = state.behaviour_for(chat.model)
    stats = state.stats_for(chat.model)
    stats.requests += 1
    outcome = plan_outcome(behaviour, chat.messages, state.rng)
    await _pause(behaviour.latency_ms)
    if outcome.kind == "error":
        stats.errors_injected += 1
        return _error(outcome.status)
    garbage = outcome.kind == "garbage"
    if garbage:
        stats.garbage_injected += 1
    tool_call = plan_tool_call(behaviour, chat.tools, chat.tool_choice, outcome.content, state.rng)
    answered = tool_call.name + tool_call.arguments if tool_call else outcome.content
    usage_obj = responses.usage(
        responses.count_prompt_tokens(chat.messages),
        responses.count_completion_tokens(answered),
    )
    id_, created = responses.completion_id(), responses.now()
    if chat.stream:
        options = chat.stream_options or {}
        builder = responses.ChunkBuilder(
            model=chat.model,
            include_usage=options.get("include_usage") is True,
            id_=id_,
            created=created,
        )
        body = _stream_body(
            behaviour=behaviour,
            stats=stats,
            builder=builder,
            content=outcome.content,
            usage_obj=usage_obj,
            garbage=garbage,
            tool_call=tool_call,
        )
        return Stream(
            body,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    if garbage:
        return Response(responses.GARBAGE_BODY, media_type=_JSON)
    stats.prompt_tokens += usage_obj["prompt_tokens"]
    stats.completion_tokens += usage_obj["completion_tokens"]
    if tool_call is not None:
        payload = responses.tool_call_completion(
            model=chat.model,
            call_id=call_id(),
            name=tool_call.name,
            arguments=tool_call.arguments,
            usage_obj=usage_obj,
            id_=id_,
            created=created,
        )
    else:
        payload = responses.chat_completion(
            model=chat.model,
            content=outcome.content,
            usage_obj=usage_obj,
            id_=id_,
            created=created,
        )
    return Response(payload, media_type=_JSON)
