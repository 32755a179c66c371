"""Notice a client that hangs up while its request is still being answered.

Litestar (like Starlette) watches ``http.disconnect`` only while it streams a response; a
handler that awaits an upstream for a minute would otherwise keep it going for a client that
left long ago, and pay for the answer. Once the body is read, the next ASGI ``receive`` message
is ``http.disconnect``, sent when the client goes away or once the response is complete.

:class:`DisconnectWatch` waits for it without a task: it steps the ``receive()`` coroutine
itself whenever the future that coroutine waits on is done, and cancels the request's task if
the message is a disconnect that came before the response was complete. When the response
completes first, the server answers the pending ``receive`` by itself (uvicorn, httpx's
``ASGITransport``) and the coroutine just ends. Measured in process (bench/profile_inprocess.py,
py-spy): about 5 % of the gateway's CPU per request, ~10 µs; the watcher task with a closure of
the first version measured 20-40 µs over no watch at all (on a loaded machine: noisy).
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

    No task runs ``receive()``: its coroutine is stepped here, as a task would step it, each
    time the future it waits on is done (a done-callback). So a watch costs a coroutine and a
    callback, not a task's creation, scheduling and cancellation.
    """

    __slots__ = ("_coro", "_receive", "_task", "_waiting", "gone")

    def __init__(self, receive: Callable[[], Awaitable[Any]]) -> None:
        self._task: asyncio.Task[Any] | None = asyncio.current_task()
        self.gone = False
        self._waiting: asyncio.Future[Any] | None = None
        self._receive = receive
        self._coro: Any = receive()
        self._step()

    def _step(self, _: object = None) -> None:
        self._waiting = None
        coro = self._coro
        if coro is None:
            return
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            self._coro = None
            self._message(stop.value)
            return
        except BaseException:  # the server's receive failed: nothing more to watch
            self._coro = None
            return
        if not isinstance(waiting, asyncio.Future):  # a bare yield: try again next turn
            asyncio.get_running_loop().call_soon(self._step)
            return
        waiting._asyncio_future_blocking = False  # as Task.__step does
        self._waiting = waiting
        waiting.add_done_callback(self._step)

    def _message(self, message: Any) -> None:
        task = self._task
        if task is None:
            return
        if message.get("type") == "http.disconnect":
            self.gone = True
            self._task = None
            task.cancel()
            return
        self._coro = self._receive()  # not a disconnect: keep watching (not expected)
        self._step()

    def finish(self) -> None:
        """The response is about to complete: a disconnect from now on is not the client's."""
        self._task = None

    def stop(self) -> None:
        """Stop watching. A ``receive`` already answered finishes on its own (its callback is
        queued); one still waiting is dropped (its coroutine closed)."""
        self._task = None
        waiting = self._waiting
        if waiting is not None and waiting.done():
            return
        coro, self._coro = self._coro, None
        self._waiting = None
        if waiting is not None:
            waiting.remove_done_callback(self._step)
        if coro is not None:
            coro.close()

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
