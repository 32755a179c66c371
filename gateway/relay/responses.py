"""``POST /v1/responses`` (OpenAI's Responses API) as a relay
:class:`~gateway.relay.operation.Operation`: routed by route name exactly like chat
completions (same plan, attempts, failover, contract, headers, log event and metrics, with
``operation: responses`` in the log event).

* The body: ``model`` (the route), ``input`` (a string or a list of items), optional
  ``instructions``, ``stream`` and ``user``; everything else is forwarded.
* The payload: the variant applied in the Responses API's terms
  (:func:`gateway.routing.responses_payload.build_responses_payload`).
* A unary answer's text (for the contract) is every ``output_text`` part of the ``message``
  items of ``output``, joined (what the SDKs call ``output_text``); tokens are ``usage``'s
  ``input_tokens`` and ``output_tokens``.
* A stream is ``event:``/``data:`` pairs relayed as they arrive (:class:`ResponsesStream`):
  ``response.output_text.delta`` events make the text, ``response.completed`` (or
  ``response.incomplete``) completes it and carries the usage.
* A variant whose upstream lacks the Responses API (``responses_api: false`` on the
  upstream) gets a 400 ``responses_api_unsupported`` naming the route, variant and upstream,
  before anything is sent.
* Shadow routes mirror Responses API requests to the candidate as Responses API requests
  (non-streaming), judged and compared on the same answer as above; a candidate on an
  upstream without the Responses API is not asked (``skipped``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from gateway.config import GatewayConfig, Route, Variant
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from gateway.quality.responses_answer import ResponsesAnswerAssembler, answer_from_output
from gateway.relay.body import decode_body, to_head
from gateway.relay.operation import Answer, Head
from gateway.relay.stream import StreamMachine
from gateway.routing.payload import Payload
from gateway.routing.response_model import StreamModel
from gateway.routing.responses_payload import build_responses_request
from gateway.telemetry import RequestRecord
from gateway.upstream.redact import Redactor
from gateway.upstream.sse import DONE, event_data

__all__ = [
    "RESPONSES_PATH",
    "ResponsesHead",
    "ResponsesOperation",
    "ResponsesStream",
    "check_responses_first",
    "parse_responses_request",
]

RESPONSES_PATH = "/responses"

_END = b"\n\n"
_DONE_EVENT = b"data: [DONE]\n\n"
_COMPLETE = frozenset({"response.completed", "response.incomplete"})
_FAILED = frozenset({"response.failed", "error"})
_ITEM = frozenset({"response.output_item.added", "response.output_item.done"})


class ResponsesHead(msgspec.Struct):
    """The Responses API request fields routing needs; everything else is forwarded."""

    model: str
    input: str | list[Any] | None = None
    instructions: str | None = None
    stream: bool = False
    user: str | None = None

    @property
    def wants_usage(self) -> bool:
        """Usage always comes in ``response.completed``; nothing is hidden."""
        return True


def parse_responses_request(raw: bytes) -> tuple[dict[str, Any], ResponsesHead]:
    """Decode a ``POST /v1/responses`` body.

    Raises:
        InvalidRequestError: not a JSON object (or nested too deeply), ``model`` missing, a
            field of the wrong type (``input`` must be a string or a list), or an empty
            ``input``; ``param`` names the field.
    """
    body = decode_body(raw)
    head = to_head(body, ResponsesHead)
    if head.input is not None and len(head.input) == 0:
        raise InvalidRequestError(
            "Invalid 'input': empty. Give a string or a list of at least one item.",
            param="input",
        )
    return body, head


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0


class _ResponseView(msgspec.Struct):
    """The parts of a ``response`` object the relay reads (``output`` is required)."""

    output: list[Any]
    usage: _Usage | None = None
    model: str | None = None


class _EventResponse(msgspec.Struct):
    usage: _Usage | None = None
    model: str | None = None


class _EventView(msgspec.Struct):
    """The parts of a Responses stream event the relay reads."""

    type: str = ""
    delta: Any = None
    sequence_number: int | None = None
    response: _EventResponse | None = None
    error: Any = None
    output_index: int = 0
    item: Any = None
    arguments: Any = None


_decode_response = msgspec.json.Decoder(_ResponseView).decode
_decode_event = msgspec.json.Decoder(_EventView).decode
_encode = msgspec.json.Encoder().encode


def check_responses_first(data: bytes, upstream: str) -> None:
    """The first data event must be a Responses API event (``type`` ``response.*``) and not
    a failure (``error``, ``response.failed``, an ``error`` object)."""
    try:
        view = _decode_event(data)
    except msgspec.DecodeError:
        view = None
    if view is None or not (view.type.startswith("response.") or view.type in _FAILED):
        raise UpstreamProtocolError(
            f"upstream '{upstream}' began its stream with an event that is not a Responses "
            "API event",
            upstream=upstream,
        )
    if view.type in _FAILED or view.error is not None:
        raise UpstreamProtocolError(
            f"upstream '{upstream}' began its stream with an error event",
            upstream=upstream,
            code="upstream_stream_error",
        )


class ResponsesStream(StreamMachine):
    """A Responses API stream (see the module docstring).

    Events are relayed unchanged (``event:`` line included), secrets redacted from failures.
    ``response.failed``, an ``error`` event or an ``error`` object end the stream
    (``upstream_stream_error``; relayed, no second error event); an event that is not JSON
    ends it as an invalid response; a cut stream gets an ``error`` event
    (``stream_interrupted``) that also carries OpenAI's error envelope, so the SDKs raise.
    A ``data: [DONE]`` some servers add is relayed and completes the stream too.
    """

    __slots__ = ("calls", "sequence")

    def __init__(
        self,
        rec: RequestRecord,
        upstream: str,
        redactor: Redactor,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(rec, upstream, redactor, clock)
        self.sequence = -1
        self.calls = ResponsesAnswerAssembler()

    def show_model(self, model: bytes) -> None:
        """The ``model`` of the ``response`` object inside events becomes ``model``."""
        self.model = StreamModel(model, "response")

    def feed(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        for event in events:
            data = event_data(event)
            if data is None:  # a comment (keep-alive)
                out.append(event + _END)
                continue
            if data == DONE:
                self.done = True
                out.append(_DONE_EVENT)
                break
            try:
                view = _decode_event(data)
            except msgspec.DecodeError:
                self.failed = self.invalid_event()
                break
            if view.sequence_number is not None:
                self.sequence = view.sequence_number
            kind = view.type
            if kind == "response.output_text.delta":
                if isinstance(view.delta, str) and view.delta:
                    self._content(view.delta)
            elif kind == "response.function_call_arguments.delta":
                if isinstance(view.delta, str):
                    self._first_token()
                    self.calls.arguments(view.output_index, view.delta)
            elif kind in _ITEM:
                self.calls.item(view.output_index, view.item, done=kind.endswith(".done"))
            elif kind == "response.function_call_arguments.done":
                if isinstance(view.arguments, str):
                    self.calls.arguments_done(view.output_index, view.arguments)
            elif kind == "response.refusal.delta":
                if isinstance(view.delta, str):
                    self.calls.refusal(view.delta)
            elif kind in _COMPLETE or kind in _FAILED or view.error is not None:
                response = view.response
                if response is not None and response.usage is not None:
                    self.rec.input_tokens = response.usage.input_tokens
                    self.rec.output_tokens = response.usage.output_tokens
                if kind in _COMPLETE:
                    self.done = True
                    out.append(self._shown(event, data, view) + _END)
                    break
                self.failed = UpstreamError(
                    f"upstream '{self.upstream}' reported an error mid-stream",
                    upstream=self.upstream,
                    code="upstream_stream_error",
                )
                self.relayed_error = True
                out.append(self.redactor.bytes(self._shown(event, data, view)) + _END)
                break
            out.append(self._shown(event, data, view) + _END)
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def _shown(self, event: bytes, data: bytes, view: _EventView) -> bytes:
        """``event`` as the client sees it: with the route's ``model`` in its ``response``."""
        if self.model is None or view.response is None:
            return event
        return self.model.event(event, data, view.response.model)

    def _first_token(self) -> None:
        rec = self.rec
        if rec.ttft_seconds is None:
            rec.ttft_seconds = self.clock() - rec.started

    def answer(self) -> Answer:
        """The assembled answer: its text, function calls and refusal."""
        judged = self.calls.answer(self.text())
        return Answer(b"", judged.text, judged=judged)

    def error_event(self, failed: GatewayError) -> bytes:
        """An ``error`` event of the Responses API, carrying OpenAI's error envelope too."""
        code = failed.code or "upstream_error"
        envelope = {
            "message": failed.message,
            "type": failed.error_type,
            "param": None,
            "code": code,
        }
        event = {
            "type": "error",
            "code": code,
            "message": failed.message,
            "param": None,
            "sequence_number": self.sequence + 1,
            "error": envelope,
        }
        return b"event: error\ndata: " + _encode(event) + _END


class ResponsesOperation:
    """The Responses API (see the module docstring); one per app, built from the config."""

    name = "responses"
    path = RESPONSES_PATH
    prompt_field = "input"

    def __init__(self, config: GatewayConfig) -> None:
        self._without = frozenset(
            name for name, upstream in config.upstreams.items() if not upstream.responses_api
        )

    def offers(self, variant: Variant) -> bool:
        """False for a variant whose upstream says ``responses_api: false``."""
        return variant.upstream not in self._without

    def parse(self, raw: bytes) -> tuple[dict[str, Any], Head]:
        return parse_responses_request(raw)

    def check_first(self, data: bytes, upstream: str) -> None:
        check_responses_first(data, upstream)

    def payload(
        self, route: Route, variant: Variant, body: dict[str, Any], stream: bool
    ) -> Payload:
        """The upstream body. Raises InvalidRequestError (400 ``responses_api_unsupported``)
        when ``variant``'s upstream lacks the Responses API."""
        if not self.offers(variant):
            raise InvalidRequestError(
                f"The route '{route.name}' cannot answer the Responses API: its variant "
                f"'{variant.name}' is served by upstream '{variant.upstream}', which does not "
                "offer it (responses_api: false). Use /v1/chat/completions for this route.",
                param="model",
                code="responses_api_unsupported",
            )
        return build_responses_request(route, variant, body, stream)

    def answer(self, content: bytes) -> Answer:
        view = _decode_response(content)
        judged = answer_from_output(view.output)
        usage = view.usage
        if usage is None:
            return Answer(content, judged.text, view=view, judged=judged, model=view.model)
        return Answer(
            content,
            judged.text,
            usage.input_tokens,
            usage.output_tokens,
            view,
            judged,
            view.model,
        )

    def explain(self, exc: GatewayError) -> GatewayError:
        """An upstream answering 404 or 405 to ``POST /responses`` most likely lacks the
        Responses API: the 502 says so and how to configure it."""
        if isinstance(exc, UpstreamStatusError) and exc.upstream_status in (404, 405):
            exc.message = (
                f"upstream '{exc.upstream}' answered HTTP {exc.upstream_status} to "
                f"POST {RESPONSES_PATH}: it may not offer the Responses API (mark it "
                "responses_api: false in the routes file, or use /v1/chat/completions)."
            )
        return exc

    def stream(
        self,
        rec: RequestRecord,
        variant: Variant,
        head: Head,
        redactor: Redactor,
        clock: Callable[[], float],
    ) -> ResponsesStream:
        return ResponsesStream(rec, variant.upstream, redactor, clock)
