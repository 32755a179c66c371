"""The guard's evidence exchange writes a replica's counts only when they changed (or once per
``REWRITE_S``), and still reads the route-wide totals every time (gateway/quality/runner.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from gateway.flags.outcomes import OutcomeCounts, RolloutKey
from gateway.quality.guard import Guard
from gateway.quality.runner import REWRITE_S, GuardRunner
from tests.unit.test_guard import ROUTE, feed, make_route

KEY = (ROUTE, "ro_1")


class RecordingOutcomes:
    """An in-memory outcome store that records what each exchange wrote and read."""

    def __init__(self) -> None:
        self.rows: dict[tuple[RolloutKey, str], OutcomeCounts] = {}
        self.calls: list[tuple[dict[RolloutKey, OutcomeCounts], list[RolloutKey]]] = []
        self.down = False

    async def exchange(
        self,
        replica: str,
        own: Mapping[RolloutKey, OutcomeCounts],
        watch: Iterable[RolloutKey],
    ) -> dict[RolloutKey, OutcomeCounts]:
        if self.down:
            raise OSError("down")
        keys = list(dict.fromkeys([*own, *watch]))
        self.calls.append((dict(own), keys))
        for key, counts in own.items():
            self.rows[(key, replica)] = counts
        totals = {}
        for key in keys:
            total = OutcomeCounts()
            for (row_key, _), counts in self.rows.items():
                if row_key == key:
                    total = total.plus(counts)
            totals[key] = total
        return totals

    async def aclose(self) -> None:
        pass


class _Gauge:
    def set(self, _: float) -> None:
        pass


class _Flags:
    def subscribe(self, _: Any) -> None:
        pass


class _Metrics:
    guard_evidence_up = _Gauge()


class _Log:
    def info(self, *_: Any, **__: Any) -> None:
        pass


def runner(outcomes: RecordingOutcomes, clock: list[float], replica: str) -> tuple[Guard, Any]:
    guard = Guard({ROUTE: make_route()})
    guard.start_rollout(ROUTE, "ro_1")
    run = GuardRunner(
        guard,
        _Flags(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        _Metrics(),  # type: ignore[arg-type]
        _Log(),
        replica=replica,
        tick_s=1.0,
        flush_s=1.0,
        outcomes=outcomes,
        clock=lambda: clock[0],
    )
    return guard, run


async def test_unchanged_counts_are_read_not_written_until_the_rewrite_interval() -> None:
    outcomes = RecordingOutcomes()
    clock = [100.0]
    guard, run = runner(outcomes, clock, "a")
    feed(guard, "candidate", 10, 2)
    await run.sync_once()
    assert outcomes.calls[-1] == ({KEY: OutcomeCounts(10, 2, 0, 0)}, [KEY])

    clock[0] += REWRITE_S / 2  # nothing new: the totals are read, nothing written
    await run.sync_once()
    assert outcomes.calls[-1] == ({}, [KEY])
    assert guard.counts(ROUTE) == OutcomeCounts(10, 2, 0, 0)

    feed(guard, "fallback", 3, 1)  # new outcomes: written at once
    await run.sync_once()
    assert outcomes.calls[-1] == ({KEY: OutcomeCounts(10, 2, 3, 1)}, [KEY])

    clock[0] += REWRITE_S  # unchanged for REWRITE_S: written again (restores a lost store)
    await run.sync_once()
    assert outcomes.calls[-1] == ({KEY: OutcomeCounts(10, 2, 3, 1)}, [KEY])


async def test_an_idle_replica_still_sees_the_other_replicas_new_outcomes() -> None:
    outcomes = RecordingOutcomes()
    clock = [100.0]
    guard_a, a = runner(outcomes, clock, "a")
    guard_b, b = runner(outcomes, clock, "b")
    feed(guard_a, "candidate", 5, 1)
    await a.sync_once()
    feed(guard_b, "candidate", 30, 20)
    await b.sync_once()
    await a.sync_once()  # a has nothing new: it only reads
    assert outcomes.calls[-1] == ({}, [KEY])
    assert guard_a.counts(ROUTE) == OutcomeCounts(35, 21, 0, 0)
    feed(guard_a, "candidate", 1, 0)
    await a.sync_once()
    assert guard_a.counts(ROUTE) == OutcomeCounts(36, 21, 0, 0)


async def test_a_failed_exchange_is_written_again_next_time() -> None:
    outcomes = RecordingOutcomes()
    clock = [100.0]
    guard, run = runner(outcomes, clock, "a")
    feed(guard, "candidate", 4, 0)

    outcomes.down = True
    with pytest.raises(OSError, match="down"):
        await run.sync_once()
    outcomes.down = False
    await run.sync_once()
    assert outcomes.calls[-1] == ({KEY: OutcomeCounts(4, 0, 0, 0)}, [KEY])
