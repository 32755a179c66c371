"""``POST /v1/embeddings``: deterministic vectors, so pass-through is testable offline.

The shapes are OpenAI's Embeddings API (``CreateEmbeddingRequest`` / ``CreateEmbeddingResponse``
in OpenAI's OpenAPI spec): ``input`` is a string, a list of strings, a list of token ids or a
list of token-id lists; ``encoding_format`` is ``float`` (lists of numbers) or ``base64``
(little-endian float32, what the official SDKs ask for by default); ``dimensions`` sets the
length (default :data:`DEFAULT_DIMENSIONS`).

Each vector depends only on the model name and the input (SHAKE-256 of both, read as unsigned
32-bit integers mapped to [-1, 1], then scaled to unit length), so the same text always gets the
same vector and another text another one. ``usage.prompt_tokens`` (= ``total_tokens``) counts a
text as ``ceil(len / 4)`` tokens, like the chat endpoint, and a token-id list as its length.

The model's behaviour applies as for chat: ``latency_ms``, injected errors (``error_rate``,
``error_status``) and garbage bodies (``garbage_rate``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
from typing import Any

import msgspec
from litestar import Request, Response, post

from gateway.tools.simulator import responses
from gateway.tools.simulator.chat import authorized, simulator_state
from gateway.tools.simulator.outcome import plan_outcome

__all__ = ["DEFAULT_DIMENSIONS", "MAX_DIMENSIONS", "embedding_vector", "embeddings", "inputs_of"]

DEFAULT_DIMENSIONS = 64
"""Vector length when the request gives no ``dimensions`` (small: the simulator is for tests)."""
MAX_DIMENSIONS = 4096
_JSON = "application/json"


class _EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str
    input: Any = None
    encoding_format: str = "float"
    dimensions: int | None = None


class InvalidInput(ValueError):
    """The request's ``input`` (or another field) is not acceptable; ``param`` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def inputs_of(value: Any) -> list[tuple[str, int]]:
    """Each input as (text used for the vector, its token count).

    Raises:
        InvalidInput: ``input`` is missing, empty, or not one of the four accepted shapes.
    """
    single_tokens = isinstance(value, list) and value and all(isinstance(t, int) for t in value)
    if isinstance(value, str) or single_tokens:
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            "'input' must be a non-empty string, array of strings, array of token ids or "
            "array of token-id arrays.",
            "input",
        )
    out: list[tuple[str, int]] = []
    for item in value:
        if isinstance(item, str) and item:
            out.append((item, math.ceil(len(item) / 4)))
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            out.append((",".join(map(str, item)), len(item)))
        else:
            raise InvalidInput(
                "Each item of 'input' must be a non-empty string or a non-empty array of "
                "token ids.",
                "input",
            )
    return out


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """The unit-length vector of ``text`` for ``model`` (deterministic, see the module)."""
    digest = hashlib.shake_256(f"{model}\0{text}".encode()).digest(4 * dimensions)
    raw = struct.unpack(f"<{dimensions}I", digest)
    values = [x / 2147483647.5 - 1.0 for x in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _encoded(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def _error(status: int, message: str | None = None, param: str | None = None) -> Response[bytes]:
    headers = {"retry-after": "1"} if status == 429 else None
    return Response(
        responses.error_body(status, message, param=param),
        status_code=status,
        media_type=_JSON,
        headers=headers,
    )


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Answer an embeddings request (see the module docstring).

    Errors: 401 without the configured key; 400 (OpenAI's envelope, ``param`` set) for a body
    that is not JSON, a missing ``model``, a bad ``input``, an unknown ``encoding_format`` or
    ``dimensions`` outside 1..:data:`MAX_DIMENSIONS`; injected statuses as configured.
    """
    state = simulator_state(request)
    if not authorized(state, request):
        return _error(401)
    try:
        req = msgspec.json.decode(await request.body(), type=_EmbeddingRequest)
        items = inputs_of(req.input)
        if req.encoding_format not in ("float", "base64"):
            raise InvalidInput("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
        dimensions = DEFAULT_DIMENSIONS if req.dimensions is None else req.dimensions
        if not 1 <= dimensions <= MAX_DIMENSIONS:
            raise InvalidInput(f"'dimensions' must be 1..{MAX_DIMENSIONS}.", "dimensions")
    except msgspec.DecodeError as exc:
        return _error(400, f"Invalid request body: {exc}")
    except InvalidInput as exc:
        return _error(400, str(exc), exc.param)
    behaviour = state.behaviour_for(req.model)
    stats = state.stats_for(req.model)
    stats.requests += 1
    outcome = plan_outcome(behaviour, [{"role": "user", "content": items[0][0]}], state.rng)
    if behaviour.latency_ms > 0:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    if outcome.kind == "error":
        stats.errors_injected += 1
        return _error(outcome.status)
    if outcome.kind == "garbage":
        stats.garbage_injected += 1
        return Response(responses.GARBAGE_BODY, media_type=_JSON)
    tokens = sum(count for _, count in items)
    stats.prompt_tokens += tokens
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _encoded(
                embedding_vector(req.model, text, dimensions), req.encoding_format
            ),
        }
        for index, (text, _) in enumerate(items)
    ]
    body = {
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Response(msgspec.json.encode(body), media_type=_JSON)
