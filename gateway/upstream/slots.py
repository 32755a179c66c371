"""How many calls one upstream may have in flight, and how long a call waits for a turn.

The transports have a connection limit of their own, but a wait on it surfaces as a timeout:
httpx-aiohttp passes httpx's pool timeout to aiohttp as ``ClientTimeout.connect``, which covers
both waiting for a pooled connection and connecting, and aiohttp raises the same
``ConnectionTimeoutError`` for either, which httpx-aiohttp maps to ``httpx.ConnectTimeout``.
A full pool then looked like a slow upstream (failover reason ``timeout``), and the guard
counted the gateway's own saturation against a healthy candidate.

So the gateway counts in-flight calls itself, with the same limit (``max_connections``), before
the transport is asked: a call that gets no slot within ``pool_timeout_s`` is a
:class:`~gateway.errors.PoolExhaustedError`, unambiguously, and the transport never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

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
        """Take a slot; the caller must :meth:`release` it (or :meth:`release_on_close`).

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

    def release_on_close(self, response: httpx.Response) -> None:
        """Hand the slot to ``response``: it is released once, when the response is closed
        (``aclose()``, or the body read to its end)."""
        response.stream = _ReleasingStream(response.stream, self._semaphore)


class _ReleasingStream(httpx.AsyncByteStream):
    """The response body as it was, plus the slot's release on close. Iteration goes straight
    to the wrapped stream (no extra generator per chunk)."""

    __slots__ = ("_inner", "_semaphore")

    def __init__(
        self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, semaphore: asyncio.Semaphore
    ) -> None:
        assert isinstance(inner, httpx.AsyncByteStream)
        self._inner = inner
        self._semaphore: asyncio.Semaphore | None = semaphore

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            semaphore, self._semaphore = self._semaphore, None
            if semaphore is not None:
                semaphore.release()
