"""Notice a client that hangs up while its unary request is still being answered.

Litestar (like Starlette) watches ``http.disconnect`` only while it streams a response; a
handler that awaits an upstream for a minute would otherwise keep it going for a client that
left long ago, and pay for the answer. :func:`until_disconnected` awaits the work while a small
watcher task reads the ASGI ``receive`` channel (the body is already read, so the next message
is ``http.disconnect``, sent when the client goes away or once the response is complete) and
cancels the work when the client is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["until_disconnected"]

T = TypeVar("T")


async def until_disconnected(receive: Callable[[], Awaitable[Any]], work: Awaitable[T]) -> T | None:
    """Await ``work`` unless the client disconnects first.

    Returns:
        The work's result; ``None`` when the client went away and the work was cancelled (it
        sees ``CancelledError`` at its current ``await``). ``work`` must not return ``None``.

    Call only after the request body was read in full: the watcher consumes ``receive``.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                task.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            return None
        raise
    finally:
        watcher.cancel()
