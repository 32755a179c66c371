"""The ramp's hands (gateway.quality.ramper) against stand-ins of the flag service and the guard:
what it writes, and what it does when a write cannot land.

A write the store refuses writes nothing and is logged once per outage (not at every look); the
next look after the store is back writes it. A lost compare-and-set (another replica moved
first) is no error. An advance waits for route-wide evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, Gauge

from gateway.config import load_config
from gateway.errors import ConflictError, StoreUnavailableError
from gateway.flags.outcomes import OutcomeCounts
from gateway.quality.ramper import Ramper
from gateway.routing import FlagState
from gateway.telemetry.ramp_metrics import RAMP_STATES, RampMetrics
from tests.recording_logger import RecordingLogger

ROUTES = """
upstreams:
  up: {base_url: http://up.test/v1}
routes:
  triage:
    variants:
      cand: {upstream: up, model: c}
      fall: {upstream: up, model: f}
    candidate: cand
    fallback: fall
    flag: {weight: 10000}
    guard: {}
    ramp: {steps: ['10%', '100%'], min_samples: 10, min_dwell_s: 60}
"""
T0 = 1_700_000_000.0
HEALTHY = OutcomeCounts(5_000, 0, 45_000, 0)


class Flags:
    """The flag service as the ramper uses it; ``fail`` makes writes raise."""

    def __init__(self, state: FlagState) -> None:
        self.state = state
        self.fail: Exception | None = None
        self.known = True  # False: no flag loaded yet (flag source none)
        self.writes: list[tuple[str, dict[str, Any] | None, int | None]] = []

    def flag(self, route: str) -> FlagState | None:
        return self.state if self.known else None

    async def write_change(self, route: str, change: Any, **kw: Any) -> FlagState:
        if self.fail is not None:
            raise self.fail
        if kw["expected_version"] != self.state.version:
            raise ConflictError("moved", current=self.state)
        self.state = change(self.state)
        self.writes.append((kw["action"], kw["evidence"], kw["expected_version"]))
        return self.state


class Guard:
    def __init__(self, counts: OutcomeCounts) -> None:
        self.counts = counts

    def rollout_counts(self, route: str, rollout_id: str) -> OutcomeCounts | None:
        return self.counts


class Latch:
    def latched(self, route: str) -> str | None:
        return None


def ramper(
    tmp_path: Path,
    flags: Flags,
    log: RecordingLogger,
    now: list[float],
    wide: list[bool],
    metrics: RampMetrics | None = None,
) -> Ramper:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return Ramper(
        load_config(path),
        Guard(HEALTHY),  # type: ignore[arg-type]
        flags,  # type: ignore[arg-type]
        Latch(),  # type: ignore[arg-type]
        log,
        replica="gw-a",
        tick_s=1.0,
        evidence_route_wide=lambda: wide[0],
        clock=lambda: now[0],
        metrics=metrics,
    )


def start() -> FlagState:
    return FlagState(route="triage", weight=10_000, rollout_id="ro", version=3, ramp_step=0)


async def test_a_write_the_store_refuses_is_logged_once_and_written_when_it_is_back(
    tmp_path: Path,
) -> None:
    flags, log, now = Flags(start()), RecordingLogger(), [T0]
    ramp = ramper(tmp_path, flags, log, now, [True])
    flags.fail = StoreUnavailableError("The flag store (Redis) is unavailable: ConnectionError")
    for _ in range(5):
        assert await ramp.step() == []
    assert len(log.named("ramp.write_failed")) == 1
    assert flags.state.version == 3  # nothing written
    flags.fail = None
    [written] = await ramp.step()
    assert written.ramp_step_started_at == T0
    assert written.ramp_step_baseline == HEALTHY.cand_n
    assert [w[0] for w in flags.writes] == ["ramp_start"]


async def test_an_advance_waits_for_route_wide_evidence_and_writes_its_evidence(
    tmp_path: Path,
) -> None:
    stamped = msgspec.structs.replace(start(), ramp_step_started_at=T0, ramp_step_baseline=0)
    flags, log, now, wide = Flags(stamped), RecordingLogger(), [T0 + 60], [False]
    ramp = ramper(tmp_path, flags, log, now, wide)
    assert await ramp.step() == []  # due, but on this replica's counts alone
    wide[0] = True
    [advanced] = await ramp.step()
    assert (advanced.weight, advanced.ramp_step, advanced.version) == (100_000, 1, 4)
    action, evidence, expected = flags.writes[0]
    assert (action, expected) == ("ramp_advance", 3)
    assert evidence is not None
    assert evidence["replica"] == "gw-a"
    assert evidence["evidence"] == "route_wide"
    assert evidence["outcomes"] == HEALTHY._asdict()
    assert log.named("ramp.advanced")


async def test_a_lost_compare_and_set_is_no_error(tmp_path: Path) -> None:
    flags, log, now = Flags(start()), RecordingLogger(), [T0]
    ramp = ramper(tmp_path, flags, log, now, [True])
    flags.fail = ConflictError("another replica wrote first", current=start())
    assert await ramp.step() == []
    assert log.events == []


async def test_the_state_gauge_is_all_zero_until_a_flag_is_known(tmp_path: Path) -> None:
    """Before the replica has a flag (not loaded yet, or its store unreachable since it started:
    flag source none) no state is 1, so nothing reads as a stopped ramp; once the flag is known
    the gauge says its state, and it goes back to no state if the flag is gone again."""
    registry = CollectorRegistry()
    step = Gauge("gateway_ramp_step", "step", ["route"], registry=registry)
    state = Gauge("gateway_ramp_state", "state", ["route", "state"], registry=registry)
    metrics = RampMetrics(step, state, ["triage"])

    def states() -> dict[str, float | None]:
        return {
            name: registry.get_sample_value(
                "gateway_ramp_state", {"route": "triage", "state": name}
            )
            for name in RAMP_STATES
        }

    no_state = dict.fromkeys(RAMP_STATES, 0.0)
    assert states() == no_state  # as built, before any look
    assert registry.get_sample_value("gateway_ramp_step", {"route": "triage"}) == 0.0
    flags, log, now = Flags(start()), RecordingLogger(), [T0]
    flags.known = False
    ramp = ramper(tmp_path, flags, log, now, [True], metrics)
    for _ in range(3):
        assert await ramp.step() == []
    assert states() == no_state
    flags.known = True
    await ramp.step()
    assert states() == {**no_state, "ramping": 1.0}
    rolled_back = msgspec.structs.replace(flags.state, status="rolled_back")
    flags.state = rolled_back
    await ramp.step()
    assert states() == {**no_state, "stopped": 1.0}
    flags.known = False
    await ramp.step()
    assert states() == no_state
