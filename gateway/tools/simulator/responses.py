"""OpenAI wire shapes: ``chat.completion``, ``chat.completion.chunk`` SSE events, errors.

Shapes follow OpenAI's Chat Completions API (``CreateChatCompletionResponse`` and
``CreateChatCompletionStreamResponse`` in OpenAI's OpenAPI spec). Everything here returns
encoded ``bytes`` ready to send; JSON is encoded with msgspec.

Token counting is a deterministic stand-in for a tokenizer (about four characters a token):

* prompt: for each message ``ceil(len(text) / 4) + 4`` (the 4 is the per-message framing),
  plus 3 for priming the assistant's reply;
* completion: ``max(1, ceil(len(answer) / 4))``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gateway.tools.simulator.outcome import message_text

__all__ = [
    "GARBAGE_BODY",
    "SSE_DONE",
    "SSE_GARBAGE",
    "SYSTEM_FINGERPRINT",
    "ChunkBuilder",
    "chat_completion",
    "completion_id",
    "count_completion_tokens",
    "count_prompt_tokens",
    "error_body",
    "now",
    "split_content",
    "sse_event",
    "tool_call_completion",
    "usage",
]

SYSTEM_FINGERPRINT = "fp_simulator"
SSE_DONE = b"data: [DONE]\n\n"
SSE_GARBAGE = b"data: {garbage\n\n"
GARBAGE_BODY = b'{"id": "chatcmpl-garbage", "choices": [{"index": 0, "message": <html>oops'

# status -> (type, code, message) of OpenAI's error envelope for injected and real errors.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("timeout", None, "Gateway timeout."),
}


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Count prompt tokens: ``sum(ceil(len(text) / 4) + 4 for each message) + 3``."""
    return sum(math.ceil(len(message_text(m)) / 4) + 4 for m in messages) + 3


def count_completion_tokens(answer: str) -> int:
    """Count completion tokens: ``max(1, ceil(len(answer) / 4))``."""
    return max(1, math.ceil(len(answer) / 4))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """Build OpenAI's ``usage`` object (``total_tokens`` is the sum)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_id() -> str:
    """Return a fresh id like OpenAI's, ``chatcmpl-`` and 24 hex digits (random, not seeded)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def chat_completion(
    *, model: str, content: str, usage_obj: Mapping[str, int], id_: str, created: int
) -> bytes:
    """Encode a non-streamed ``chat.completion`` with one ``stop`` choice.

    Args:
        model: the model name the request asked for, echoed back.
        content: the assistant's answer.
        usage_obj: the result of ``usage(...)``.
        id_: the completion id (``completion_id()``).
        created: Unix time in seconds.
    """
    return msgspec.json.encode(
        {
            "id": id_,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage_obj,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    )


def tool_call_completion(
    *,
    model: str,
    call_id: str,
    name: str,
    arguments: str,
    usage_obj: Mapping[str, int],
    id_: str,
    created: int,
) -> bytes:
    """Encode a non-streamed ``chat.completion`` whose one choice calls a function:
    ``content: null``, one ``tool_calls`` entry, ``finish_reason: "tool_calls"``."""
    return msgspec.json.encode(
        {
            "id": id_,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {"name": name, "arguments": arguments},
                            }
                        ],
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": usage_obj,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
    )


def split_content(content: str, chunks: int) -> list[str]:
    """Split ``content`` into exactly ``max(1, chunks)`` consecutive pieces.

    Sizes differ by at most one character, longer pieces first; when ``content`` is shorter
    than ``chunks`` the trailing pieces are empty strings. ``"".join(result) == content``.
    """
    count = max(1, chunks)
    size, extra = divmod(len(content), count)
    pieces: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(content[start:end])
        start = end
    return pieces


def sse_event(payload: object) -> bytes:
    """Frame one JSON payload as a server-sent event: ``data: <json>\\n\\n``."""
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


class ChunkBuilder:
    """Builds the ``chat.completion.chunk`` events of one stream.

    Every chunk shares ``id``, ``created``, ``model`` and ``system_fingerprint``. When the
    request asked for ``stream_options.include_usage``, every chunk carries ``"usage": null``
    and ``usage_chunk`` gives the extra last chunk with ``"choices": []`` and the usage.
    """

    __slots__ = ("_base", "include_usage")

    def __init__(self, *, model: str, include_usage: bool, id_: str, created: int) -> None:
        self.include_usage = include_usage
        self._base: dict[str, Any] = {
            "id": id_,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        payload = dict(self._base)
        payload["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if self.include_usage:
            payload["usage"] = None
        return sse_event(payload)

    def role_chunk(self) -> bytes:
        """The first event: delta ``{"role": "assistant", "content": ""}``."""
        return self._chunk({"role": "assistant", "content": ""}, None)

    def content_chunk(self, text: str) -> bytes:
        """A content event: delta ``{"content": text}``."""
        return self._chunk({"content": text}, None)

    def tool_call_start(self, call_id: str, name: str) -> bytes:
        """A tool call's first event, as OpenAI sends it: index, id, type and the function's
        name, with empty ``arguments``."""
        call = {
            "index": 0,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]}, None)

    def tool_call_arguments(self, piece: str) -> bytes:
        """More of the call's arguments: delta ``{"tool_calls": [{"index": 0, "function":
        {"arguments": piece}}]}``."""
        return self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)

    def finish_chunk(self, reason: str = "stop") -> bytes:
        """The last choice event: empty delta, ``finish_reason`` (``stop``, or ``tool_calls``
        after a tool call)."""
        return self._chunk({}, reason)

    def usage_chunk(self, usage_obj: Mapping[str, int]) -> bytes:
        """The extra usage event: ``"choices": []`` and the ``usage`` object."""
        payload = dict(self._base)
        payload["choices"] = []
        payload["usage"] = usage_obj
        return sse_event(payload)


def error_body(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    param: str | None = None,
    default_code: bool = True,
) -> bytes:
    """Encode OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}``.

    ``type``, and ``message`` when not given, follow what OpenAI sends for ``status``; so does
    ``code`` when not given and ``default_code`` is true (else it stays ``null``). Unknown 4xx
    map to ``invalid_request_error``, unknown 5xx to ``server_error``.
    """
    default_type = "invalid_request_error" if status < 500 else "server_error"
    err_type, usual_code, default_message = _ERRORS.get(
        status, (default_type, None, f"Simulated error {status}.")
    )
    return msgspec.json.encode(
        {
            "error": {
                "message": message or default_message,
                "type": err_type,
                "param": param,
                "code": code or (usual_code if default_code else None),
            }
        }
    )


def now() -> int:
    """Unix time in whole seconds, for ``created``."""
    return int(time.time())
