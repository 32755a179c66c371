"""The shared outcome counters (gateway.flags.outcomes) against real backends: a SQLite file in
tmp_path and Redis on 127.0.0.1:6379 (a namespace of its own, deleted afterwards).

Each replica writes its cumulative counts under its own id; an exchange returns the sum over
replicas. Rewriting the same counts counts nothing twice; a store that lost its data is whole
again once every replica has written; an unreachable store raises StoreUnavailableError.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.errors import StoreUnavailableError
from gateway.flags.outcomes import (
    OutcomeCounts,
    OutcomeStore,
    RedisOutcomeStore,
    SQLiteOutcomeStore,
    open_outcome_store,
)
from tests.processes import SHARED_REDIS, free_port

KEY = ("triage", "ro_1")
OTHER = ("triage", "ro_2")

Opener = Callable[[], OutcomeStore]


@pytest.fixture(params=["sqlite", "redis"])
async def open_outcomes(
    request: pytest.FixtureRequest, tmp_path: Path, redis_namespace: str
) -> AsyncIterator[Opener]:
    """Open store instances (one per replica) on one backend; all closed after the test."""
    opened: list[OutcomeStore] = []

    def opener() -> OutcomeStore:
        store: OutcomeStore
        if request.param == "sqlite":
            store = SQLiteOutcomeStore(str(tmp_path / "flags.db"))
        else:
            store = RedisOutcomeStore(SHARED_REDIS, namespace=redis_namespace)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.aclose()


async def test_an_exchange_returns_the_sum_over_replicas(open_outcomes: Opener) -> None:
    """A and B write their own counts; each exchange returns A + B; other rollouts apart."""
    a, b = open_outcomes(), open_outcomes()
    assert await a.exchange("a", {KEY: OutcomeCounts(10, 2, 5, 1)}, ()) == {
        KEY: OutcomeCounts(10, 2, 5, 1)
    }
    totals = await b.exchange("b", {KEY: OutcomeCounts(3, 3, 0, 0)}, [OTHER])
    assert totals == {KEY: OutcomeCounts(13, 5, 5, 1), OTHER: OutcomeCounts()}
    assert await a.exchange("a", {}, [KEY]) == {KEY: OutcomeCounts(13, 5, 5, 1)}


async def test_writing_the_same_counts_again_counts_nothing_twice(open_outcomes: Opener) -> None:
    """Counts are absolute per replica: a retried or repeated write is idempotent."""
    a = open_outcomes()
    for _ in range(3):
        totals = await a.exchange("a", {KEY: OutcomeCounts(7, 1, 0, 0)}, ())
    assert totals == {KEY: OutcomeCounts(7, 1, 0, 0)}
    totals = await a.exchange("a", {KEY: OutcomeCounts(9, 1, 0, 0)}, ())
    assert totals == {KEY: OutcomeCounts(9, 1, 0, 0)}


async def test_an_unreachable_redis_raises_store_unavailable() -> None:
    """Nothing listens on the port: StoreUnavailableError, nothing else."""
    store = RedisOutcomeStore(f"redis://127.0.0.1:{free_port()}/0", namespace="t")
    with pytest.raises(StoreUnavailableError):
        await store.exchange("a", {KEY: OutcomeCounts(1, 0, 0, 0)}, ())
    await store.aclose()


async def test_redis_counts_come_back_after_the_store_lost_them(redis_namespace: str) -> None:
    """The keys vanish (Redis restarted empty): the next exchange of each replica restores its
    share, and a malformed value written by something else counts as nothing."""
    a = RedisOutcomeStore(SHARED_REDIS, namespace=redis_namespace)
    b = RedisOutcomeStore(SHARED_REDIS, namespace=redis_namespace)
    await a.exchange("a", {KEY: OutcomeCounts(10, 1, 0, 0)}, ())
    await b.exchange("b", {KEY: OutcomeCounts(20, 2, 0, 0)}, ())
    raw = aioredis.Redis.from_url(SHARED_REDIS)
    await raw.delete(f"{redis_namespace}:outcomes:triage:ro_1")
    assert await a.exchange("a", {KEY: OutcomeCounts(11, 1, 0, 0)}, ()) == {
        KEY: OutcomeCounts(11, 1, 0, 0)
    }
    await raw.hset(f"{redis_namespace}:outcomes:triage:ro_1", "junk", "not,numbers")
    assert await b.exchange("b", {KEY: OutcomeCounts(20, 2, 0, 0)}, ()) == {
        KEY: OutcomeCounts(31, 3, 0, 0)
    }
    await raw.aclose()
    await a.aclose()
    await b.aclose()


async def test_sqlite_follows_a_file_replaced_under_it(tmp_path: Path) -> None:
    """The flag file is removed while running: the next exchange writes to the new file at
    the same path (not the deleted one), and unreadable paths raise StoreUnavailableError."""
    path = tmp_path / "flags.db"
    store = SQLiteOutcomeStore(str(path))
    await store.exchange("a", {KEY: OutcomeCounts(5, 0, 0, 0)}, ())
    for suffix in ("", "-wal", "-shm"):
        if Path(str(path) + suffix).exists():
            os.remove(str(path) + suffix)
    assert await store.exchange("a", {KEY: OutcomeCounts(6, 0, 0, 0)}, ()) == {
        KEY: OutcomeCounts(6, 0, 0, 0)
    }
    assert path.exists()
    await store.aclose()

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    broken = SQLiteOutcomeStore(str(blocked / "flags.db"))
    with pytest.raises(StoreUnavailableError):
        await broken.exchange("a", {KEY: OutcomeCounts(1, 0, 0, 0)}, ())
    await broken.aclose()


def test_open_outcome_store_follows_the_flag_store_url(tmp_path: Path) -> None:
    """sqlite:/// and redis:// choose the backend beside the flag store."""
    assert isinstance(
        open_outcome_store(f"sqlite:///{tmp_path}/f.db", namespace="x"), SQLiteOutcomeStore
    )
    assert isinstance(open_outcome_store(SHARED_REDIS, namespace="x"), RedisOutcomeStore)


def test_malformed_counts_decode_as_nothing() -> None:
    """A value that is not four non-negative integers counts as zero, never raises."""
    for raw in (b"1,2,3", "a,b,c,d", b"1,2,3,-4", ""):
        assert OutcomeCounts.decode(raw) == OutcomeCounts()
    assert OutcomeCounts.decode(b"4,3,2,1") == OutcomeCounts(4, 3, 2, 1)
