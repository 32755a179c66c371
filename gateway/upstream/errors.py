"""Translate transport exceptions into ours.

The transports (:mod:`gateway.upstream.transport`) raise
:class:`~gateway.upstream.transport.TransportError` with a ``kind``; aiohttp's and httpx's own
exceptions are understood too (for httpx-aiohttp's, the aiohttp ``__cause__`` is checked first:
it reports a refused connection as ``httpx.ConnectTimeout``).
"""

from __future__ import annotations

from gateway.errors import (
    PoolExhaustedError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.upstream.transport import error_kind

__all__ = ["translate_transport_error"]


def translate_transport_error(exc: BaseException, upstream: str) -> UpstreamError:
    """Map a transport exception to an :class:`~gateway.errors.UpstreamError` subclass.

    Connection refused: :class:`UpstreamConnectError` (502, failover ``connect``); reset or
    dropped: the same, "closed the connection unexpectedly". Connect or read timeout:
    :class:`UpstreamTimeoutError` (504, failover ``timeout``). No free pooled connection in
    time: :class:`PoolExhaustedError` (503). The message names the upstream, never the
    low-level text (it may carry host names).
    """
    kind = error_kind(exc)
    if kind == "connect":
        return UpstreamConnectError(f"cannot connect to upstream '{upstream}'", upstream=upstream)
    if kind == "timeout":
        return UpstreamTimeoutError(
            f"upstream '{upstream}' did not answer in time", upstream=upstream
        )
    if kind == "pool":
        return PoolExhaustedError(
            f"no free connection to upstream '{upstream}'; the pool is exhausted, retry later",
            upstream=upstream,
        )
    return UpstreamConnectError(
        f"upstream '{upstream}' closed the connection unexpectedly", upstream=upstream
    )
