"""A gateway app in this process, its upstreams replaced by in-process transports.

For tests of the request path that need no real sockets: the app runs in the test's own event
loop (its lifespan driven here), reached through ``httpx.ASGITransport`` (requests may run
concurrently) or by calling it as an ASGI callable; each upstream is an
an async handler (or any ``httpx.AsyncBaseTransport``) given by the test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from gateway.app import Gateway, GatewayApp, create_app
from gateway.config import load_config
from gateway.settings import Settings, UpstreamSettings
from gateway.upstream import Transport, UpstreamClient

__all__ = [
    "ADMIN_KEY",
    "CANDIDATE",
    "CLIENT_KEY",
    "FALLBACK",
    "HandlerTransport",
    "InProcessGateway",
    "ScriptedStream",
    "completion",
    "in_process_gateway",
    "routes_text",
    "sse",
]

CLIENT_KEY = "sk-inproc-client-7f3a"
ADMIN_KEY = "sk-inproc-admin-91c2"
CANDIDATE = "cand-model"
FALLBACK = "fall-model"
ROUTE = "triage"

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def routes_text(
    *,
    weight: int = 100_000,
    candidate_upstream: str = "up",
    extra_upstreams: str = "",
    upstream_extra: str = "",
    failover_on: str | None = None,
    guard: bool = True,
) -> str:
    """One route ``triage``: candidate ``cand`` (model cand-model) and fallback ``fall``
    (fall-model), both on upstream ``up`` unless ``candidate_upstream`` says otherwise;
    ``failover_on`` defaults to every reason."""
    guard_line = "    guard: {min_samples: 1000}\n" if guard else ""
    failover_line = f"    failover_on: {failover_on}\n" if failover_on else ""
    return f"""
upstreams:
  up:
    base_url: http://up.test/v1
    timeout_s: 2
{upstream_extra}{extra_upstreams}
routes:
  {ROUTE}:
    variants:
      cand: {{upstream: {candidate_upstream}, model: {CANDIDATE}}}
      fall: {{upstream: up, model: {FALLBACK}}}
    candidate: cand
    fallback: fall
    flag: {{enabled: true, weight: {weight}}}
{failover_line}{guard_line}"""


def completion(content: str = "billing", model: str = FALLBACK) -> dict[str, Any]:
    """A minimal ``chat.completion`` body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def sse(*contents: str, done: bool = True) -> bytes:
    """A complete chat completion stream with one content chunk per ``contents`` item."""
    out = b""
    for text in contents:
        chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        out += b"data: " + httpx.Response(200, json=chunk).content + b"\n\n"
    return out + (b"data: [DONE]\n\n" if done else b"")


class HandlerTransport(httpx.AsyncBaseTransport):
    """``httpx.MockTransport`` whose responses come back unread, as from a real transport
    (``httpx.Response(json=...)`` is born read, and the gateway streams bodies raw)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self.handler(request)
        if isinstance(response.stream, httpx.ByteStream):
            response = httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=ScriptedStream([response.content]),
            )
        return response


@dataclass
class InProcessGateway:
    """The app, its parts, and a client bound to it (lifespan running)."""

    app: GatewayApp
    gw: Gateway
    client: httpx.AsyncClient

    async def chat(
        self, body: Mapping[str, Any] | None = None, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST a chat completion to route ``triage`` (default: one user message, unary)."""
        sent = {"authorization": f"Bearer {CLIENT_KEY}", **(headers or {})}
        payload = dict(body or {})
        payload.setdefault("model", ROUTE)
        payload.setdefault("messages", [{"role": "user", "content": "refund me"}])
        return await self.client.post("/v1/chat/completions", json=payload, headers=sent)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples ``name`` whose labels include ``labels``."""
        total = 0.0
        for family in self.gw.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@asynccontextmanager
async def in_process_gateway(
    tmp_path: Path,
    upstream: Handler | Mapping[str, httpx.AsyncBaseTransport | Transport],
    *,
    routes: str | None = None,
    upstream_settings: Mapping[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[InProcessGateway]:
    """Build the app for ``routes`` (default :func:`routes_text`) with every upstream answered
    by ``upstream`` (an async handler, wrapped in :class:`HandlerTransport`), or by the transport
    named after it in a mapping: an ``httpx.AsyncBaseTransport`` (adapted by
    :class:`gateway.upstream.HttpxTransport`) or a :class:`gateway.upstream.Transport`. An
    upstream not in the mapping keeps its real transport."""
    path = tmp_path / "routes.yaml"
    path.write_text(routes if routes is not None else routes_text())
    config = load_config(path)
    upstream_cfg = UpstreamSettings(**(upstream_settings or {}))
    settings.setdefault("flag_store", f"sqlite:///{tmp_path}/flags.db")
    full = Settings(
        _env_file=None,
        config=path,
        client_keys={"app": SecretStr(CLIENT_KEY)},
        admin_keys={"ops": SecretStr(ADMIN_KEY)},
        upstream=upstream_cfg,
        **settings,
    )
    app = create_app(full, config)
    gw: Gateway = app.state.gateway
    transports: Mapping[str, httpx.AsyncBaseTransport | Transport]
    if isinstance(upstream, Mapping):
        transports = upstream
    else:
        transports = {name: HandlerTransport(upstream) for name in config.upstreams}
    for name, transport in transports.items():
        cfg = config.upstreams[name]
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        await gw.upstreams.clients[name].aclose()
        gw.upstreams.clients[name] = UpstreamClient(
            name, cfg, upstream_cfg, key, redactor=gw.upstreams.redactor, transport=transport
        )
    async with (
        lifespan(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="http://gateway.test",
        ) as client,
    ):
        yield InProcessGateway(app, gw, client)


@asynccontextmanager
async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan (start-up, then shutdown on exit) in this event loop.

    Litestar's own ``AsyncTestClient`` runs the app in a portal thread with its own loop, which
    serialises requests and keeps in-process upstream servers of the test's loop from running.
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    message = await asyncio.wait_for(outbox.get(), 30)
    assert message["type"] == "lifespan.startup.complete", message
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        message = await asyncio.wait_for(outbox.get(), 30)
        assert message["type"] == "lifespan.shutdown.complete", message
        await asyncio.wait_for(task, 30)


class ScriptedStream(httpx.AsyncByteStream):
    """A response body given as a list of byte chunks; remembers whether it was closed and
    how many chunks were read. An ``Exception`` in the list is raised when reached; a float
    makes the stream sleep that many seconds (only for deadline tests)."""

    def __init__(self, chunks: list[bytes | float | Exception]) -> None:
        self.chunks = chunks
        self.read = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for item in self.chunks:
            if isinstance(item, Exception):
                raise item
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            self.read += 1
            yield item

    async def aclose(self) -> None:
        self.closed = True
