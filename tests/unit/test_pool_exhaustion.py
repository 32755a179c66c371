"""A full upstream pool is the gateway's saturation: 503 pool_exhausted (or a failover to a
fallback on another upstream), counted per upstream, never against the candidate.

The busy upstream is a real aiohttp server in this process on 127.0.0.1, reached through the
real aiohttp transport with a pool of one connection; its first request is held until the test
lets it go, so the second one finds the pool full without any timing race.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.inprocess import (
    HandlerTransport,
    InProcessGateway,
    completion,
    in_process_gateway,
    routes_text,
)


class HeldUpstream:
    """An aiohttp server whose first chat request waits for :attr:`release`."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests == 1:
            self.arrived.set()
            await self.release.wait()
        return web.json_response(completion())


@pytest.fixture
async def held() -> AsyncIterator[HeldUpstream]:
    upstream = HeldUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    upstream.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield upstream
    finally:
        upstream.release.set()
        await runner.cleanup()


def guard_spy(g: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    observed: list[tuple[str, bool]] = []
    original = g.gw.quality.guard.observe

    def spy(route: str, rollout_id: str, role: Any, failed: bool) -> None:
        observed.append((role, failed))
        original(route, rollout_id, role, failed)

    monkeypatch.setattr(g.gw.quality.guard, "observe", spy)
    return observed


TINY_POOL = {"max_connections": 1, "pool_timeout_s": 0.2}


async def test_a_full_pool_is_503_pool_exhausted_and_not_the_candidates_failure(
    tmp_path: Path, held: HeldUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidate and fallback share the busy upstream: no failover (the same pool would make the
    fallback wait again), a 503 pool_exhausted, gateway_pool_exhausted_total{upstream} counted,
    and the guard sees nothing of the request; the held request still succeeds."""
    routes = routes_text(upstream_extra="").replace("http://up.test/v1", held.url)
    async with in_process_gateway(tmp_path, {}, routes=routes, upstream_settings=TINY_POOL) as g:
        observed = guard_spy(g, monkeypatch)
        first = asyncio.create_task(g.chat())
        await asyncio.wait_for(held.arrived.wait(), 10)
        second = await g.chat()
        assert second.status_code == 503, second.text
        error = second.json()["error"]
        assert error["code"] == "pool_exhausted"
        assert error["type"] == "server_error"
        assert second.headers["x-gateway-variant"] == "cand"
        assert g.metric("gateway_pool_exhausted_total", upstream="up") == 1
        assert g.metric("gateway_failovers_total") == 0
        assert observed == []
        held.release.set()
        assert (await asyncio.wait_for(first, 10)).status_code == 200
        assert observed == [("candidate", False)]
        assert held.requests == 1  # the refused call never reached the upstream


async def test_a_full_candidate_pool_fails_over_to_a_fallback_on_another_upstream(
    tmp_path: Path, held: HeldUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate's upstream is saturated, the fallback's is not: the fallback answers
    (failover reason pool_exhausted) and the candidate is not counted as failed."""
    routes = routes_text(
        candidate_upstream="busy",
        extra_upstreams=f"  busy: {{base_url: {held.url}, timeout_s: 5}}\n",
    )

    async def fallback(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["model"] == "fall-model"
        return httpx.Response(200, json=completion())

    async with in_process_gateway(
        tmp_path, {"up": HandlerTransport(fallback)}, routes=routes, upstream_settings=TINY_POOL
    ) as g:
        observed = guard_spy(g, monkeypatch)
        first = asyncio.create_task(g.chat())
        await asyncio.wait_for(held.arrived.wait(), 10)
        second = await g.chat()
        assert second.status_code == 200, second.text
        assert second.headers["x-gateway-decision"] == "failover"
        assert g.metric("gateway_failovers_total", reason="pool_exhausted") == 1
        assert g.metric("gateway_failovers_total", reason="timeout") == 0
        assert g.metric("gateway_pool_exhausted_total", upstream="busy") == 1
        assert ("candidate", True) not in observed
        held.release.set()
        assert (await asyncio.wait_for(first, 10)).status_code == 200


async def test_every_way_a_call_ends_gives_its_slot_back(tmp_path: Path) -> None:
    """With one slot, calls one after another never find the pool full, however the previous
    one ended: a stream read to [DONE], a stream that starts invalid, an upstream error, a
    deadline, an ordinary answer."""
    answers = iter(
        [
            httpx.Response(200, content=b'data: {"choices": []}\n\ndata: [DONE]\n\n'),
            httpx.Response(200, content=b"<html>oops</html>"),
            httpx.Response(500, json={"error": {"message": "boom"}}),
            None,  # never answers: the deadline ends it
            httpx.Response(200, json=completion()),
        ]
    )

    async def upstream(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer is None:
            await asyncio.Event().wait()
        assert answer is not None
        return answer

    routes = routes_text(weight=0, upstream_extra="    deadline_s: 0.2\n")
    async with in_process_gateway(
        tmp_path, upstream, routes=routes, upstream_settings=TINY_POOL
    ) as g:
        statuses = [
            (await g.chat({"stream": True})).status_code,
            (await g.chat({"stream": True})).status_code,
            (await g.chat()).status_code,
            (await g.chat()).status_code,
            (await g.chat()).status_code,
        ]
        assert statuses == [200, 502, 502, 504, 200]
        assert g.metric("gateway_pool_exhausted_total") == 0
