"""cancel_and_wait: background tasks end even when a cancellation is swallowed once."""

from __future__ import annotations

import asyncio

from gateway.tasks import cancel_and_wait


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again_until_it_ends() -> None:
    """Like redis-py under Python 3.11's asyncio.timeout: the first CancelledError is turned
    into a normal return from the inner wait; the loop goes on; a second cancel ends it."""
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    continue
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, every_s=0.01) is True
    assert task.cancelled()
    assert swallowed == 1


async def test_a_task_that_never_ends_is_reported_after_the_tries() -> None:
    """A task that ignores every cancellation: False after the bounded tries, no hang."""
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, tries=3, every_s=0.01) is False
    stop.set()
    task.cancel()
    await asyncio.wait({task})


async def test_a_finished_task_is_left_alone() -> None:
    """Already done: True, and its result untouched."""

    async def done() -> int:
        return 7

    task = asyncio.create_task(done())
    await task
    assert await cancel_and_wait(task) is True
    assert task.result() == 7
