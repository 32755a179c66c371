"""The flag service on a store that forgets, in process: replicas (FlagService instances) on one
SQLite file in tmp_path, a fake clock, a recording logger. No network.

* a file removed under running replicas is re-seeded by them, once, and audited;
* a file replaced by an older copy is restored to the replicas' newer versions;
* a lagging replica's write lands above every version served, and every replica serves it;
* the latch and no-op rules hold through the service; /readyz sources; heartbeats.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConflictError
from gateway.flags.changes import FlagPatch
from gateway.flags.service import FlagService, replica_id
from gateway.flags.sqlite import SQLiteFlagStore
from gateway.routing import FlagState
from gateway.telemetry import Metrics
from tests.processes import routes_yaml
from tests.recording_logger import RecordingLogger

ROUTE = "support-triage"
DEADLINE_S = 15.0


@dataclass
class FakeClock:
    """Unix seconds that move only when a test says so."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replica:
    flags: FlagService
    metrics: Metrics
    log: RecordingLogger


Start = Callable[..., Awaitable[Replica]]


@pytest.fixture
def config(tmp_path: Path) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(routes_yaml("http://127.0.0.1:9", weight=100_000))
    return load_config(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def replicas(tmp_path: Path, config: GatewayConfig, clock: FakeClock) -> AsyncIterator[Start]:
    """Start named replicas on tmp_path/flags.db (``poll_interval_s`` each); stop them after."""
    started: list[Replica] = []

    async def start(name: str, poll_interval_s: float = 0.02) -> Replica:
        store = SQLiteFlagStore(str(tmp_path / "flags.db"), poll_interval_s=poll_interval_s)
        log = RecordingLogger()
        metrics = Metrics(config)
        flags = FlagService(config, store, metrics, log, replica=name, clock=clock)
        await flags.start()
        replica = Replica(flags, metrics, log)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.flags.stop()


async def until(condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition()`` (sync or async) until truthy, within DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def served(replica: Replica) -> FlagState:
    state = replica.flags.flag(ROUTE)
    assert state is not None
    return state


def metric(replica: Replica, name: str, **labels: str) -> float:
    value = replica.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def stored(path: Path) -> tuple[str | None, FlagState | None]:
    store = SQLiteFlagStore(str(path))
    try:
        loaded = await store.load()
        return loaded.generation, loaded.flags.get(ROUTE)
    finally:
        await store.aclose()


def remove_store(tmp_path: Path) -> None:
    for name in ("flags.db", "flags.db-wal", "flags.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)


async def test_removed_file_is_re_seeded_once_and_the_rollback_stays(
    replicas: Start, tmp_path: Path
) -> None:
    """Two replicas serve a rolled-back flag (version 1); the file is removed: the new file gets
    a new generation and version 1 rolled back again, written by exactly one replica, audited as
    a restore with the replica id, counted and logged; both keep serving rolled_back."""
    a, b = await replicas("a"), await replicas("b")
    await a.flags.rollback(ROUTE, actor="ops", reason="broken candidate")
    await until(lambda: served(b).version == 1, "b to serve the rollback")
    old_generation = a.flags.generation

    remove_store(tmp_path)
    await until(
        lambda: old_generation not in (a.flags.generation, b.flags.generation),
        "both replicas to see the new generation",
    )
    generation, state = await stored(tmp_path / "flags.db")
    assert generation == a.flags.generation == b.flags.generation
    assert state is not None
    assert (state.version, state.status) == (1, "rolled_back")
    history = await a.flags.history(ROUTE)
    [restore] = [e for e in history if e.action == "restore"]
    assert restore.trigger == "replica"
    assert restore.actor in {"a", "b"}
    assert restore.before is None
    assert restore.after == state
    assert restore.evidence is not None
    assert restore.evidence["generation_known"] == old_generation
    assert restore.evidence["generation"] == generation
    assert (restore.evidence["store_version"], restore.evidence["restored_version"]) == (None, 1)
    restorer = a if restore.actor == "a" else b
    assert metric(restorer, "gateway_flag_store_restores_total", route=ROUTE) == 1
    [(level, _, fields)] = restorer.log.named("flags.store_restored")
    assert level == "error"
    assert fields["restored_version"] == 1
    audits = [
        f for _, _, f in restorer.log.named("flag.audit") if f["entry"]["action"] == "restore"
    ]
    assert audits[0]["entry"]["seq"] == restore.seq
    for replica in (a, b):
        assert (served(replica).version, served(replica).status) == (1, "rolled_back")
        assert replica.flags.status()["source"] == "store"


async def test_file_replaced_by_an_older_copy_is_restored_to_the_newest_version(
    replicas: Start, tmp_path: Path
) -> None:
    """A copy of the file taken at version 1 put back after version 3: the replica restores 3
    over 1 (same generation), audited with before = the old state; later writes go on from 3."""
    a = await replicas("a")
    await a.flags.update(ROUTE, FlagPatch(weight=1_000), actor="ops", reason="v1")
    await a.flags.stop()  # a clean copy: checkpointed, no WAL
    shutil.copyfile(tmp_path / "flags.db", tmp_path / "at-v1.db")
    b = await replicas("b")
    await b.flags.update(ROUTE, FlagPatch(weight=2_000), actor="ops", reason="v2")
    await b.flags.update(ROUTE, FlagPatch(weight=3_000), actor="ops", reason="v3")
    (tmp_path / "at-v1.db").replace(tmp_path / "flags.db")
    # Read the file only after b noticed: a reader opening it before b let go of the old file
    # would apply the old file's WAL (found by name) to the new one.
    await until(lambda: b.log.named("flags.store_restored"), "b to restore")
    _, state = await stored(tmp_path / "flags.db")
    assert state is not None
    assert state.version == 3
    restore = next(e for e in await b.flags.history(ROUTE) if e.action == "restore")
    assert restore.before is not None
    assert (restore.before.version, restore.after.version) == (1, 3)
    new = await b.flags.update(ROUTE, FlagPatch(weight=4_000), actor="ops", reason="v4")
    assert (new.version, served(b).version) == (4, 4)


async def test_lagging_replica_writes_above_every_served_version_and_all_serve_it(
    replicas: Start, tmp_path: Path
) -> None:
    """Replica c stops following (it lags at version 1 while a and b serve 2); the file is
    removed and re-seeded by a/b at 2; a write through c lands at 3, not at 2 (which a and b
    would ignore), and every replica serves it."""
    a, b = await replicas("a"), await replicas("b")
    c = await replicas("c")
    await a.flags.update(ROUTE, FlagPatch(weight=1_000), actor="ops", reason="v1")
    await until(lambda: served(c).version == 1, "c to serve version 1")
    assert c.flags._task is not None
    c.flags._task.cancel()  # c stops following the store: from now on it lags
    await a.flags.update(ROUTE, FlagPatch(weight=2_000), actor="ops", reason="v2")
    await until(lambda: served(b).version == 2, "b at version 2")
    assert served(c).version == 1

    remove_store(tmp_path)
    await until(lambda: a.flags.status()["generation"] != c.flags.generation, "a re-seeded")
    new = await c.flags.update(ROUTE, FlagPatch(weight=5_000), actor="ops", reason="through c")
    assert new.version == 3
    await until(
        lambda: all(served(r).version == 3 and served(r).weight == 5_000 for r in (a, b, c)),
        "every replica to serve version 3",
    )


async def test_latch_holds_through_the_service_and_release_rearms_the_new_candidate(
    replicas: Start,
) -> None:
    """Rolled back: registering a model records it and stays rolled back; a weight change is
    409 rolled_back and writes nothing; release re-arms at weight 0 with a new rollout id."""
    a = await replicas("a")
    rolled = await a.flags.rollback(ROUTE, actor="guard", reason="ceiling", trigger="guard")
    registered = await a.flags.register_candidate(
        ROUTE, model="ft:new", actor="ci", reason="job ok"
    )
    assert (registered.status, registered.weight) == ("rolled_back", 0)
    assert registered.candidate_model == "ft:new"
    assert registered.rollout_id == rolled.rollout_id
    with pytest.raises(ConflictError) as caught:
        await a.flags.update(ROUTE, FlagPatch(weight=50_000), actor="ops", reason="ramp")
    assert caught.value.code == "rolled_back"
    assert served(a) == registered
    assert len(await a.flags.history(ROUTE)) == 2
    released = await a.flags.release(ROUTE, actor="ops", reason="new model")
    assert (released.status, released.weight, released.candidate_model) == ("active", 0, "ft:new")
    assert released.rollout_id != rolled.rollout_id


async def test_a_write_that_changes_nothing_writes_nothing(replicas: Start) -> None:
    """Repeating the current values: the same state back, no version, no audit, no log."""
    a = await replicas("a")
    first = await a.flags.update(ROUTE, FlagPatch(weight=7_000), actor="ops", reason="v1")
    again = await a.flags.update(ROUTE, FlagPatch(weight=7_000), actor="ops", reason="again")
    assert again == first
    assert len(await a.flags.history(ROUTE)) == 1
    assert len(a.log.named("flag.audit")) == 1


async def test_readiness_and_the_source_metric_say_where_flags_come_from(
    replicas: Start, tmp_path: Path
) -> None:
    """routes_file before any write, store after; GET's source follows; gateway_flag_source
    has 1 for the current source and 0 for the others."""
    a = await replicas("a")
    assert a.flags.status()["source"] == "routes_file"
    assert (await a.flags.current_with_source(ROUTE))[1] == "routes_file"
    assert metric(a, "gateway_flag_source", route=ROUTE, source="routes_file") == 1
    await a.flags.update(ROUTE, FlagPatch(weight=1), actor="ops", reason="r")
    status = a.flags.status()
    assert status["source"] == "store"
    assert status["routes"][ROUTE] == {"version": 1, "source": "store"}
    assert status["replica"] == "a"
    assert (await a.flags.current_with_source(ROUTE))[1] == "store"
    assert metric(a, "gateway_flag_source", route=ROUTE, source="store") == 1
    assert metric(a, "gateway_flag_source", route=ROUTE, source="routes_file") == 0


async def test_heartbeats_list_every_replica_with_its_versions_and_expire(
    replicas: Start, clock: FakeClock
) -> None:
    """Each replica's heartbeat says what it serves; a replica that stops beating drops out
    after three intervals (fake clock)."""
    a, b = await replicas("a"), await replicas("b")
    await a.flags.update(ROUTE, FlagPatch(weight=1), actor="ops", reason="r")

    async def both_at_1() -> bool:
        beats = {beat.replica: beat for beat in await a.flags.replicas()}
        return set(beats) == {"a", "b"} and all(x.versions[ROUTE] == 1 for x in beats.values())

    await until(both_at_1, "heartbeats of a and b at version 1")
    await b.flags.stop()
    clock.now += 16  # three 5 s intervals and a bit: b's last heartbeat expired
    assert [beat.replica for beat in await a.flags.replicas()] == ["a"]


def test_replica_id_is_the_setting_or_host_pid_and_a_random_suffix() -> None:
    """GATEWAY_REPLICA_ID as given (with the pid when several workers share it); otherwise
    hostname-pid-xxxxxx (six random hex digits)."""
    pid = str(os.getpid())
    assert replica_id("gw-a") == "gw-a"
    assert replica_id("gw-a", workers=2) == f"gw-a-{pid}"
    generated = replica_id(None)
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}-{pid}-[0-9a-f]{{6}}", generated)
