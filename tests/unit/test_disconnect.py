"""DisconnectWatch: the request's task is cancelled only by a disconnect before the response."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.api.disconnect import DisconnectWatch, until_disconnected


class Channel:
    """An ASGI receive channel fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        return await self.queue.get()


async def test_a_disconnect_cancels_the_work_and_gives_none() -> None:
    channel = Channel()
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def hang_up() -> None:
        await started.wait()
        channel.queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        await asyncio.sleep(0.01)
        channel.queue.put_nowait({"type": "http.disconnect"})

    hanging = asyncio.create_task(hang_up())
    assert await asyncio.wait_for(until_disconnected(channel.receive, work()), 5) is None
    await hanging


async def test_work_that_finishes_first_is_returned_and_the_receive_is_dropped() -> None:
    channel = Channel()

    async def work() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await until_disconnected(channel.receive, work()) == "done"
    channel.queue.put_nowait({"type": "http.disconnect"})
    await asyncio.sleep(0.01)
    assert channel.queue.qsize() == 1  # nobody consumed it: the watch is gone


async def test_a_disconnect_after_finish_is_the_response_completing_not_the_client() -> None:
    channel = Channel()
    watch = DisconnectWatch(channel.receive)
    watch.finish()
    channel.queue.put_nowait({"type": "http.disconnect"})
    await asyncio.sleep(0.01)  # would have cancelled this task without finish()
    watch.stop()
    assert not watch.gone
