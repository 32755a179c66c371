"""Translate transport exceptions (httpx, and aiohttp under httpx-aiohttp) into ours.

httpx-aiohttp maps aiohttp's exceptions onto httpx's, but coarsely: a refused connection arrives
as ``httpx.ConnectTimeout`` because ``ClientConnectorError`` is a ``ClientConnectionError``. So
the original aiohttp exception (the ``__cause__``) is checked first, then httpx's class.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx

from gateway.errors import (
    PoolExhaustedError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
)

__all__ = ["translate_transport_error"]


def translate_transport_error(exc: BaseException, upstream: str) -> UpstreamError:
    """Map a transport exception to an :class:`~gateway.errors.UpstreamError` subclass.

    Connection refused or reset: :class:`UpstreamConnectError` (502, failover ``connect``).
    Connect or read timeout: :class:`UpstreamTimeoutError` (504, failover ``timeout``).
    No free pooled connection in time: :class:`PoolExhaustedError` (503).
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"cannot connect to upstream '{upstream}'", upstream=upstream)
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return UpstreamTimeoutError(
            f"upstream '{upstream}' did not answer in time", upstream=upstream
        )
    if isinstance(cause, aiohttp.ClientError):
        return UpstreamConnectError(
            f"upstream '{upstream}' closed the connection unexpectedly", upstream=upstream
        )
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhaustedError(
            f"no free connection to upstream '{upstream}'; the pool is exhausted, retry later",
            upstream=upstream,
        )
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError):
        return UpstreamTimeoutError(
            f"upstream '{upstream}' did not answer in time", upstream=upstream
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError(f"cannot connect to upstream '{upstream}'", upstream=upstream)
    return UpstreamConnectError(
        f"upstream '{upstream}' closed the connection unexpectedly", upstream=upstream
    )
