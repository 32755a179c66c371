"""The pooled, long-lived upstream clients: one per configured upstream.

Each client sends on a :class:`~gateway.upstream.transport.Transport` chosen by
``GATEWAY_UPSTREAM__TRANSPORT``: ``aiohttp`` (the default: one ``aiohttp.ClientSession`` per
upstream, called directly) or ``httpx`` (httpx's own pool under the same interface). Tests
inject either an ``httpx.AsyncBaseTransport`` (adapted) or a transport of their own. Every
transport exception leaves this module as an :class:`~gateway.errors.UpstreamError`.

Limits are set on purpose: ``max_connections`` per upstream, a connect timeout, a pool timeout
(waiting for a free connection ends in 503 ``pool_exhausted`` instead of queueing forever,
counted by :mod:`gateway.upstream.slots` so it is never mistaken for a timeout), the upstream's own
read timeout (``timeout_s`` in the routes file, time allowed between two reads) and a deadline
for the whole call (``deadline_s``, default four read timeouts: a unary answer in full, a stream
up to its first event), so an upstream trickling one byte per read timeout cannot hold a request
for ever.

Headers and the URL are prepared once; each request adds only its ``x-request-id`` and, when
given, its trace-context headers (``traceparent``, ``tracestate``, ``baggage``). Redirects
are not followed and upstream cookies are never kept (they must not be replayed across
different clients' requests).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import httpx

from gateway.config import UpstreamConfig
from gateway.errors import ConfigError, UpstreamStatusError, UpstreamTimeoutError
from gateway.settings import UpstreamSettings
from gateway.upstream.deadline import Deadlines
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.redact import Redactor
from gateway.upstream.slots import ConnectionSlots
from gateway.upstream.stream_start import (
    FirstEventCheck,
    OpenedStream,
    check_chat_first,
    read_first_event,
)
from gateway.upstream.transport import (
    AiohttpTransport,
    HttpxTransport,
    Transport,
    TransportError,
    TransportResponse,
)

__all__ = ["CHAT_PATH", "UpstreamAnswer", "UpstreamClient", "UpstreamPool"]

CHAT_PATH = "/chat/completions"
"""The chat completions endpoint under an upstream's ``base_url`` (the default path)."""

_MAX_ERROR_BODY = 64 * 1024
DEADLINE_READ_TIMEOUTS = 4
"""Default ``deadline_s``: this many read timeouts (``timeout_s``)."""


class UpstreamAnswer:
    """A unary answer read in full: ``status`` (2xx), ``headers`` and ``content`` (bytes)."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: object, content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class UpstreamClient:
    """One upstream: its pooled transport and its credentials (never the client's)."""

    __slots__ = (
        "_base_url",
        "_deadlines",
        "_headers",
        "_redactor",
        "_slots",
        "_url",
        "_urls",
        "base_url",
        "deadline_s",
        "max_event_bytes",
        "name",
        "transport",
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
        transport: Transport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``redactor`` removes secrets from relayed error bodies (default: this upstream's
        key); ``transport`` replaces the configured one: a :class:`Transport`, or an
        ``httpx.AsyncBaseTransport`` (e.g. ``httpx.MockTransport``), adapted."""
        self.name = name
        self._redactor = redactor or Redactor([api_key] if api_key else [])
        self.base_url = config.base_url
        self.url = self._url = config.base_url + CHAT_PATH
        self._urls = {CHAT_PATH: self._url}
        self.max_event_bytes = settings.max_event_bytes
        self.deadline_s = config.deadline_s or DEADLINE_READ_TIMEOUTS * config.timeout_s
        self._deadlines = Deadlines(self.deadline_s)
        self._slots = ConnectionSlots(name, settings.max_connections, settings.pool_timeout_s)
        headers = {"content-type": "application/json", **config.headers}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._headers = headers
        if isinstance(transport, httpx.AsyncBaseTransport):
            transport = HttpxTransport(transport, _httpx_timeout(config, settings))
        elif transport is None and settings.transport == "httpx":
            limits = httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_keepalive_connections,
                keepalive_expiry=settings.keepalive_expiry_s,
            )
            transport = HttpxTransport(
                httpx.AsyncHTTPTransport(limits=limits), _httpx_timeout(config, settings)
            )
        elif transport is None:
            transport = AiohttpTransport(
                limit=settings.max_connections,
                keepalive_s=settings.keepalive_expiry_s,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=config.timeout_s,
            )
        self.transport: Transport = transport

    async def send(
        self,
        body: bytes,
        *,
        request_id: str,
        stream: bool = False,
        path: str = CHAT_PATH,
        trace_headers: Mapping[str, str] | None = None,
    ) -> UpstreamAnswer:
        """POST a chat completion (or another operation: ``path`` under the upstream's
        ``base_url``, e.g. ``/responses``) and read the answer in full, within ``deadline_s``.

        ``stream`` must be false (kept for callers that say so; streams use
        :meth:`open_stream`). ``path`` posts to another endpoint under the upstream's
        ``base_url`` instead (e.g. ``/embeddings``), with the same slots, deadline and errors.
        ``trace_headers`` are sent along (W3C trace context).

        Raises:
            PoolExhaustedError: no free connection within ``pool_timeout_s`` (before the
                deadline starts: waiting for a turn is the gateway's saturation).
            UpstreamStatusError: the upstream answered a non-2xx status (its body is kept for
                relaying 4xx answers about the client's request).
            UpstreamTimeoutError: the deadline passed (or a connect or read timeout).
            UpstreamConnectError: the connection was refused or dropped.
        """
        assert not stream, "use open_stream"
        slots = self._slots
        await slots.acquire()
        try:
            with self._deadlines.start():  # one timer per upstream, not per call
                response = await self._post(request_id, body, path, trace_headers)
                try:
                    content = await response.read()
                except BaseException:
                    await response.aclose()
                    raise
            return UpstreamAnswer(response.status, response.headers, content)
        except TransportError as exc:
            raise translate_transport_error(exc, self.name) from None
        except TimeoutError:
            raise self._past_deadline() from None
        finally:
            slots.release()

    async def open_stream(
        self,
        body: bytes,
        *,
        request_id: str,
        path: str = CHAT_PATH,
        check_first: FirstEventCheck = check_chat_first,
        trace_headers: Mapping[str, str] | None = None,
    ) -> OpenedStream:
        """POST a streaming chat completion (or another operation at ``path``) and read it up to
        its first data event, within ``deadline_s``; ``check_first`` judges that event (see
        :mod:`gateway.upstream.stream_start`); ``trace_headers`` are sent along. The caller must
        :meth:`~gateway.upstream.stream_start.OpenedStream.aclose` the result (which gives the
        connection slot back). ``path``: as for :meth:`send` (e.g. ``/completions``).

        Raises:
            UpstreamProtocolError: 2xx but not a valid event stream (failover ``invalid_response``).
            UpstreamStatusError, UpstreamTimeoutError, UpstreamConnectError, PoolExhaustedError:
                as :meth:`send`.
        """
        slots = self._slots
        await slots.acquire()
        handed_over = False
        try:
            with self._deadlines.start():  # one timer per upstream, not per call
                response = await self._post(request_id, body, path, trace_headers)
                try:
                    opened = await read_first_event(
                        response, self.name, self.max_event_bytes, check_first
                    )
                except BaseException:
                    await response.aclose()
                    raise
                opened.release = slots.release
                handed_over = True
                return opened
        except TransportError as exc:
            raise translate_transport_error(exc, self.name) from None
        except TimeoutError:
            raise self._past_deadline() from None
        finally:
            if not handed_over:
                slots.release()

    def _past_deadline(self) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"upstream '{self.name}' did not answer within its deadline of {self.deadline_s:g} s",
            upstream=self.name,
        )

    async def _post(
        self,
        request_id: str,
        body: bytes,
        path: str,
        trace_headers: Mapping[str, str] | None = None,
    ) -> TransportResponse:
        """The response of a 2xx answer, body unread. Raises TransportError,
        UpstreamStatusError."""
        headers = self._headers.copy()
        headers["x-request-id"] = request_id
        if trace_headers:
            headers.update(trace_headers)
        url = self._urls.get(path)
        if url is None:  # one per operation, built once
            url = self._urls[path] = self.base_url + path
        response = await self.transport.post(url, headers, body)
        if response.status >= 300:
            raise await self._status_error(response)
        return response

    async def _status_error(self, response: TransportResponse) -> UpstreamStatusError:
        body = b""
        try:
            async for part in response.chunks():
                body += part
                if len(body) > _MAX_ERROR_BODY:
                    body = b""
                    break
        finally:
            await response.aclose()
        if not body.lstrip().startswith(b"{"):
            body = b""
        body = self._redactor.bytes(body)
        return UpstreamStatusError(
            f"upstream '{self.name}' answered HTTP {response.status}",
            upstream=self.name,
            upstream_status=response.status,
            body=body or None,
            retry_after=response.headers.get("retry-after"),
        )

    async def aclose(self) -> None:
        await self.transport.aclose()


def _httpx_timeout(config: UpstreamConfig, settings: UpstreamSettings) -> dict[str, float]:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout_s,
        read=config.timeout_s,
        write=config.timeout_s,
        pool=settings.pool_timeout_s,
    )
    return timeout.as_dict()  # type: ignore[return-value]


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
