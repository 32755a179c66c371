"""The upstream calls' deadlines on one timer (gateway/upstream/deadline.py): a call past its
deadline ends in TimeoutError as with ``asyncio.timeout``, calls in time are left alone, and a
cancellation from elsewhere stays a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.deadline import Deadlines


async def test_a_call_past_its_deadline_ends_in_timeout_error() -> None:
    deadlines = Deadlines(0.05)
    with pytest.raises(TimeoutError), deadlines.start():
        await asyncio.sleep(10)
    assert not deadlines._pending


async def test_calls_in_time_finish_and_later_calls_still_get_their_deadline() -> None:
    deadlines = Deadlines(0.2)

    async def call(seconds: float) -> str:
        try:
            with deadlines.start():
                await asyncio.sleep(seconds)
        except TimeoutError:
            return "timeout"
        return "done"

    quick = [asyncio.create_task(call(0.0)) for _ in range(50)]
    slow = asyncio.create_task(call(10))
    assert await asyncio.gather(*quick) == ["done"] * 50
    assert await slow == "timeout"
    # a call started after an expired one has its own full allowance
    assert await call(0.05) == "done"
    assert await call(10) == "timeout"
    assert not deadlines._pending


async def test_the_oldest_call_finishing_early_leaves_the_next_ones_deadline() -> None:
    deadlines = Deadlines(0.3)
    results: list[str] = []

    async def call(delay: float, seconds: float) -> None:
        await asyncio.sleep(delay)
        try:
            with deadlines.start():
                await asyncio.sleep(seconds)
            results.append("done")
        except TimeoutError:
            results.append("timeout")

    # the first call ends at once; the second (started 0.1 s later) overruns by far
    await asyncio.gather(call(0.0, 0.0), call(0.1, 10))
    assert results == ["done", "timeout"]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(10)
    started = asyncio.Event()

    async def call() -> None:
        with deadlines.start():
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._pending


async def test_a_cancellation_from_elsewhere_at_expiry_is_not_swallowed() -> None:
    """As asyncio.timeout: expired, but cancelled by someone else too: CancelledError."""
    deadlines = Deadlines(0.05)
    caught: list[BaseException] = []

    async def call() -> None:
        try:
            with deadlines.start():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()  # a second, outside cancellation arrives meanwhile
                    raise
        except BaseException as exc:
            caught.append(exc)
            raise

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(call())
    assert isinstance(caught[0], asyncio.CancelledError)
