"""Two replicas on one Redis ramp a route exactly once per step.

Deliberately small: two in-process gateways (``tests.inprocess``, one event loop) share a
private ``redis-server`` (``tests.redis_server``: never the shared one) as their flag store and
outcome store. Their background loops are asleep; the test takes every look itself, and at
each look it makes **both** replicas decide at once on the same totals (``asyncio.gather`` of
their ramp steps), the race a ramp must survive: both see the step due, both write with
compare-and-set on the version they saw, exactly one write lands, the other stands down. The
proof is the audit: one ``ramp_start`` and one ``ramp_advance`` per step, nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from gateway.routing import FlagState
from tests.inprocess import ADMIN_KEY, CANDIDATE, InProcessGateway, completion, in_process_gateway
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROUTES = f"""
upstreams:
  up: {{base_url: http://up.test/v1, timeout_s: 2}}
routes:
  triage:
    contract: {{labels: [billing, technical]}}
    variants:
      cand: {{upstream: up, model: {CANDIDATE}}}
      fall: {{upstream: up, model: fall-model}}
    candidate: cand
    fallback: fall
    guard: {{min_samples: 20, margin: 0.1}}
    ramp: {{steps: ['20%', '50%', '100%'], min_samples: 30, min_dwell_s: 0}}
"""
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MAX_LOOKS = 200


async def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion("billing"))


async def same_version(*gateways: InProcessGateway) -> None:
    """Wait (bounded) until every replica serves the same flag version (Redis pub/sub)."""
    for _ in range(500):
        versions = {gw.gw.flags.flag("triage") for gw in gateways}
        if len({None if f is None else f.version for f in versions}) == 1:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the replicas did not converge on one flag version")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@asynccontextmanager
async def replicas(tmp_path: Path, url: str, count: int) -> AsyncIterator[list[InProcessGateway]]:
    async with AsyncExitStack() as stack:
        gateways = [
            await stack.enter_async_context(
                in_process_gateway(
                    tmp_path / f"gw-{i}",
                    answer,
                    routes=ROUTES,
                    flag_store=url,
                    flag_store_namespace="ramp-replicas",
                    replica_id=f"gw-{i}",
                    guard_tick_s=3600,
                    guard_flush_s=3600,
                )
            )
            for i in range(count)
        ]
        yield gateways


async def test_two_replicas_advance_once_per_step(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    subjects = itertools.count()
    for i in range(2):
        (tmp_path / f"gw-{i}").mkdir()
    async with replicas(tmp_path, redis_server.url, 2) as (a, b):
        writes: list[list[FlagState]] = []
        races: list[int] = []  # looks where both replicas found a step due: writes landed
        for _ in range(MAX_LOOKS):
            for gw in (a, b, a, b, a, b, a, b, a, b):
                response = await gw.chat(headers={"x-gateway-subject": f"s{next(subjects)}"})
                assert response.status_code == 200, response.text
            for gw in (a, b, a):  # a again: both see the same route-wide totals
                await gw.gw.guard_runner.sync_once()
            due = [gw.gw.ramper.look("triage") for gw in (a, b)]
            both_due = all(m is not None and m.action in ("start", "advance") for m in due)
            wrote = await asyncio.gather(a.gw.ramper.step(), b.gw.ramper.step())
            writes.append([state for side in wrote for state in side])
            if both_due:
                races.append(len(writes[-1]))
            await same_version(a, b)
            flags = [gw.gw.flags.flag("triage") for gw in (a, b)]
            if all(f is not None and f.weight == 100_000 for f in flags):
                break
        else:
            pytest.fail("the ramp did not reach 100% within the looks allowed")

        assert all(len(w) <= 1 for w in writes), "two replicas wrote the same step"
        assert races == [1, 1, 1]  # start, 20% -> 50%, 50% -> 100%: each raced, one won
        page = (
            await a.client.get("/admin/audit", headers=ADMIN, params={"route": "triage"})
        ).json()
        entries = list(reversed(page["data"]))
        assert [e["action"] for e in entries] == ["ramp_start", "ramp_advance", "ramp_advance"]
        assert [e["after"]["weight"] for e in entries] == [20_000, 50_000, 100_000]
        assert {e["evidence"]["replica"] for e in entries} <= {"gw-0", "gw-1"}
        assert [e["after"]["version"] for e in entries] == [1, 2, 3]
