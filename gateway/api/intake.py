"""Reading a request on the raw ASGI data plane: the headers it needs, the body within a limit.

Shared by the raw ASGI handlers that do not go through Litestar's ``Request``
(:mod:`gateway.api.passthrough`); the limit is ``GATEWAY_MAX_BODY_BYTES``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import PayloadTooLargeError

__all__ = ["read_body", "too_large"]


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 of a body over ``limit`` bytes."""
    return PayloadTooLargeError(f"Request body too large: the limit is {limit} bytes.")


async def read_body(
    receive: Callable[[], Awaitable[Any]], length: bytes | None, limit: int
) -> bytes | None:
    """The whole request body, or None if the client disconnected while sending it.

    ``length`` is the ``content-length`` header's value, if any: a declared size over
    ``limit`` is refused before anything is read; an undeclared or understated one is refused
    as soon as the bytes read pass ``limit`` (at most one ASGI message past it is buffered).

    Raises:
        PayloadTooLargeError: the body is larger than ``limit`` bytes (413).
    """
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise too_large(limit)
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)
