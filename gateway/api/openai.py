"""The data plane: OpenAI's ``/v1/chat/completions``, ``/v1/responses``, ``/v1/models`` (and
``/v1/models/{id}``) and ``/v1/feedback``.

``POST /v1/chat/completions`` and ``POST /v1/responses`` are each served by a
:class:`ChatCompletionsASGI`, a raw ASGI callable
that :class:`gateway.app.GatewayApp` calls before Litestar: the scope's headers read in one
pass, the body read from ``receive`` (413 past ``max_body_bytes``), the reply sent as two ASGI
messages with a prepared header list (a stream as ``more_body`` messages). Litestar's
routing, ``Request`` and ``Response`` objects cost 117 µs of CPU per request, a quarter of the
gateway's, and Litestar's ``@asgi`` route handler still 17 µs over a bare callable
(bench/results/profile-inprocess.md), so the dispatch is a path comparison in front of Litestar.

Every other method and path, and every other route, stays with Litestar's handlers below
(closures over the app's :class:`~gateway.app.Gateway`): the ``@post`` chat handler remains
registered, so 405 with ``Allow``, ``OPTIONS`` and path variants behave as before. Errors
become replies in one place, :func:`gateway.relay.error_reply`, on both paths.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from time import perf_counter
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Stream

from gateway.api.disconnect import DisconnectWatch, until_disconnected
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
)
from gateway.relay import CLIENT_CLOSED_REQUEST, CallContext, Reply, error_reply
from gateway.telemetry import RequestRecord
from gateway.telemetry.tracing import FORWARDED_HEADERS, forwarded

__all__ = [
    "CHAT_PATH",
    "MAX_SUBJECT_CHARS",
    "RESPONSES_PATH",
    "ChatCompletionsASGI",
    "FeedbackRequest",
    "internal_error_reply",
    "new_request_id",
    "openai_handlers",
    "parse_feedback",
    "to_response",
]

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"

_MAX_REQUEST_ID = 128
MAX_SUBJECT_CHARS = 256
"""Longest ``x-gateway-subject`` accepted (it is hashed for bucketing; longer is a mistake)."""


_IDS_PER_READ = 128
"""Request ids made from one ``os.urandom`` read (:func:`new_request_id`)."""


class _RandomHex(threading.local):
    """Hex digits of ``os.urandom``, read :data:`_IDS_PER_READ` ids' worth at a time and each
    handed out once: per thread (no two threads share a read), dropped in a forked child (no
    two processes share one)."""

    digits = ""
    at = 0


_random_hex = _RandomHex()


_fork_hook = False
"""Whether :func:`_forget_random_hex` is registered to run in forked children (done at the
first read, not at import: importing a module changes nothing)."""


def _forget_random_hex() -> None:
    global _random_hex  # noqa: PLW0603 -- the child's own, never its parent's
    _random_hex = _RandomHex()


def new_request_id(given: str | None) -> str:
    """Keep a client's ``x-request-id`` if it is short and printable, else make one:
    ``req_`` and 32 random hex digits, 16 bytes of ``os.urandom`` never used for another id
    (read for 128 ids at once: 0.2 µs an id instead of 0.57 for a read each)."""
    if given and len(given) <= _MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    pool = _random_hex
    at = pool.at
    digits = pool.digits
    if at >= len(digits):
        global _fork_hook  # noqa: PLW0603 -- registered once per process
        if not _fork_hook:
            os.register_at_fork(after_in_child=_forget_random_hex)
            _fork_hook = True
        digits = pool.digits = os.urandom(16 * _IDS_PER_READ).hex()
        at = 0
    pool.at = at + 32
    return "req_" + digits[at : at + 32]


def to_response(reply: Reply) -> Response[Any]:
    """Turn a reply into a Litestar response (the Litestar handlers' side of the boundary)."""
    if reply.stream is not None:
        return Stream(
            reply.stream,
            status_code=reply.status,
            headers=reply.header_dict(),
            media_type=reply.media_type,
        )
    return Response(
        reply.body,
        status_code=reply.status,
        headers=reply.header_dict(),
        media_type=reply.media_type,
    )


def internal_error_reply(logger: Any, path: str, exc: BaseException, request_id: str) -> Reply:
    """An unexpected exception: logged with its traceback (``request.unhandled_exception``),
    answered 500 in OpenAI's envelope without any detail."""
    logger.error(
        "request.unhandled_exception",
        path=path,
        error=type(exc).__name__,
        traceback="".join(traceback.format_exception(exc)),
    )
    return error_reply(GatewayError("The gateway had an internal error."), request_id)


_CONTENT_TYPES = {
    "application/json": b"application/json",
    "text/event-stream": b"text/event-stream; charset=utf-8",
}


async def send_reply(send: Any, reply: Reply, watch: DisconnectWatch | None = None) -> None:
    """Send ``reply`` as ASGI messages: a body with its ``content-length``, or a stream as
    ``more_body`` messages (the stream is closed however sending ends). ``watch`` learns when
    the response is about to complete."""
    headers = reply.headers
    content_type = _CONTENT_TYPES.get(reply.media_type) or reply.media_type.encode("latin-1")
    headers.append((b"content-type", content_type))
    stream = reply.stream
    if stream is None:
        body = reply.body
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if watch is not None:
            watch.finish()
        await send({"type": "http.response.body", "body": body})
        return
    try:
        # The first chunk before the head: the relay's generator is then started, so closing
        # it always runs its clean-up (slot, in-flight gauge, the log line), even when the
        # head's send is where a disconnect lands. It yields the events already read.
        first: bytes | None = await anext(stream, None)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if first is not None:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    if watch is not None:
        watch.finish()
    await send({"type": "http.response.body", "body": b""})


_MAX_ACCEPTED = 256


class ChatCompletionsASGI:
    """``POST /v1/chat/completions`` (or, with ``path=RESPONSES_PATH``, ``POST /v1/responses``)
    as a raw ASGI callable (see the module docstring).

    In order: request id, client key (401/403), ``x-gateway-subject`` length (400), body size
    (413, from ``content-length`` before reading, or as it is read), then the relay, watched
    for a client that hangs up (499 recorded, nothing sent). An unexpected exception is a 500
    in OpenAI's envelope, logged with its traceback.
    """

    __slots__ = (
        "_accepted",
        "_handle",
        "_keys",
        "_logger",
        "_max_body",
        "_operation",
        "_override_keys",
        "_path",
        "_relay",
    )

    def __init__(self, gw: Any, path: str = CHAT_PATH) -> None:
        self._relay = gw.relay
        self._path = path
        self._handle = gw.relay.respond if path == RESPONSES_PATH else gw.relay.complete
        self._operation = "responses" if path == RESPONSES_PATH else "chat"
        self._keys = gw.client_keys
        self._accepted: dict[bytes, str | None] = {}
        self._override_keys = gw.override_keys
        self._max_body = gw.settings.max_body_bytes
        self._logger = gw.logger

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = perf_counter()
        authorization = given_id = subject = forced = length = trace_headers = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"x-request-id":
                given_id = value
            elif name == b"x-gateway-subject":
                subject = value
            elif name == b"x-gateway-variant":
                forced = value
            elif name in FORWARDED_HEADERS:  # traceparent, tracestate, baggage
                trace_headers = forwarded(trace_headers, name, value)
        request_id = new_request_id(None if given_id is None else given_id.decode("latin-1"))
        ctx = CallContext(request_id, started)
        ctx.trace_headers = trace_headers
        try:
            ctx.key_name = self._authenticate(authorization)
            if subject is not None:
                ctx.subject = subject.decode("latin-1")
                if len(ctx.subject) > MAX_SUBJECT_CHARS:
                    raise InvalidRequestError(
                        f"x-gateway-subject is longer than {MAX_SUBJECT_CHARS} characters.",
                        param="x-gateway-subject",
                    )
            raw = await self._read_body(receive, length)
        except GatewayError as exc:
            rec = RequestRecord(request_id, started, operation=self._operation)
            await send_reply(send, self._relay.reject(rec, exc))
            return
        if raw is None:  # the client left while sending its body
            return
        ctx.may_override = ctx.key_name in self._override_keys
        if forced is not None:
            ctx.forced_variant = forced.decode("latin-1")
        watch = DisconnectWatch(receive)
        try:
            try:
                reply = await self._handle(raw, ctx)
            except Exception as exc:  # the one boundary for the unexpected: a 500, logged
                reply = internal_error_reply(self._logger, self._path, exc, request_id)
            await send_reply(send, reply, watch)
        except asyncio.CancelledError:
            if watch.absorbed():  # the relay recorded the 499; nobody is left to answer
                return
            raise
        finally:
            watch.stop()

    def _authenticate(self, authorization: bytes | None) -> str | None:
        """The client key's name (:meth:`gateway.auth.KeyRing.authenticate`: 401/403 raised).

        Header values that authenticated are remembered (at most :data:`_MAX_ACCEPTED`): a
        known value costs a dict lookup instead of a SHA-256 and a comparison per key. Only
        accepted values are kept, so a client cannot grow the dict without a valid key; the
        lookup compares a randomised hash first, so it tells nothing about other keys."""
        accepted = self._accepted
        if authorization in accepted:
            return accepted[authorization]
        name: str | None = self._keys.authenticate(
            None if authorization is None else authorization.decode("latin-1")
        )
        if authorization is not None and len(self._accepted) < _MAX_ACCEPTED:
            self._accepted[authorization] = name
        return name

    async def _read_body(self, receive: Any, length: bytes | None) -> bytes | None:
        """The whole body (None if the client disconnected). Raises PayloadTooLargeError."""
        limit = self._max_body
        if length is not None and length.isdigit() and int(length) > limit:
            raise self._too_large()
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise self._too_large()
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise self._too_large()
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"Request body too large: the limit is {self._max_body} bytes.")


def openai_handlers(gw: Any) -> list[Any]:
    """The data plane's route handlers, bound to ``gw`` (a :class:`gateway.app.Gateway`)."""
    relay = gw.relay
    keys = gw.client_keys
    override_keys = gw.override_keys

    async def relayed(
        request: Request[Any, Any, Any], handle: Any, operation: str
    ) -> Response[Any]:
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
            rec = RequestRecord(ctx.request_id, started, operation=operation)
            return to_response(relay.reject(rec, exc))
        ctx.may_override = ctx.key_name in override_keys
        ctx.forced_variant = headers.get("x-gateway-variant")
        ctx.trace_headers = {
            name: value
            for name in ("traceparent", "tracestate", "baggage")
            if (value := headers.get(name)) is not None
        } or None
        reply = await until_disconnected(request.receive, handle(raw, ctx))
        if reply is None:  # the relay recorded the 499; nobody is left to send it to
            return Response(b"", status_code=CLIENT_CLOSED_REQUEST)
        return to_response(reply)

    @post(CHAT_PATH, status_code=200, include_in_schema=False)
    async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
        return await relayed(request, relay.complete, "chat")

    @post(RESPONSES_PATH, status_code=200, include_in_schema=False)
    async def responses(request: Request[Any, Any, Any]) -> Response[Any]:
        return await relayed(request, relay.respond, "responses")

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

    @get("/v1/models/{model_id:path}", include_in_schema=False)
    async def retrieve_model(
        request: Request[Any, Any, Any], model_id: FromPath[str]
    ) -> Response[Any]:
        request_id = new_request_id(request.headers.get("x-request-id"))
        try:
            keys.authenticate(request.headers.get("authorization"))
        except GatewayError as exc:
            return to_response(relay.reject(RequestRecord(request_id, perf_counter()), exc))
        name = model_id.removeprefix("/")  # a path parameter keeps its leading slash
        body = model_bodies.get(name)
        if body is None:
            missing = ModelNotFoundError(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
            )
            return to_response(error_reply(missing, request_id))
        return Response(body, headers={"x-request-id": request_id}, media_type="application/json")

    created = int(time.time())
    models = {
        name: {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "gateway-passthrough" if route.passthrough else "gateway",
        }
        for name, route in gw.config.routes.items()
    }
    models_body = msgspec.json.encode({"object": "list", "data": list(models.values())})
    model_bodies = {name: msgspec.json.encode(model) for name, model in models.items()}

    @post("/v1/feedback", status_code=200, include_in_schema=False)
    async def feedback(request: Request[Any, Any, Any]) -> Response[Any]:
        request_id = new_request_id(request.headers.get("x-request-id"))
        try:
            keys.authenticate(request.headers.get("authorization"))
            verdict = parse_feedback(await request.body())
            item = gw.quality.feedback(verdict.request_id, negative=verdict.negative)
        except GatewayError as exc:
            return to_response(error_reply(exc, request_id))
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

    return [chat_completions, responses, list_models, retrieve_model, feedback]


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
