"""The upstream transport: the small interface the gateway's upstream client needs, and its
implementations.

:class:`Transport` sends one POST and returns a :class:`TransportResponse` (status, headers,
the body read whole or iterated as raw chunks, close). Every failure of the connection leaves a
transport as :class:`TransportError` with a ``kind``; :mod:`gateway.upstream.errors` turns it
into the gateway's :class:`~gateway.errors.UpstreamError` naming the upstream.

* :class:`AiohttpTransport` (the default, ``GATEWAY_UPSTREAM__TRANSPORT=aiohttp``): the call
  straight on one ``aiohttp.ClientSession`` per upstream (``TCPConnector`` limit
  ``max_connections``, keep-alive ``keepalive_expiry_s``, redirects not followed, no cookie
  jar). Going through httpx's objects on top of aiohttp (httpx-aiohttp) cost about 50 µs of
  CPU per request (bench/RESULTS.md, "Data plane v2").
* :class:`HttpxTransport`: any ``httpx.AsyncBaseTransport`` under this interface: httpx's own
  pool (``GATEWAY_UPSTREAM__TRANSPORT=httpx``) or, in tests, ``httpx.MockTransport`` and
  handlers answering ``httpx.Request`` objects (``tests/inprocess.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol

import aiohttp
import httpx

__all__ = [
    "AiohttpTransport",
    "HttpxTransport",
    "Transport",
    "TransportError",
    "TransportResponse",
    "error_kind",
]

ErrorKind = Literal["connect", "timeout", "closed", "pool"]


class TransportError(Exception):
    """A transport failed: ``kind`` is ``connect`` (refused, unreachable), ``timeout`` (connect
    or read timeout), ``closed`` (the connection dropped or the answer broke off) or ``pool``
    (no pooled connection in time). The library's exception is the ``__cause__``."""

    def __init__(self, kind: ErrorKind) -> None:
        super().__init__(kind)
        self.kind: ErrorKind = kind


class TransportResponse(Protocol):
    """An upstream's answer, its head read and its body not yet.

    ``headers`` look names up case-insensitively. Read the body whole with :meth:`read` (the
    connection goes back to the pool) or chunk by chunk with :meth:`chunks` and then
    :meth:`aclose` (idempotent; a body not read to its end closes the connection).
    :meth:`read` and iterating :meth:`chunks` raise :class:`TransportError`.
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    """Sends POST requests to one upstream. Raises :class:`TransportError`."""

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> TransportResponse:
        """POST ``body`` to ``url``; return once the response head is in."""
        ...

    async def aclose(self) -> None: ...


def error_kind(exc: BaseException) -> ErrorKind:
    """The :class:`TransportError` kind of an aiohttp or httpx exception (for httpx-aiohttp's,
    the aiohttp ``__cause__`` first: it maps a refused connection to ``ConnectTimeout``)."""
    if isinstance(exc, TransportError):
        return exc.kind
    cause = exc.__cause__
    if cause is not None and isinstance(cause, aiohttp.ClientError | asyncio.TimeoutError):
        exc = cause
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientError):
        return "closed"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "closed"


# ---------------------------------------------------------------------------------------------
# aiohttp


def tcp_connector(limit: int, keepalive_s: float) -> aiohttp.BaseConnector:
    """The pooled connector of one upstream (bench/profile_inprocess.py replaces it)."""
    return aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=keepalive_s)


class AiohttpTransport:
    """One ``aiohttp.ClientSession`` for one upstream, made on first use (it needs the running
    loop): at most ``limit`` connections, idle ones kept ``keepalive_s``, ``connect_timeout_s``
    to connect, ``read_timeout_s`` between two reads."""

    __slots__ = ("_keepalive_s", "_limit", "_session", "_timeout")

    connector_factory: Callable[[int, float], aiohttp.BaseConnector] = staticmethod(tcp_connector)

    def __init__(
        self, *, limit: int, keepalive_s: float, connect_timeout_s: float, read_timeout_s: float
    ) -> None:
        self._limit = limit
        self._keepalive_s = keepalive_s
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=type(self).connector_factory(self._limit, self._keepalive_s),
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),  # never replay one client's cookies to another
            trust_env=False,
        )
        return self._session

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> _AiohttpResponse:
        session = self._session or self._open()
        try:
            response = await session.post(url, data=body, headers=headers, allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(error_kind(exc)) from exc
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _AiohttpResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(error_kind(exc)) from exc

    def chunks(self) -> AsyncIterator[bytes]:
        return _AiohttpChunks(self._response.content)

    async def aclose(self) -> None:
        self._response.release()


class _AiohttpChunks:
    """Raw chunks as they arrive (``StreamReader.readany``), errors as TransportError."""

    __slots__ = ("_content",)

    def __init__(self, content: aiohttp.StreamReader) -> None:
        self._content = content

    def __aiter__(self) -> _AiohttpChunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(error_kind(exc)) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk


# ---------------------------------------------------------------------------------------------
# httpx


class HttpxTransport:
    """An ``httpx.AsyncBaseTransport`` under :class:`Transport`; ``timeout`` is httpx's
    ``Timeout.as_dict()`` (it travels in each request's extensions)."""

    __slots__ = ("_timeout", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout: dict[str, Any]) -> None:
        self.transport = transport
        self._timeout = timeout

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> _HttpxResponse:
        request = httpx.Request(
            "POST", url, content=body, headers=headers, extensions={"timeout": self._timeout}
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise TransportError(error_kind(exc)) from exc
        response.request = request
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        await self.transport.aclose()


class _HttpxResponse:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise TransportError(error_kind(exc)) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise TransportError(error_kind(exc)) from exc

    async def aclose(self) -> None:
        await self._response.aclose()
