"""Notice a client that hangs up while its request is still being answered.

Litestar (like Starlette) watches ``http.disconnect`` only while it streams a response; a
handler that awaits an upstream for a minute would otherwise keep it going for a client that
left long ago, and pay for the answer. Once the body is read, the next ASGI ``receive`` message
is ``http.disconnect``, sent when the client goes away or once the response is complete.

:class:`DisconnectWatch` waits for it without a coroutine of its own: one task runs ``receive()``
and a done-callback cancels the request's task if the message is a disconnect that came before
the response was complete. When the response completes first, the server answers the pending
``receive`` by itself (uvicorn, httpx's ``ASGITransport``), so the task ends without being
cancelled. That is the one task per request a disconnect watch costs; a watcher coroutine with
a closure (the first version) cost a closure, a coroutine and a cancellation more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DisconnectWatch", "until_disconnected"]

T = TypeVar("T")


class DisconnectWatch:
    """Watches ``receive`` for the current task; ``gone`` once the client disconnected.

    Start it only after the request body was read in full: it consumes ``receive``. Call
    :meth:`finish` just before the response's last message (a disconnect after that is the
    server saying the response is complete), or :meth:`stop` to stop watching.
    """

    __slots__ = ("_receive", "_task", "_waiter", "gone")

    def __init__(self, receive: Callable[[], Awaitable[Any]]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task: asyncio.Task[Any] | None = task
        self._receive = receive
        self.gone = False
        self._waiter: asyncio.Future[Any] = asyncio.ensure_future(receive())
        self._waiter.add_done_callback(self._on_message)

    def _on_message(self, waiter: asyncio.Future[Any]) -> None:
        task = self._task
        if task is None or waiter.cancelled() or waiter.exception() is not None:
            return
        if waiter.result().get("type") == "http.disconnect":
            self.gone = True
            self._task = None
            task.cancel()
            return
        self._waiter = asyncio.ensure_future(self._receive())  # not a disconnect: keep watching
        self._waiter.add_done_callback(self._on_message)

    def finish(self) -> None:
        """The response is about to complete: a disconnect from now on is not the client's."""
        self._task = None

    def stop(self) -> None:
        """Stop watching: cancel the pending ``receive``."""
        self._task = None
        if not self._waiter.done():
            self._waiter.cancel()

    def absorbed(self) -> bool:
        """Inside ``except CancelledError``: whether the cancellation was this watch's (the
        client is gone) and no other is pending; then the caller returns instead of raising."""
        task = asyncio.current_task()
        return self.gone and task is not None and task.uncancel() == 0


async def until_disconnected(receive: Callable[[], Awaitable[Any]], work: Awaitable[T]) -> T | None:
    """Await ``work`` unless the client disconnects first.

    Returns:
        The work's result; ``None`` when the client went away and the work was cancelled (it
        sees ``CancelledError`` at its current ``await``). ``work`` must not return ``None``.

    Call only after the request body was read in full: the watcher consumes ``receive``.
    """
    watch = DisconnectWatch(receive)
    try:
        return await work
    except asyncio.CancelledError:
        if watch.absorbed():
            return None
        raise
    finally:
        watch.stop()
