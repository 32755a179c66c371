"""``POST /v1/chat/completions`` as a relay :class:`~gateway.relay.operation.Operation`.

The body is the Chat Completions API's; the variant's prompt is applied to ``messages`` and its
model and parameters set (:func:`gateway.routing.payload.build_request`, which also says which
of the client's fields it changed); a unary answer is the first choice's message (its content,
tool calls and refusal: :func:`gateway.quality.answer.answer_from_message`); a stream is
followed by :class:`~gateway.relay.stream.ChatStream`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.config import Route, Variant
from gateway.errors import GatewayError
from gateway.quality.answer import answer_from_message
from gateway.relay.body import parse_chat_request
from gateway.relay.operation import Answer, Head
from gateway.relay.stream import ChatStream
from gateway.routing.payload import Payload, build_request
from gateway.telemetry import RequestRecord
from gateway.upstream import decode_completion
from gateway.upstream.client import CHAT_PATH
from gateway.upstream.redact import Redactor
from gateway.upstream.stream_start import check_chat_first

__all__ = ["CHAT", "ChatOperation"]


class ChatOperation:
    """Chat completions (see the module docstring)."""

    name = "chat"
    path = CHAT_PATH
    prompt_field = "messages"

    def offers(self, variant: Variant) -> bool:
        return True

    def check_first(self, data: bytes, upstream: str) -> None:
        check_chat_first(data, upstream)

    def parse(self, raw: bytes) -> tuple[dict[str, Any], Head]:
        return parse_chat_request(raw)

    def payload(
        self, route: Route, variant: Variant, body: dict[str, Any], stream: bool
    ) -> Payload:
        return build_request(route, variant, body, stream)

    def answer(self, content: bytes) -> Answer:
        view = decode_completion(content)
        judged = answer_from_message(view.choices[0].message) if view.choices else None
        text = judged.text if judged is not None else None
        usage = view.usage
        if usage is None:
            return Answer(content, text, view=view, judged=judged, model=view.model)
        return Answer(
            content,
            text,
            usage.prompt_tokens,
            usage.completion_tokens,
            view,
            judged,
            view.model,
        )

    def explain(self, exc: GatewayError) -> GatewayError:
        return exc

    def stream(
        self,
        rec: RequestRecord,
        variant: Variant,
        head: Head,
        redactor: Redactor,
        clock: Callable[[], float],
    ) -> ChatStream:
        return ChatStream(rec, variant.upstream, redactor, clock, wants_usage=head.wants_usage)


CHAT = ChatOperation()
"""The chat completions operation (stateless; one for the process)."""
