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

from gateway.errors import GatewayError, PayloadTooLargeError
from gateway.relay import CallContext, Reply
from gateway.telemetry import RequestRecord

__all__ = ["new_request_id", "openai_handlers"]

_MAX_REQUEST_ID = 128


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
        ctx.subject = headers.get("x-gateway-subject")
        ctx.forced_variant = headers.get("x-gateway-variant")
        return to_response(await relay.complete(raw, ctx))

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
    return [chat_completions, list_models]
