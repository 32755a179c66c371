"""How many calls one upstream may have in flight, and how long a call waits for a turn.

The transports have a connection limit of their own, but a wait on it surfaces as a timeout:
aiohttp's ``ClientTimeout.connect`` covers both waiting for a pooled connection and connecting
and raises the same ``ConnectionTimeoutError`` for either (httpx-aiohttp mapped it to
``httpx.ConnectTimeout``). A full pool then looked like a slow upstream (failover reason
``timeout``), and the guard counted the gateway's own saturation against a healthy candidate.

So the gateway counts in-flight calls itself, with the same limit (``max_connections``), before
the transport is asked: a call that gets no slot within ``pool_timeout_s`` is a
:class:`~gateway.errors.PoolExhaustedError`, unambiguously, and the transport never waits.
"""

from __future__ import annotations

import asyncio

from gateway.errors import PoolExhaustedError

__all__ = ["ConnectionSlots"]


class ConnectionSlots:
    """``limit`` slots for one upstream; :meth:`acquire` waits at most ``wait_s`` for one."""

    __slots__ = ("_semaphore", "_wait_s", "limit", "upstream")

    def __init__(self, upstream: str, limit: int, wait_s: float) -> None:
        self.upstream = upstream
        self.limit = limit
        self._wait_s = wait_s
        self._semaphore = asyncio.Semaphore(limit)

    async def acquire(self) -> None:
        """Take a slot; the caller must :meth:`release` it once (a stream's slot is released by
        :meth:`gateway.upstream.stream_start.OpenedStream.aclose`).

        Raises:
            PoolExhaustedError: no slot became free within ``wait_s``.
        """
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # free: returns without suspending
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await semaphore.acquire()
        except TimeoutError:
            raise PoolExhaustedError(
                f"no free connection to upstream '{self.upstream}' within {self._wait_s:g} s "
                f"({self.limit} in use); the gateway is saturated, retry later",
                upstream=self.upstream,
            ) from None

    def release(self) -> None:
        self._semaphore.release()
