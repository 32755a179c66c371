"""Stopping background tasks for sure.

On Python 3.11 a cancellation that arrives while ``asyncio.timeout()`` is expiring can be
swallowed (the timeout turns it into ``TimeoutError``, which code such as redis-py's
``PubSub.get_message(timeout=...)`` catches and returns from; fixed in 3.12's asyncio). A task
cancelled once then runs on, and a shutdown that awaits it hangs for ever. So background tasks
are cancelled again until they end, with a bound.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(
    task: asyncio.Task[object] | asyncio.Task[None], *, tries: int = 20, every_s: float = 0.25
) -> bool:
    """Cancel ``task`` until it is done (at most ``tries`` times, ``every_s`` seconds apart).

    Returns:
        True when the task ended; False when it still runs after every try (a bug to log).
    """
    for _ in range(tries):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=every_s)
    if task.done() and not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
    return task.done()
