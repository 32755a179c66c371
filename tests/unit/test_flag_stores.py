"""The flag stores against real backends: a SQLite file in tmp_path and Redis on 127.0.0.1:6379.

Every test runs on both stores (Redis with a namespace of its own, deleted afterwards): CAS on
``version``, the append-only audit log (newest first, route filter, limit), ``watch()`` seeing a
write by another store instance, and ``StoreUnavailableError`` when the backend is unreachable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.redis import RedisFlagStore
from gateway.flags.sqlite import SQLiteFlagStore
from gateway.flags.store import FlagStore, VersionConflict, open_store
from gateway.routing import FlagState, Targeting
from tests.processes import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
ROUTE = "support-triage"
OTHER = "refund-policy"

Opener = Callable[[], Awaitable[FlagStore]]


def flag(route: str = ROUTE, *, version: int, weight: int = 0, **changes: Any) -> FlagState:
    return FlagState(route=route, version=version, weight=weight, rollout_id="ro_t", **changes)


def entry_for(state: FlagState, before: FlagState | None = None, *, at: float = 0.0) -> AuditEntry:
    return AuditEntry(
        route=state.route,
        at=at or float(state.version),
        actor="ops",
        trigger="manual",
        action="set",
        reason=f"to version {state.version}",
        before=before,
        after=state,
    )


async def put(store: FlagStore, state: FlagState, expected: int) -> None:
    await store.write(state, expected, entry_for(state))


async def write_versions(store: FlagStore, route: str, count: int, start: int = 0) -> None:
    """Write versions start+1 .. start+count of ``route``, each CAS on the previous one."""
    for version in range(start + 1, start + count + 1):
        await put(store, flag(route, version=version, weight=version), version - 1)


@pytest.fixture(params=["sqlite", "redis"])
async def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """A function opening a new store instance on one shared backend (file or namespace).

    Every instance opened is closed after the test; the Redis namespace is deleted.
    """
    opened: list[FlagStore] = []
    namespace = f"test-flags-{uuid.uuid4().hex[:12]}"
    path = tmp_path / "flags.db"

    async def opener() -> FlagStore:
        store: FlagStore
        if request.param == "sqlite":
            store = SQLiteFlagStore(str(path), poll_interval_s=0.02)
        else:
            store = RedisFlagStore(REDIS_URL, namespace=namespace, poll_interval_s=0.05)
        opened.append(store)
        await store.open()
        return store

    yield opener
    for store in opened:
        await store.aclose()
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# -- state and compare-and-set -------------------------------------------------------------------


async def test_empty_store_loads_nothing_and_gets_none(open_backend: Opener) -> None:
    """A new store knows no flag: load() is empty and get() is None (never written)."""
    store = await open_backend()
    assert await store.load() == {}
    assert await store.get(ROUTE) is None
    assert await store.history(None, 10) == []


async def test_written_state_round_trips_with_targeting(open_backend: Opener) -> None:
    """Every field of a written state, targeting sets included, reads back equal."""
    store = await open_backend()
    state = flag(
        version=1,
        weight=12_345,
        enabled=False,
        status="rolled_back",
        salt="salt",
        targeting=Targeting(
            candidate_subjects=frozenset({"a", "b"}), fallback_keys=frozenset({"k"})
        ),
        updated_by="ops (alice)",
        updated_at=1_700_000_000.25,
        reason="ramp",
    )
    await put(store, state, 0)
    assert await store.get(ROUTE) == state
    assert await store.load() == {ROUTE: state}
    other = await open_backend()
    assert await other.get(ROUTE) == state


async def test_two_writes_from_version_0_one_wins_the_other_gets_the_winners_state(
    open_backend: Opener,
) -> None:
    """Concurrent first writes by two store instances: exactly one is stored; the loser's
    VersionConflict carries the winner's state."""
    first, second = await open_backend(), await open_backend()
    a, b = flag(version=1, weight=111), flag(version=1, weight=222)
    results = await asyncio.gather(put(first, a, 0), put(second, b, 0), return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, VersionConflict)]
    assert len(conflicts) == 1, results
    assert sum(r is None for r in results) == 1, results
    winner = a if results[0] is None else b
    assert conflicts[0].current == winner
    assert await first.get(ROUTE) == winner
    assert len(await first.history(ROUTE, 10)) == 1


async def test_write_with_a_stale_version_is_refused_and_changes_nothing(
    open_backend: Opener,
) -> None:
    """A write expecting an older version raises VersionConflict with the stored state and
    neither overwrites the flag nor appends to the audit log."""
    store = await open_backend()
    await write_versions(store, ROUTE, 2)
    stored = await store.get(ROUTE)
    with pytest.raises(VersionConflict) as caught:
        await put(store, flag(version=2, weight=999), 1)
    assert caught.value.current == stored
    assert await store.get(ROUTE) == stored
    assert len(await store.history(ROUTE, 10)) == 2


async def test_write_expecting_a_version_of_a_never_written_flag_conflicts_with_none(
    open_backend: Opener,
) -> None:
    """Expecting version 3 of a flag never written is a conflict whose ``current`` is None."""
    store = await open_backend()
    with pytest.raises(VersionConflict) as caught:
        await put(store, flag(version=4), 3)
    assert caught.value.current is None
    assert await store.get(ROUTE) is None


async def test_flags_of_different_routes_have_independent_versions(open_backend: Opener) -> None:
    """CAS is per route: writing one route does not move another's version."""
    store = await open_backend()
    await write_versions(store, ROUTE, 3)
    await put(store, flag(OTHER, version=1), 0)
    loaded = await store.load()
    assert {name: s.version for name, s in loaded.items()} == {ROUTE: 3, OTHER: 1}


# -- audit ---------------------------------------------------------------------------------------


async def test_history_is_newest_first_with_store_assigned_ids(open_backend: Opener) -> None:
    """history() returns entries newest first, each with a distinct non-empty id."""
    store = await open_backend()
    await write_versions(store, ROUTE, 4)
    entries = await store.history(ROUTE, 10)
    assert [e.after.version for e in entries] == [4, 3, 2, 1]
    assert all(e.id for e in entries)
    assert len({e.id for e in entries}) == 4
    assert entries[0].reason == "to version 4"
    assert entries[0].actor == "ops"


async def test_history_filters_by_route_and_honours_the_limit(open_backend: Opener) -> None:
    """A route filter returns that route's entries only; ``limit`` keeps the newest ones."""
    store = await open_backend()
    for version in range(1, 4):
        await put(store, flag(ROUTE, version=version), version - 1)
        await put(store, flag(OTHER, version=version), version - 1)
    assert [e.route for e in await store.history(OTHER, 10)] == [OTHER] * 3
    assert [(e.route, e.after.version) for e in await store.history(None, 4)] == [
        (OTHER, 3),
        (ROUTE, 3),
        (OTHER, 2),
        (ROUTE, 2),
    ]
    assert [e.after.version for e in await store.history(ROUTE, 2)] == [3, 2]
    assert await store.history("never-written", 10) == []


async def test_history_reads_past_one_page_of_entries_without_repeats(
    open_backend: Opener,
) -> None:
    """More entries than the Redis store reads per page (500): the filter and limit still
    return the newest entries of the route, each once."""
    store = await open_backend()
    await write_versions(store, ROUTE, 520)
    await write_versions(store, OTHER, 3)
    entries = await store.history(ROUTE, 510)
    assert [e.after.version for e in entries] == list(range(520, 10, -1))
    assert len(await store.history(None, 1000)) == 523


async def test_audit_entry_keeps_before_after_and_evidence(open_backend: Opener) -> None:
    """An entry reads back with its before/after states, trigger, action and evidence."""
    store = await open_backend()
    before = flag(version=1, weight=5)
    await put(store, before, 0)
    after = flag(version=2, weight=5, status="rolled_back")
    entry = AuditEntry(
        route=ROUTE,
        at=12.5,
        actor="guard",
        trigger="guard",
        action="rollback",
        reason="ceiling",
        before=before,
        after=after,
        evidence={"failure_rate": 0.5, "samples": 60},
    )
    await store.write(after, 1, entry)
    newest = (await store.history(ROUTE, 1))[0]
    assert msgspec.structs.replace(newest, id="") == entry


async def test_sqlite_audit_refuses_update_and_delete(tmp_path: Path) -> None:
    """The SQLite audit table is append-only: a direct UPDATE or DELETE raises, rows stay."""
    path = tmp_path / "flags.db"
    store = SQLiteFlagStore(str(path))
    await store.open()
    await write_versions(store, ROUTE, 2)
    await store.aclose()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET route = 'tampered'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        assert conn.execute("SELECT count(*) FROM audit WHERE route = ?", (ROUTE,)).fetchone() == (
            2,
        )
    finally:
        conn.close()


# -- watch ---------------------------------------------------------------------------------------


async def test_watch_yields_after_another_store_instance_writes(open_backend: Opener) -> None:
    """A watcher on one instance (connection/client) wakes up after a write by another."""
    watcher, writer = await open_backend(), await open_backend()
    changes = watcher.watch()
    woke = asyncio.ensure_future(anext(changes))
    version = 0
    try:
        # Keep writing until the watcher notices: it may still be subscribing when we start.
        async with asyncio.timeout(10):
            while not woke.done():
                await put(writer, flag(version=version + 1), version)
                version += 1
                await asyncio.wait({woke}, timeout=0.2)
        await woke
        assert (await watcher.get(ROUTE)) == flag(version=version)
    finally:
        woke.cancel()
        await asyncio.gather(woke, return_exceptions=True)
        await changes.aclose()  # type: ignore[attr-defined]


async def test_watch_stays_quiet_without_writes(open_backend: Opener) -> None:
    """No write, no wake-up: watch() does not yield on its own polling."""
    store = await open_backend()
    changes = store.watch()
    woke = asyncio.ensure_future(anext(changes))
    try:
        done, _ = await asyncio.wait({woke}, timeout=0.5)
        assert not done
    finally:
        woke.cancel()
        await asyncio.gather(woke, return_exceptions=True)
        await changes.aclose()  # type: ignore[attr-defined]


# -- unreachable stores --------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["", ":s3cret-Passw0rd@", "gateway-user:s3cret-Passw0rd@"])
async def test_unreachable_redis_raises_store_unavailable_without_url_or_password(
    credentials: str,
) -> None:
    """Every call to a Redis on a closed port raises StoreUnavailableError (503) whose message
    names neither the URL, the host, the port, the user nor the password."""
    port = free_port()
    url = f"redis://{credentials}127.0.0.1:{port}/0"
    store = open_store(url, namespace="unreachable", poll_interval_s=0.05)
    calls: list[Callable[[], Awaitable[object]]] = [
        store.open,
        store.load,
        lambda: store.get(ROUTE),
        lambda: put(store, flag(version=1), 0),
        lambda: store.history(None, 10),
        lambda: anext(store.watch()),
    ]
    try:
        for call in calls:
            with pytest.raises(StoreUnavailableError) as caught:
                await asyncio.wait_for(call(), timeout=10)
            error = caught.value
            assert error.status_code == 503
            assert "unavailable" in error.message
            for secret in (
                "redis://",
                "127.0.0.1",
                str(port),
                "s3cret",
                "Passw0rd",
                "gateway-user",
            ):
                assert secret not in error.message
                assert secret not in error.to_body().decode()
    finally:
        await store.aclose()


async def test_sqlite_store_in_an_uncreatable_directory_is_unavailable(tmp_path: Path) -> None:
    """A SQLite path whose directory cannot be created raises StoreUnavailableError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = SQLiteFlagStore(str(blocker / "sub" / "flags.db"))
    with pytest.raises(StoreUnavailableError):
        await store.open()
    await store.aclose()
