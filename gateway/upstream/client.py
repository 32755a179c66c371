"""The pooled, long-lived upstream clients: one ``httpx.AsyncClient`` per configured upstream.

The transport is chosen by ``GATEWAY_UPSTREAM__TRANSPORT``: ``aiohttp`` (httpx-aiohttp, the
default: httpx's own pool slows down under concurrency, encode/httpx#3215) or ``httpx``. Either
way callers see httpx's interface, and every transport exception leaves this module as an
:class:`~gateway.errors.UpstreamError`.

Limits are set on purpose: ``max_connections`` per upstream, a connect timeout, a pool timeout
(waiting for a free connection ends in 503 ``pool_exhausted`` instead of queueing forever,
counted by :mod:`gateway.upstream.slots` so it is never mistaken for a timeout), the upstream's own
read timeout (``timeout_s`` in the routes file, time allowed between two reads) and a deadline
for the whole call (``deadline_s``, default four read timeouts: a unary answer in full, a stream
up to its first event), so an upstream trickling one byte per read timeout cannot hold a request
for ever.

Requests go straight to the transport with headers, URL and timeouts prepared once: the
``AsyncClient`` machinery around it (per-request URL parsing and header merging, an auth flow, a
redirect loop, a cookie jar) was a fifth of the gateway's CPU per request (bench/RESULTS.md) and
does nothing for us: no auth beyond our fixed header, redirects are not followed, and upstream
cookies must not be kept and replayed across different clients' requests anyway.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

import httpx

from gateway.config import UpstreamConfig
from gateway.errors import ConfigError, UpstreamStatusError, UpstreamTimeoutError
from gateway.settings import UpstreamSettings
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.redact import Redactor
from gateway.upstream.slots import ConnectionSlots
from gateway.upstream.stream_start import OpenedStream, read_first_event

__all__ = ["UpstreamClient", "UpstreamPool"]

_MAX_ERROR_BODY = 64 * 1024
DEADLINE_READ_TIMEOUTS = 4
"""Default ``deadline_s``: this many read timeouts (``timeout_s``)."""


class UpstreamClient:
    """One upstream: its pooled client and its credentials (never the client's)."""

    __slots__ = (
        "_client",
        "_headers",
        "_redactor",
        "_slots",
        "_timeout",
        "_transport",
        "_url",
        "deadline_s",
        "max_event_bytes",
        "name",
        "url",
    )

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        settings: UpstreamSettings,
        api_key: str | None,
        *,
        redactor: Redactor | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``redactor`` removes secrets from relayed error bodies (default: this upstream's
        key); ``transport`` replaces the configured one (tests: ``httpx.MockTransport``)."""
        self.name = name
        self._redactor = redactor or Redactor([api_key] if api_key else [])
        self.url = config.base_url + "/chat/completions"
        self.max_event_bytes = settings.max_event_bytes
        self.deadline_s = config.deadline_s or DEADLINE_READ_TIMEOUTS * config.timeout_s
        self._slots = ConnectionSlots(name, settings.max_connections, settings.pool_timeout_s)
        headers = {"content-type": "application/json", **config.headers}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_keepalive_connections,
            keepalive_expiry=settings.keepalive_expiry_s,
        )
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=config.timeout_s,
            write=config.timeout_s,
            pool=settings.pool_timeout_s,
        )
        if transport is not None:
            pass
        elif settings.transport == "aiohttp":
            from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415 -- optional transport

            transport = AiohttpTransport(limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        self._client = httpx.AsyncClient(
            transport=transport, headers=headers, timeout=timeout, trust_env=False
        )
        self._transport = transport
        self._url = httpx.URL(self.url)
        # The client's default headers (accept, accept-encoding, connection, user-agent) merged
        # with ours, once; each request adds only its x-request-id.
        self._headers = list(self._client.headers.raw)
        self._timeout = timeout.as_dict()

    async def send(self, body: bytes, *, stream: bool, request_id: str) -> httpx.Response:
        """POST a chat completion; return the open response once its status is 2xx.

        With ``stream`` the body is not read: the caller iterates it and must ``aclose()`` it.
        Without, the body is read before returning. Either way within ``deadline_s``.

        Raises:
            PoolExhaustedError: no free connection within ``pool_timeout_s`` (before the
                deadline starts: waiting for a turn is the gateway's saturation).
            UpstreamStatusError: the upstream answered a non-2xx status (its body is kept for
                relaying 4xx answers about the client's request).
            UpstreamTimeoutError: the deadline passed (or a connect or read timeout).
            UpstreamConnectError: the connection was refused or dropped.
        """
        await self._slots.acquire()
        handed_over = False
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self._send(body, stream=stream, request_id=request_id)
            if stream:
                self._slots.release_on_close(response)
                handed_over = True
            return response
        except TimeoutError:
            raise self._past_deadline() from None
        finally:
            if not handed_over:
                self._slots.release()

    async def open_stream(self, body: bytes, *, request_id: str) -> OpenedStream:
        """POST a streaming chat completion and read it up to its first data event, within
        ``deadline_s`` (see :mod:`gateway.upstream.stream_start`). The caller closes
        ``response`` of the result.

        Raises:
            UpstreamProtocolError: 2xx but not a valid event stream (failover ``invalid_response``).
            UpstreamStatusError, UpstreamTimeoutError, UpstreamConnectError, PoolExhaustedError:
                as :meth:`send`.
        """
        await self._slots.acquire()
        handed_over = False
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self._send(body, stream=True, request_id=request_id)
                self._slots.release_on_close(response)
                handed_over = True
                try:
                    return await read_first_event(response, self.name, self.max_event_bytes)
                except BaseException:
                    await response.aclose()
                    raise
        except TimeoutError:
            raise self._past_deadline() from None
        finally:
            if not handed_over:
                self._slots.release()

    def _past_deadline(self) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"upstream '{self.name}' did not answer within its deadline of {self.deadline_s:g} s",
            upstream=self.name,
        )

    async def _send(self, body: bytes, *, stream: bool, request_id: str) -> httpx.Response:
        request = httpx.Request(
            "POST",
            self._url,
            content=body,
            headers=[*self._headers, (b"x-request-id", request_id.encode())],
            extensions={"timeout": self._timeout},
        )
        try:
            response = await self._transport.handle_async_request(request)
            response.request = request
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, self.name) from None
        try:
            if response.status_code >= 300:
                raise await self._status_error(response)
            if not stream:
                await response.aread()
        except httpx.HTTPError as exc:
            await response.aclose()
            raise translate_transport_error(exc, self.name) from None
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _status_error(self, response: httpx.Response) -> UpstreamStatusError:
        body = b""
        async for part in response.aiter_raw():
            body += part
            if len(body) > _MAX_ERROR_BODY:
                body = b""
                break
        await response.aclose()
        if not body.lstrip().startswith(b"{"):
            body = b""
        body = self._redactor.bytes(body)
        return UpstreamStatusError(
            f"upstream '{self.name}' answered HTTP {response.status_code}",
            upstream=self.name,
            upstream_status=response.status_code,
            body=body or None,
            retry_after=response.headers.get("retry-after"),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class UpstreamPool:
    """All upstream clients, built from the routes file; keys read from the environment.

    ``redactor`` removes every upstream key and every one of ``other_secrets`` (the client and
    admin keys) from what is relayed of upstream errors.
    """

    def __init__(
        self,
        upstreams: dict[str, UpstreamConfig],
        settings: UpstreamSettings,
        *,
        other_secrets: Iterable[str] = (),
    ) -> None:
        problems = [
            f"upstreams.{name}.api_key_env: environment variable {cfg.api_key_env} is not set "
            "(export it, or remove api_key_env for an upstream without a key)"
            for name, cfg in upstreams.items()
            if cfg.api_key_env and not os.environ.get(cfg.api_key_env)
        ]
        if problems:
            raise ConfigError(problems)
        keys = {
            name: os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
            for name, cfg in upstreams.items()
        }
        self.redactor = Redactor([*(k for k in keys.values() if k), *other_secrets])
        self.clients = {
            name: UpstreamClient(name, cfg, settings, keys[name], redactor=self.redactor)
            for name, cfg in upstreams.items()
        }

    def __getitem__(self, name: str) -> UpstreamClient:
        return self.clients[name]

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
