"""The flag stores against real backends: a SQLite file in tmp_path and Redis on 127.0.0.1:6379.

Every test runs on both stores (Redis with a namespace of its own, deleted afterwards): CAS on
``version`` and on the generation, the append-only audit log (newest first, route filter, limit,
sequence numbers), heartbeats, ``watch()`` seeing a write by another store instance, and
``StoreUnavailableError`` when the backend is unreachable. A store that forgets (a private
``redis-server`` restarted empty or from an older snapshot, a SQLite file removed or replaced)
is tested at the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.outcomes import OutcomeCounts, SQLiteOutcomeStore
from gateway.flags.redis import RedisFlagStore
from gateway.flags.sqlite import SQLiteFlagStore
from gateway.flags.store import (
    FlagStore,
    GenerationMismatch,
    ReplicaBeat,
    VersionConflict,
    open_store,
)
from gateway.routing import FlagState, Targeting
from tests.processes import free_port
from tests.redis_server import RedisServer

REDIS_URL = "redis://127.0.0.1:6379/0"
ROUTE = "support-triage"
OTHER = "refund-policy"
GEN = "gen_test"

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


async def put(store: FlagStore, state: FlagState, expected: int) -> AuditEntry:
    return await store.write(state, expected, entry_for(state), generation=GEN)


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
        await store.claim_generation(GEN)
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
    assert (await store.load()).flags == {}
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
    assert (await store.load()).flags == {ROUTE: state}
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
    assert sum(isinstance(r, AuditEntry) for r in results) == 1, results
    winner = a if isinstance(results[0], AuditEntry) else b
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
    loaded = (await store.load()).flags
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
    stored = await store.write(after, 1, entry, generation=GEN)
    newest = (await store.history(ROUTE, 1))[0]
    assert newest == stored
    assert msgspec.structs.replace(newest, id="", seq=0, generation="") == entry
    assert (newest.seq, newest.generation) == (2, GEN)


async def test_sqlite_audit_refuses_update_and_delete(tmp_path: Path) -> None:
    """The SQLite audit table is append-only: a direct UPDATE or DELETE raises, rows stay."""
    path = tmp_path / "flags.db"
    store = SQLiteFlagStore(str(path))
    await store.open()
    await store.claim_generation(GEN)
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


async def test_sqlite_watch_ignores_outcome_counts_and_heartbeats(tmp_path: Path) -> None:
    """The guard's outcome counts and other replicas' heartbeats are written to the flag file:
    they move ``PRAGMA data_version`` but no flag, so watch() reads its flag-side token and does
    not yield (no reload of every flag at each poll under traffic). A flag write by another
    connection still wakes it.

    No clock race: after each commit the test waits (10 s deadline) until the watcher has read
    its token for that commit, and it reads it for commit k+1 only after deciding on commit k
    (a yield on k would stop it polling: the generator waits for the next ``anext``)."""
    path = str(tmp_path / "flags.db")
    watcher = SQLiteFlagStore(path, poll_interval_s=0.01)
    writer = SQLiteFlagStore(path, poll_interval_s=0.01)
    outcomes = SQLiteOutcomeStore(path)
    await writer.claim_generation(GEN)
    await put(writer, flag(version=1), 0)
    changes = watcher.watch()
    woke = asyncio.ensure_future(anext(changes))

    async def watcher_reads_past(reads: int) -> None:
        async with asyncio.timeout(10):
            while watcher.token_reads <= reads and not woke.done():
                await asyncio.sleep(0.005)

    try:
        await watcher_reads_past(0)  # its first reading
        for n in range(1, 7):
            reads = watcher.token_reads
            if n % 2:
                counts = OutcomeCounts(10 * n, n, 10 * n, 0)
                await outcomes.exchange("gw-b", {(ROUTE, "ro_t"): counts}, [])
            else:
                await writer.beat(beat("gw-b", 1000.0 + n))
            await watcher_reads_past(reads)
            assert not woke.done(), f"watch() yielded on commit {n} (outcomes or heartbeat)"
        await put(writer, flag(version=2, weight=5), 1)
        await asyncio.wait_for(woke, timeout=10)
        assert (await watcher.get(ROUTE)) == flag(version=2, weight=5)
    finally:
        woke.cancel()
        await asyncio.gather(woke, return_exceptions=True)
        await changes.aclose()  # type: ignore[attr-defined]
        for store in (watcher, writer, outcomes):
            await store.aclose()


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
        lambda: store.claim_generation(GEN),
        lambda: store.history(None, 10),
        lambda: store.replicas(0.0),
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


# -- generation, sequence numbers, heartbeats -----------------------------------------------------


async def test_generation_is_claimed_once_and_read_with_the_flags(open_backend: Opener) -> None:
    """The first claim sets the generation; a later claim (another replica) gets the first one;
    load() returns it with the flags."""
    store = await open_backend()  # claims GEN
    other = await open_backend()
    assert await other.claim_generation("gen_later") == GEN
    await put(store, flag(version=1), 0)
    loaded = await other.load()
    assert (loaded.generation, list(loaded.flags)) == (GEN, [ROUTE])


async def test_write_under_another_generation_is_refused_and_changes_nothing(
    open_backend: Opener,
) -> None:
    """A writer whose generation is not the store's gets GenerationMismatch with the store's
    generation; the flag and the audit log stay as they were."""
    store = await open_backend()
    await put(store, flag(version=1), 0)
    with pytest.raises(GenerationMismatch) as caught:
        await store.write(flag(version=2), 1, entry_for(flag(version=2)), generation="gen_old")
    assert caught.value.current == GEN
    assert (await store.get(ROUTE)) == flag(version=1)
    assert len(await store.history(None, 10)) == 1


async def test_audit_entries_are_numbered_from_1_and_a_floor_skips_ahead(
    open_backend: Opener,
) -> None:
    """Every entry gets the next ``seq`` (1, 2, 3 across routes); a write with ``seq_floor``
    continues above the floor, and later writes continue from there."""
    store = await open_backend()
    assert (await put(store, flag(version=1), 0)).seq == 1
    assert (await put(store, flag(OTHER, version=1), 0)).seq == 2
    restored = await store.write(
        flag(version=7), 1, entry_for(flag(version=7)), generation=GEN, seq_floor=40
    )
    assert restored.seq == 41
    assert (await put(store, flag(version=8), 7)).seq == 42
    assert [e.seq for e in await store.history(None, 10)] == [42, 41, 2, 1]
    assert {e.generation for e in await store.history(None, 10)} == {GEN}


def beat(replica: str, at: float, *, version: int = 1, ttl: float = 10.0) -> ReplicaBeat:
    return ReplicaBeat(
        replica=replica,
        at=at,
        expires_at=at + ttl,
        generation=GEN,
        versions={ROUTE: version},
        sources={ROUTE: "store"},
    )


async def test_heartbeats_replace_each_other_and_expire_when_read(open_backend: Opener) -> None:
    """A replica's newer heartbeat replaces its older one; heartbeats past ``expires_at`` are
    left out (and deleted) when read at a later ``now``."""
    store = await open_backend()
    await store.beat(beat("a", 1000.0, version=1))
    await store.beat(beat("a", 1005.0, version=2))
    await store.beat(beat("b", 1000.0, version=1, ttl=3.0))
    assert await store.replicas(1006.0) == [beat("a", 1005.0, version=2)]
    assert [b.replica for b in await store.replicas(1000.0)] == ["a"]  # b was deleted
    assert await store.replicas(1016.0) == []


async def test_watch_yields_when_another_instance_claims_the_generation(
    open_backend: Opener, tmp_path: Path
) -> None:
    """A new generation (a store re-seeded after it forgot) wakes the watchers up even without a
    flag write."""
    watcher, writer = await open_backend(), await open_backend()
    changes = watcher.watch()
    woke = asyncio.ensure_future(anext(changes))
    try:
        await asyncio.sleep(0.3)  # let the watcher take its first reading
        if isinstance(writer, SQLiteFlagStore):
            conn = sqlite3.connect(writer.path, isolation_level=None)
            conn.execute("DELETE FROM meta")
            conn.close()
        else:
            assert isinstance(writer, RedisFlagStore)
            await writer._redis.delete(writer._generation)
        assert await writer.claim_generation("gen_new") == "gen_new"
        await asyncio.wait_for(woke, timeout=10)
        assert (await watcher.load()).generation == "gen_new"
    finally:
        woke.cancel()
        await asyncio.gather(woke, return_exceptions=True)
        await changes.aclose()  # type: ignore[attr-defined]


# -- stores that forget ---------------------------------------------------------------------------


async def test_sqlite_file_removed_under_a_running_store_is_opened_anew(tmp_path: Path) -> None:
    """Removing the file (and its WAL) under an open store: the next call opens a new, empty file
    (no generation), a write under the old generation is refused, and watch() yields."""
    path = tmp_path / "flags.db"
    store = SQLiteFlagStore(str(path), poll_interval_s=0.02)
    try:
        await store.open()
        await store.claim_generation(GEN)
        await write_versions(store, ROUTE, 3)
        changes = store.watch()
        woke = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.1)
        for name in ("flags.db", "flags.db-wal", "flags.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        await asyncio.wait_for(woke, timeout=10)
        await changes.aclose()  # type: ignore[attr-defined]
        loaded = await store.load()
        assert (loaded.generation, loaded.flags) == (None, {})
        assert path.exists()
        with pytest.raises(GenerationMismatch) as caught:
            await put(store, flag(version=4), 3)
        assert caught.value.current is None
    finally:
        await store.aclose()


async def test_sqlite_file_replaced_by_another_store_is_read_from_the_new_file(
    tmp_path: Path,
) -> None:
    """A file moved into place of the open one (e.g. a backup restored): the store reads the
    new file's generation and flags, not the old file's."""
    path = tmp_path / "flags.db"
    store = SQLiteFlagStore(str(path))
    other = SQLiteFlagStore(str(tmp_path / "backup.db"))
    try:
        await store.open()
        await store.claim_generation(GEN)
        await write_versions(store, ROUTE, 3)
        await other.open()
        await other.claim_generation("gen_backup")
        await other.write(flag(version=1), 0, entry_for(flag(version=1)), generation="gen_backup")
        await other.aclose()
        (tmp_path / "backup.db").replace(path)
        loaded = await store.load()
        assert loaded.generation == "gen_backup"
        assert loaded.flags[ROUTE].version == 1
    finally:
        await store.aclose()
        await other.aclose()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, restarted by the tests."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


async def test_redis_restarted_empty_loses_the_generation_and_refuses_old_writes(
    private_redis: RedisServer,
) -> None:
    """After Redis restarts without data the store has no generation and no flag; a write under
    the old generation is refused (GenerationMismatch with None); watch() notices."""
    store = RedisFlagStore(private_redis.url, namespace="forget", poll_interval_s=0.05)
    try:
        await store.open()
        await store.claim_generation(GEN)
        await write_versions(store, ROUTE, 2)
        private_redis.restart()
        loaded = await _eventually(store.load)
        assert (loaded.generation, loaded.flags) == (None, {})
        with pytest.raises(GenerationMismatch) as caught:
            await put(store, flag(version=3), 2)
        assert caught.value.current is None
        assert await store.history(None, 10) == []
    finally:
        await store.aclose()


async def test_redis_restored_from_an_older_snapshot_shows_the_older_versions(
    private_redis: RedisServer,
) -> None:
    """Redis restarted from an RDB snapshot taken at version 2 (the store went on to 5): the
    generation is the same, the flag is back at version 2, audit seq back at 2; a watcher wakes."""
    store = RedisFlagStore(private_redis.url, namespace="older", poll_interval_s=0.05)
    try:
        await store.open()
        await store.claim_generation(GEN)
        await write_versions(store, ROUTE, 2)
        old = private_redis.snapshot("at-version-2")
        await write_versions(store, ROUTE, 3, start=2)
        private_redis.restart_from(old)
        loaded = await _eventually(store.load)
        assert loaded.generation == GEN
        assert loaded.flags[ROUTE].version == 2
        assert [e.seq for e in await store.history(ROUTE, 10)] == [2, 1]
    finally:
        await store.aclose()


async def _eventually(call: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """``call()`` once the store answers again (the client reconnects), within ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()
            except StoreUnavailableError:
                await asyncio.sleep(0.05)


async def test_redis_calls_after_a_restart_reconnect_instead_of_failing(
    private_redis: RedisServer,
) -> None:
    """Eight pooled connections die with a Redis restart: each next call reconnects once and
    succeeds (no 503 for the first admin calls after Redis came back)."""
    store = RedisFlagStore(private_redis.url, namespace="reconnect", poll_interval_s=0.05)
    try:
        await store.open()
        await asyncio.gather(*(store.history(None, 10) for _ in range(8)))
        private_redis.restart()
        for _ in range(10):
            assert await store.history(None, 10) == []
    finally:
        await store.aclose()


async def test_stores_say_what_survives_their_restart(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """open() finds out: SQLite fsyncs every commit; a Redis without appendonly says none, one
    with appendonly yes (as the docs ask) says appendonly."""
    sqlite_store = SQLiteFlagStore(str(tmp_path / "flags.db"))
    plain = RedisFlagStore(private_redis.url, namespace="persistence")
    with RedisServer(tmp_path / "aof", persistence=True) as durable_server:
        durable = RedisFlagStore(durable_server.url, namespace="persistence")
        try:
            for store in (sqlite_store, plain, durable):
                await store.open()
            assert (sqlite_store.persistence, plain.persistence, durable.persistence) == (
                "fsync",
                "none",
                "appendonly",
            )
        finally:
            for store in (sqlite_store, plain, durable):
                await store.aclose()
