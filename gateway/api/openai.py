"""The data plane: OpenAI's ``/v1/chat/completions`` and ``/v1/models``.

Handlers are closures over the app's :class:`~gateway.app.Gateway` (no module globals, no
per-request dependency injection): they authenticate, read the body and hand it to the relay.
"""

from __future__ import annotations

import time
from time import perf_counter
from typing import Any
from uuid import uuid4

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from gateway.api.disconnect import until_disconnected
from gateway.errors import GatewayError, InvalidRequestError, PayloadTooLargeError
from gateway.relay import CLIENT_CLOSED_REQUEST, CallContext, Reply
from gateway.telemetry import RequestRecord

__all__ = [
    "MAX_SUBJECT_CHARS",
    "FeedbackRequest",
    "new_request_id",
    "openai_handlers",
    "parse_feedback",
]

_MAX_REQUEST_ID = 128
MAX_SUBJECT_CHARS = 256
"""Longest ``x-gateway-subject`` accepted (it is hashed for bucketing; longer is a mistake)."""


def new_request_id(given: str | None) -> str:
    """Keep a client's ``x-request-id`` if it is short and printable, else make one."""
    if given and len(given) <= _MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return "req_" + uuid4().hex


def to_response(reply: Reply) -> Response[Any]:
    """Turn a relay reply into a Litestar response."""
    if reply.stream is not None:
        return Stream(
            reply.stream,
            status_code=reply.status,
            headers=reply.headers,
            media_type=reply.media_type,
        )
    return Response(
        reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
    )


def openai_handlers(gw: Any) -> list[Any]:
    """The data plane's route handlers, bound to ``gw`` (a :class:`gateway.app.Gateway`)."""
    relay = gw.relay
    keys = gw.client_keys
    override_keys = gw.override_keys

    @post("/v1/chat/completions", status_code=200, include_in_schema=False)
    async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
        started = perf_counter()
        headers = request.headers
        ctx = CallContext(new_request_id(headers.get("x-request-id")), started)
        try:
            ctx.key_name = keys.authenticate(headers.get("authorization"))
            ctx.subject = headers.get("x-gateway-subject")
            if ctx.subject is not None and len(ctx.subject) > MAX_SUBJECT_CHARS:
                raise InvalidRequestError(
                    f"x-gateway-subject is longer than {MAX_SUBJECT_CHARS} characters.",
                    param="x-gateway-subject",
                )
            try:
                raw = await request.body()
            except HTTPException as exc:
                if exc.status_code == 413:
                    raise PayloadTooLargeError(
                        f"Request body too large: the limit is {gw.settings.max_body_bytes} bytes."
                    ) from None
                raise
        except GatewayError as exc:
            return to_response(relay.reject(RequestRecord(ctx.request_id, started), exc))
        ctx.may_override = ctx.key_name in override_keys
        ctx.forced_variant = headers.get("x-gateway-variant")
        reply = await until_disconnected(request.receive, relay.complete(raw, ctx))
        if reply is None:  # the relay recorded the 499; nobody is left to send it to
            return Response(b"", status_code=CLIENT_CLOSED_REQUEST)
        return to_response(reply)

    @get("/v1/models", include_in_schema=False)
    async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = new_request_id(request.headers.get("x-request-id"))
        try:
            keys.authenticate(request.headers.get("authorization"))
        except GatewayError as exc:
            return to_response(relay.reject(RequestRecord(request_id, perf_counter()), exc))
        return Response(
            models_body, headers={"x-request-id": request_id}, media_type="application/json"
        )

    created = int(time.time())
    models_body = msgspec.json.encode(
        {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "gateway-passthrough" if route.passthrough else "gateway",
                }
                for name, route in gw.config.routes.items()
            ],
        }
    )

    @post("/v1/feedback", status_code=200, include_in_schema=False)
    async def feedback(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = new_request_id(request.headers.get("x-request-id"))
        try:
            keys.authenticate(request.headers.get("authorization"))
            verdict = parse_feedback(await request.body())
            item = gw.quality.feedback(verdict.request_id, negative=verdict.negative)
        except GatewayError as exc:
            return Response(
                exc.to_body(),
                status_code=exc.status_code,
                headers={"x-request-id": request_id},
                media_type="application/json",
            )
        body = {
            "object": "feedback",
            "request_id": verdict.request_id,
            "route": item.route,
            "variant": item.variant,
            "negative": verdict.negative,
            "counted_by_guard": item.guarded,
        }
        return Response(
            msgspec.json.encode(body),
            headers={"x-request-id": request_id},
            media_type="application/json",
        )

    return [chat_completions, list_models, feedback]


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/feedback``: a verdict on an earlier answer, by its ``x-request-id``.

    Give ``correct`` (true/false) or ``score`` (0..1; below 0.5 counts as wrong), not both.
    """

    request_id: str
    score: float | None = None
    correct: bool | None = None
    comment: str | None = None

    @property
    def negative(self) -> bool:
        return self.correct is False or (self.score is not None and self.score < 0.5)


def parse_feedback(raw: bytes) -> FeedbackRequest:
    """Decode and check a feedback body. Raises InvalidRequestError (400) naming the field."""
    try:
        verdict = msgspec.json.decode(raw, type=FeedbackRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("`$.", 1)[1].rstrip("`") if "`$." in text else None
        if param is None and "missing required field `" in text:
            param = text.split("missing required field `", 1)[1].split("`", 1)[0]
        raise InvalidRequestError(f"Invalid feedback: {text}", param=param) from None
    except msgspec.DecodeError:
        raise InvalidRequestError("The feedback body is not valid JSON.") from None
    if (verdict.score is None) == (verdict.correct is None):
        raise InvalidRequestError(
            "Give exactly one of 'correct' (true/false) or 'score' (0..1).", param="score"
        )
    if verdict.score is not None and not 0.0 <= verdict.score <= 1.0:
        raise InvalidRequestError(
            f"'score' must be between 0 and 1, got {verdict.score}.", param="score"
        )
    return verdict
