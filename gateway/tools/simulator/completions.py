"""``POST /v1/completions``: OpenAI's legacy Completions API, streamed or not.

Shapes follow OpenAI's ``CreateCompletionRequest`` / ``CreateCompletionResponse`` (object
``text_completion``, ``choices[].text``). ``prompt`` is a string, a list of strings, a list of
token ids or a list of token-id lists; the simulated model answers the first prompt as chat
answers its last user message (a label in ``classify`` mode, the prompt itself in ``echo``
mode), with the same behaviour: latency, injected errors, garbage, chunking and cut streams.

Usage: ``prompt_tokens`` counts each text prompt as ``ceil(len / 4)`` and a token-id prompt as
its length; ``completion_tokens`` as chat does. A stream sends the text in ``stream_chunks``
events, then one with ``finish_reason: "stop"``, then (with ``stream_options.include_usage``)
a usage event with ``"choices": []``, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from gateway.tools.simulator import responses
from gateway.tools.simulator.behaviour import ModelBehaviour
from gateway.tools.simulator.chat import SimulatedStreamCut, authorized, simulator_state
from gateway.tools.simulator.embeddings import InvalidInput, inputs_of
from gateway.tools.simulator.outcome import plan_outcome
from gateway.tools.simulator.state import ModelStats

__all__ = ["TextChunks", "completions"]

_JSON = "application/json"


class _CompletionRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: Any = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


class TextChunks:
    """Builds the ``text_completion`` events of one stream (shared id, created, model)."""

    __slots__ = ("_base", "include_usage")

    def __init__(self, *, model: str, include_usage: bool, id_: str, created: int) -> None:
        self.include_usage = include_usage
        self._base: dict[str, Any] = {
            "id": id_,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": responses.SYSTEM_FINGERPRINT,
        }

    def text(self, piece: str, finish_reason: str | None = None) -> bytes:
        """One event with ``choices[0].text == piece``."""
        payload = dict(self._base)
        payload["choices"] = [
            {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            payload["usage"] = None
        return responses.sse_event(payload)

    def usage(self, usage_obj: dict[str, int]) -> bytes:
        """The extra usage event: ``"choices": []`` and the ``usage`` object."""
        payload = dict(self._base)
        payload["choices"] = []
        payload["usage"] = usage_obj
        return responses.sse_event(payload)


def _error(status: int, message: str | None = None, param: str | None = None) -> Response[bytes]:
    headers = {"retry-after": "1"} if status == 429 else None
    return Response(
        responses.error_body(status, message, param=param),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


async def _pause(milliseconds: float) -> None:
    if milliseconds > 0:
        await asyncio.sleep(milliseconds / 1000)


async def _stream(
    behaviour: ModelBehaviour,
    stats: ModelStats,
    chunks: TextChunks,
    content: str,
    usage_obj: dict[str, int],
    garbage: bool,
) -> AsyncIterator[bytes]:
    """The SSE events of one stream; counters as chat's (``SimulatedStreamCut`` on purpose)."""
    stats.streams_started += 1
    ended = False
    cut_after = behaviour.cut_stream_after
    try:
        if garbage:
            await _pause(behaviour.chunk_delay_ms)
            yield responses.SSE_GARBAGE
        else:
            for index, piece in enumerate(
                responses.split_content(content, behaviour.stream_chunks)
            ):
                if cut_after is not None and index >= cut_after:
                    break
                await _pause(behaviour.chunk_delay_ms)
                yield chunks.text(piece)
            if cut_after is not None:
                ended = True
                stats.streams_cut += 1
                raise SimulatedStreamCut(f"stream cut after {cut_after} content chunks")
            await _pause(behaviour.chunk_delay_ms)
            yield chunks.text("", "stop")
            if chunks.include_usage:
                yield chunks.usage(usage_obj)
                stats.prompt_tokens += usage_obj["prompt_tokens"]
                stats.completion_tokens += usage_obj["completion_tokens"]
        yield responses.SSE_DONE
        ended = True
        stats.streams_completed += 1
    finally:
        if not ended:
            stats.streams_disconnected += 1


@post("/v1/completions", status_code=200)
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Answer a legacy completion (see the module docstring).

    Errors: 401 without the configured key; 400 (``param`` set) for a body that is not JSON,
    a missing ``model`` or a bad ``prompt``; injected statuses as configured.
    """
    state = simulator_state(request)
    if not authorized(state, request):
        return _error(401)
    try:
        req = msgspec.json.decode(await request.body(), type=_CompletionRequest)
        prompts = inputs_of(req.prompt)
    except msgspec.DecodeError as exc:
        return _error(400, f"Invalid request body: {exc}")
    except InvalidInput as exc:
        return _error(400, str(exc).replace("'input'", "'prompt'"), "prompt")
    behaviour = state.behaviour_for(req.model)
    stats = state.stats_for(req.model)
    stats.requests += 1
    outcome = plan_outcome(behaviour, [{"role": "user", "content": prompts[0][0]}], state.rng)
    await _pause(behaviour.latency_ms)
    if outcome.kind == "error":
        stats.errors_injected += 1
        return _error(outcome.status)
    garbage = outcome.kind == "garbage"
    if garbage:
        stats.garbage_injected += 1
    usage_obj = responses.usage(
        sum(count for _, count in prompts), responses.count_completion_tokens(outcome.content)
    )
    id_, created = f"cmpl-{uuid.uuid4().hex[:24]}", responses.now()
    if req.stream:
        include_usage = (req.stream_options or {}).get("include_usage") is True
        chunks = TextChunks(model=req.model, include_usage=include_usage, id_=id_, created=created)
        return Stream(
            _stream(behaviour, stats, chunks, outcome.content, usage_obj, garbage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    if garbage:
        return Response(responses.GARBAGE_BODY, media_type=_JSON)
    stats.prompt_tokens += usage_obj["prompt_tokens"]
    stats.completion_tokens += usage_obj["completion_tokens"]
    body = {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": req.model,
        "system_fingerprint": responses.SYSTEM_FINGERPRINT,
        "choices": [
            {"text": outcome.content, "index": 0, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": usage_obj,
    }
    return Response(msgspec.json.encode(body), media_type=_JSON)
