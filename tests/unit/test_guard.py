"""The guard (gateway.quality.guard) and its hands (gateway.quality.runner).

The pure guard counts candidate and fallback outcomes per rollout id and trips on the ceiling
rule or the regression rule, each only after ``min_samples`` outcomes on the side(s) it needs.
A trip is latched and offered to the caller until it says it ``acted``; ``mode: observe``
records the verdict without offering it. Counts are route-wide: each replica's guard looks at the
totals of the last exchange with the store plus its own outcomes since. The runner latches the
route on this replica at once and turns a trip into an audited flag write with trigger ``guard``
against a real SQLite flag store, ignores trips of a rollout that is no longer the route's, and
retries when the store fails or a write races it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from gateway.config import FlagConfig, GatewayConfig, GuardConfig, Route, load_config
from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry, FlagPatch
from gateway.flags.outcomes import OutcomeCounts, RolloutKey, SQLiteOutcomeStore
from gateway.flags.service import FlagService
from gateway.flags.sqlite import SQLiteFlagStore
from gateway.quality.guard import Guard, Role, Trip, decide_rule, evaluate
from gateway.quality.latch import LatchedFlags
from gateway.quality.late_break import split_alpha
from gateway.quality.runner import GuardRunner, describe
from gateway.quality.stats import lower_bound, upper_bound
from gateway.routing import FlagState
from gateway.telemetry import Metrics
from tests.recording_logger import RecordingLogger

ROUTE = "triage"
POLICY = GuardConfig()  # ceiling 0.20, margin 0.02, alpha 0.05, min_samples 50
ALPHA_MAIN = split_alpha(POLICY.alpha)[0]  # the whole-rollout rules' share of alpha


def make_route(name: str = ROUTE, *, passthrough: bool = False, **guard: Any) -> Route:
    return Route(
        name=name,
        variants={},
        candidate="ft",
        fallback="base",
        flag=FlagConfig(),
        failover_on=frozenset(),
        system_prompt_mode="replace",
        guard=GuardConfig(**guard),
        passthrough=passthrough,
    )


def make_guard(**guard: Any) -> Guard:
    return Guard({ROUTE: make_route(**guard)})


def feed(
    guard: Guard, role: Role, n: int, failures: int, *, rollout: str = "ro_1", route: str = ROUTE
) -> None:
    """``n`` outcomes of ``role``, the first ``failures`` of them failed."""
    for index in range(n):
        guard.observe(route, rollout, role, index < failures)


def verdict_of(guard: Guard) -> dict[str, Any]:
    state = guard.state(ROUTE)
    assert state is not None
    verdict: dict[str, Any] = state["verdict"]
    return verdict


# -- decide_rule: the two rules on counts ------------------------------------------------------


def test_ceiling_rule_waits_for_min_samples_candidate_outcomes() -> None:
    """49 failures in 49 outcomes: no verdict yet; the 50th outcome allows the ceiling rule."""
    rule, why = decide_rule(POLICY, 49, 49, 0, 0)
    assert rule is None
    assert "49 outcomes" in why
    assert "needs 50" in why
    assert decide_rule(POLICY, 50, 50, 0, 0)[0] == "ceiling"


def test_min_samples_is_the_routes_own_setting() -> None:
    """With min_samples 1000, 999 failures of 999 are not enough, 1000 of 1000 are."""
    policy = GuardConfig(min_samples=1000)
    assert decide_rule(policy, 999, 999, 0, 0)[0] is None
    assert decide_rule(policy, 1000, 1000, 0, 0)[0] == "ceiling"


def test_ceiling_rule_fires_for_a_clearly_bad_candidate_without_any_fallback_outcomes() -> None:
    """25 failures in 50 (50% against a 20% ceiling) is enough, whatever the fallback did."""
    rule, why = decide_rule(POLICY, 50, 25, 0, 0)
    assert rule == "ceiling"
    assert "ceiling 0.2" in why


def test_ceiling_rule_needs_confidence_not_just_a_rate_above_the_ceiling() -> None:
    """17 of 50 (34%) is above 20%, but not with confidence at 50 outcomes."""
    rule, why = decide_rule(POLICY, 50, 17, 0, 0)
    assert rule is None
    assert "not above the ceiling with confidence" in why
    assert lower_bound(17, 50, ALPHA_MAIN) < POLICY.ceiling


def test_ceiling_rule_agrees_with_the_lower_bound_of_the_interval() -> None:
    """The ceiling rule fires exactly when the candidate's lower bound at the whole-rollout
    rules' share of alpha (half the route's) is above the ceiling."""
    assert POLICY.alpha > ALPHA_MAIN
    disagree_with_the_full_alpha = 0
    for n in (50, 120, 400):
        for s in range(n + 1):
            fired = decide_rule(POLICY, n, s, 0, 0)[0] == "ceiling"
            assert fired == (lower_bound(s, n, ALPHA_MAIN) > POLICY.ceiling), (s, n)
            disagree_with_the_full_alpha += fired != (lower_bound(s, n, POLICY.alpha) > 0.2)
    assert disagree_with_the_full_alpha > 0  # the split is in force, not a no-op


def test_regression_rule_fires_when_the_difference_is_above_the_margin_with_confidence() -> None:
    """15% vs 5% over 2,000 outcomes each: below the ceiling, but a clear regression."""
    rule, why = decide_rule(POLICY, 2000, 300, 2000, 100)
    assert rule == "regression"
    assert "more than 0.02 with confidence" in why
    difference = lower_bound(300, 2000, ALPHA_MAIN / 2) - upper_bound(100, 2000, ALPHA_MAIN / 2)
    assert difference > POLICY.margin


def test_regression_rule_waits_for_min_samples_fallback_outcomes() -> None:
    """The same clear regression is not judged while the fallback has fewer than min_samples."""
    policy = GuardConfig(min_samples=1000)
    rule, why = decide_rule(policy, 2000, 300, 999, 50)
    assert rule is None
    assert "fallback has 999 outcomes, needs 1000" in why
    assert decide_rule(policy, 2000, 300, 1000, 50)[0] == "regression"


def test_regression_rule_ignores_a_difference_within_the_margin() -> None:
    """2.5% vs 2.0% over 10,000 outcomes each: worse, but not by more than the 0.02 margin."""
    rule, why = decide_rule(POLICY, 10_000, 250, 10_000, 200)
    assert rule is None
    assert "not worse than the fallback by more than 0.02" in why


def test_regression_rule_waits_for_confidence() -> None:
    """15% vs 5% over 500 outcomes each may be a regression, but not yet with confidence."""
    rule, why = decide_rule(POLICY, 500, 75, 500, 25)
    assert rule is None
    assert "not yet with confidence" in why


def test_evaluate_carries_both_sides_and_the_difference_bound() -> None:
    """The verdict's evidence: counts, rates, bounds at alpha_main, the alpha_main/2 difference
    bound, and the route's alpha."""
    verdict = evaluate(POLICY, 2000, 300, 2000, 100)
    assert verdict.rule == "regression"
    assert (verdict.candidate.n, verdict.candidate.failures) == (2000, 300)
    assert verdict.candidate.rate == pytest.approx(0.15)
    assert verdict.fallback.rate == pytest.approx(0.05)
    assert verdict.candidate.lower < 0.15 < verdict.candidate.upper
    half = ALPHA_MAIN / 2
    expected = lower_bound(300, 2000, half) - upper_bound(100, 2000, half)
    assert verdict.difference_lower == pytest.approx(expected, abs=1e-6)
    assert (verdict.ceiling, verdict.margin, verdict.alpha, verdict.min_samples) == (
        0.2,
        0.02,
        ALPHA_MAIN,
        50,
    )
    assert verdict.alpha_route == 0.05
    assert verdict.recent is None
    assert (verdict.candidate.lower, verdict.candidate.upper) == pytest.approx(
        (lower_bound(300, 2000, ALPHA_MAIN), upper_bound(300, 2000, ALPHA_MAIN)), abs=1e-6
    )
    empty = evaluate(POLICY, 0, 0, 0, 0)
    assert empty.candidate.rate is None
    assert (empty.candidate.lower, empty.candidate.upper) == (0.0, 1.0)
    assert empty.difference_lower is None


# -- Guard: counting, latching, modes, rollouts ------------------------------------------------


def test_guard_watches_only_routes_with_a_guard_that_is_not_off() -> None:
    """mode off, no guard, or a pass-through route: not watched, no state, outcomes ignored."""
    off = make_route("off", mode="off")
    unguarded = Route(
        name="plain",
        variants={},
        candidate="a",
        fallback="b",
        flag=FlagConfig(),
        failover_on=frozenset(),
        system_prompt_mode="replace",
    )
    passthrough = make_route("gpt-x", passthrough=True)
    guard = Guard({r.name: r for r in (make_route(), off, unguarded, passthrough)})
    assert guard.watches(ROUTE)
    for name in ("off", "plain", "gpt-x"):
        assert not guard.watches(name)
        assert guard.state(name) is None
        feed(guard, "candidate", 100, 100, route=name)
    assert guard.tick() == []


def test_state_before_any_outcome_says_so() -> None:
    """No outcome yet: no rollout id, and the status says why there is no verdict."""
    assert make_guard().state(ROUTE) == {
        "mode": "enforce",
        "rollout_id": None,
        "status": "no outcomes yet",
    }


def test_tick_returns_a_trip_with_the_route_rollout_and_evidence() -> None:
    """50 candidate failures: one Trip for the route and rollout, with the ceiling verdict."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50)
    [trip] = guard.tick()
    assert (trip.route, trip.rollout_id) == (ROUTE, "ro_1")
    assert trip.verdict.rule == "ceiling"
    assert (trip.verdict.candidate.n, trip.verdict.candidate.failures) == (50, 50)


def test_a_trip_is_offered_once_and_never_again_after_acted() -> None:
    """The trip comes back from one tick; an idle tick returns nothing; after acted, new
    outcomes do not bring it back."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50)
    assert len(guard.tick()) == 1
    assert guard.tick() == []
    guard.acted(ROUTE, "ro_1")
    feed(guard, "candidate", 100, 100)
    assert guard.tick() == []


def test_a_trip_is_latched_later_good_outcomes_do_not_untrip_it() -> None:
    """After the trip, 10,000 successes on each side leave the verdict as it was at the trip."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50)
    [trip] = guard.tick()
    guard.acted(ROUTE, "ro_1")
    feed(guard, "candidate", 10_000, 0)
    feed(guard, "fallback", 10_000, 0)
    guard.tick()
    state = guard.state(ROUTE)
    assert state is not None
    assert state["status"] == "tripped"
    assert state["verdict"] == msgspec.to_builtins(trip.verdict)
    assert state["verdict"]["candidate"]["n"] == 50


def test_acted_for_another_rollout_id_does_not_silence_the_current_one() -> None:
    """acted() names the rollout it acted for; a stale id changes nothing."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50)
    guard.tick()
    guard.acted(ROUTE, "ro_old")
    feed(guard, "candidate", 1, 1)
    assert len(guard.tick()) == 1


def test_observe_mode_never_returns_trips_but_state_shows_the_verdict() -> None:
    """mode observe: the verdict is recorded (status tripped, rule ceiling) and not acted on."""
    guard = make_guard(mode="observe")
    feed(guard, "candidate", 50, 50)
    assert guard.tick() == []
    feed(guard, "candidate", 50, 50)
    assert guard.tick() == []
    state = guard.state(ROUTE)
    assert state is not None
    assert (state["mode"], state["status"]) == ("observe", "tripped")
    assert state["verdict"]["rule"] == "ceiling"


def test_a_verdict_needs_a_tick_outcomes_alone_do_not_trip() -> None:
    """observe() only counts; state() shows a would-be verdict but status stays watching."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50)
    state = guard.state(ROUTE)
    assert state is not None
    assert state["status"] == "watching"
    guard.tick()
    state = guard.state(ROUTE)
    assert state is not None
    assert state["status"] == "tripped"


def test_state_explains_why_a_route_has_not_tripped() -> None:
    """Too few outcomes, then too few fallback outcomes, then within the margin: each said."""
    guard = make_guard()
    feed(guard, "candidate", 10, 1)
    assert "candidate has 10 outcomes; needs 50" in verdict_of(guard)["why"]
    feed(guard, "candidate", 40, 2)
    assert "fallback has 0 outcomes, needs 50 to compare" in verdict_of(guard)["why"]
    feed(guard, "fallback", 100, 5)
    verdict = verdict_of(guard)
    assert verdict["rule"] is None
    assert "not worse than the fallback by more than 0.02" in verdict["why"]
    assert (verdict["candidate"]["n"], verdict["fallback"]["n"]) == (50, 100)
    state = guard.state(ROUTE)
    assert state is not None
    assert (state["status"], state["rollout_id"]) == ("watching", "ro_1")


def test_a_new_rollout_id_starts_clean_counters_and_ignores_the_old_ids_outcomes() -> None:
    """start_rollout(new): the trip is forgotten, counts are zero, late old outcomes ignored."""
    guard = make_guard()
    feed(guard, "candidate", 50, 50, rollout="ro_1")
    guard.tick()
    guard.acted(ROUTE, "ro_1")
    guard.start_rollout(ROUTE, "ro_2")
    feed(guard, "candidate", 100, 100, rollout="ro_1")  # in flight when the release happened
    guard.fail_after_the_fact(ROUTE, "ro_1", "candidate")
    guard.observe_shadow(ROUTE, "ro_1", agreed=False)
    assert guard.tick() == []
    state = guard.state(ROUTE)
    assert state is not None
    assert (state["rollout_id"], state["status"]) == ("ro_2", "watching")
    assert state["verdict"]["candidate"]["n"] == 0
    assert state["shadow"] == {"agree": 0, "disagree": 0}
    feed(guard, "candidate", 50, 50, rollout="ro_2")
    [trip] = guard.tick()
    assert trip.rollout_id == "ro_2"


def test_starting_the_same_rollout_again_keeps_its_counters() -> None:
    """start_rollout with the current id (e.g. on every replica start) is not a reset."""
    guard = make_guard()
    feed(guard, "candidate", 30, 30)
    guard.start_rollout(ROUTE, "ro_1")
    feed(guard, "candidate", 20, 20)
    assert len(guard.tick()) == 1


def test_outcomes_of_another_rollout_than_the_first_seen_are_ignored() -> None:
    """Before start_rollout, the first outcome's rollout id is the current one."""
    guard = make_guard()
    feed(guard, "candidate", 50, 0, rollout="ro_1")
    feed(guard, "candidate", 50, 50, rollout="ro_9")
    assert guard.tick() == []
    assert verdict_of(guard)["candidate"]["failures"] == 0


def test_fail_after_the_fact_turns_counted_successes_into_failures() -> None:
    """Negative feedback on 50 successful candidate answers: the ceiling rule fires."""
    guard = make_guard()
    feed(guard, "candidate", 50, 0)
    feed(guard, "fallback", 50, 0)
    assert guard.tick() == []
    for _ in range(50):
        guard.fail_after_the_fact(ROUTE, "ro_1", "candidate")
    [trip] = guard.tick()
    assert trip.verdict.candidate.failures == 50
    assert trip.verdict.fallback.failures == 0


def test_fail_after_the_fact_never_counts_more_failures_than_outcomes() -> None:
    """Feedback beyond the counted outcomes is capped at n (per side)."""
    guard = make_guard()
    feed(guard, "fallback", 3, 0)
    for _ in range(10):
        guard.fail_after_the_fact(ROUTE, "ro_1", "fallback")
    assert verdict_of(guard)["fallback"]["failures"] == 3


def test_shadow_comparisons_are_counted_per_rollout() -> None:
    """observe_shadow: agree and disagree counts in state()."""
    guard = make_guard()
    feed(guard, "candidate", 1, 0)
    guard.observe_shadow(ROUTE, "ro_1", agreed=True)
    guard.observe_shadow(ROUTE, "ro_1", agreed=True)
    guard.observe_shadow(ROUTE, "ro_1", agreed=False)
    state = guard.state(ROUTE)
    assert state is not None
    assert state["shadow"] == {"agree": 2, "disagree": 1}


# -- describe: the audit reason ----------------------------------------------------------------


def test_describe_a_ceiling_trip_gives_the_counts_bound_ceiling_and_alpha() -> None:
    """The reason of a ceiling rollback states failures/n, rate, lower bound and the ceiling."""
    verdict = evaluate(POLICY, 50, 30, 0, 0)
    assert verdict.rule == "ceiling"
    reason = describe(verdict)
    assert reason.startswith("guard: ceiling rule: candidate failed 30/50 (60.0%, lower bound ")
    assert f"{verdict.candidate.lower:.1%}" in reason
    assert reason.endswith(f"> ceiling 20.0% at alpha {ALPHA_MAIN:g}")  # the rule's share


def test_describe_a_regression_trip_gives_both_sides_difference_and_margin() -> None:
    """The reason of a regression rollback also states the fallback and the difference bound."""
    verdict = evaluate(POLICY, 2000, 300, 2000, 100)
    reason = describe(verdict)
    assert reason.startswith("guard: regression rule: candidate failed 300/2000 (15.0%")
    assert "vs fallback 100/2000 (5.0%, upper bound " in reason
    difference = f"difference >= {verdict.difference_lower:.1%} > margin 2.0%"
    assert f"{difference} at alpha {ALPHA_MAIN:g}" in reason


# -- GuardRunner against a real SQLite flag store ------------------------------------------------


ROUTES_FILE = {
    "upstreams": {"sim": {"base_url": "http://127.0.0.1:9/v1"}},
    "routes": {
        ROUTE: {
            "variants": {
                "ft": {"upstream": "sim", "model": "ft:small"},
                "base": {"upstream": "sim", "model": "small"},
            },
            "candidate": "ft",
            "fallback": "base",
            "flag": {"enabled": True, "weight": 50_000},
            "guard": {"ceiling": 0.2, "margin": 0.02, "alpha": 0.05, "min_samples": 50},
        }
    },
}


class ScriptedStore(SQLiteFlagStore):
    """A real SQLite store whose writes can fail (store down) or be raced by another writer."""

    def __init__(self, path: str, *, poll_interval_s: float) -> None:
        super().__init__(path, poll_interval_s=poll_interval_s)
        self.fail_writes = False
        self.before_write: Callable[[], Awaitable[object]] | None = None

    async def write(
        self,
        state: FlagState,
        expected_version: int,
        entry: AuditEntry,
        *,
        generation: str,
        seq_floor: int = 0,
    ) -> AuditEntry:
        if self.fail_writes:
            raise StoreUnavailableError("The flag store is unavailable: injected by the test")
        if self.before_write is not None:
            race, self.before_write = self.before_write, None
            await race()
        return await super().write(
            state, expected_version, entry, generation=generation, seq_floor=seq_floor
        )


class ScriptedOutcomes(SQLiteOutcomeStore):
    """The real SQLite outcome store, which the test can take down."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.down = False

    async def exchange(
        self,
        replica: str,
        own: Mapping[RolloutKey, OutcomeCounts],
        watch: Iterable[RolloutKey],
    ) -> dict[RolloutKey, OutcomeCounts]:
        if self.down:
            raise StoreUnavailableError("The flag store is unavailable: injected by the test")
        return await super().exchange(replica, own, watch)


class FakeSleep:
    """An ``asyncio.sleep`` stand-in that only lets the loop run (no wall clock)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)
        await asyncio.sleep(0)


@dataclass
class Replica:
    """One gateway replica's flag service, guard, latch and runner, on the shared SQLite file."""

    flags: FlagService
    store: ScriptedStore
    outcomes: ScriptedOutcomes
    guard: Guard
    latch: LatchedFlags
    runner: GuardRunner
    metrics: Metrics
    log: RecordingLogger


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
def gateway_config(tmp_path: Path) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(ROUTES_FILE, sort_keys=False))
    return load_config(path)


@pytest.fixture
async def replicas(tmp_path: Path, gateway_config: GatewayConfig) -> AsyncIterator[ReplicaFactory]:
    """Start replicas on one SQLite file (``poll_interval_s`` per replica); stop them after."""
    started: list[Replica] = []

    async def start(poll_interval_s: float = 60.0, sleep: Any = None) -> Replica:
        path = str(tmp_path / "flags.db")
        store = ScriptedStore(path, poll_interval_s=poll_interval_s)
        outcomes = ScriptedOutcomes(path)
        log = RecordingLogger()
        metrics = Metrics(gateway_config)
        flags = FlagService(gateway_config, store, metrics, log)
        guard = Guard(gateway_config.routes)
        latch = LatchedFlags(flags)
        runner = GuardRunner(  # subscribes before the first load
            guard,
            flags,
            latch,
            metrics,
            log,
            replica=f"replica-{len(started)}",
            tick_s=0.01,
            flush_s=0.01,
            outcomes=outcomes,
            sleep=sleep or asyncio.sleep,
        )
        await flags.start()
        replica = Replica(flags, store, outcomes, guard, latch, runner, metrics, log)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.runner.stop()
        await replica.flags.stop()


def trip_now(replica: Replica) -> Trip:
    """30 failures in 50 candidate outcomes of the current rollout: a ceiling trip."""
    state = replica.flags.flag(ROUTE)
    assert state is not None
    feed(replica.guard, "candidate", 50, 30, rollout=state.rollout_id)
    [trip] = replica.guard.tick()
    return trip


def flag_of(replica: Replica) -> FlagState:
    state = replica.flags.flag(ROUTE)
    assert state is not None
    return state


def served(replica: Replica) -> FlagState:
    """The flag as this replica's request path sees it (the latch over the snapshot)."""
    state = replica.latch.flag(ROUTE)
    assert state is not None
    return state


async def wait_until(condition: Callable[[], bool], what: str, steps: int = 2_000) -> None:
    """Let the event loop run until ``condition`` holds (bounded; no fixed sleeps)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_runner_rolls_back_with_trigger_guard_and_the_evidence_in_the_audit(
    replicas: ReplicaFactory,
) -> None:
    """A trip becomes a rollback write: status rolled_back, audited as the guard with the
    verdict and rollout id as evidence and describe() as the reason; counted and logged."""
    a = await replicas()
    trip = trip_now(a)
    assert trip.rollout_id == "initial"
    assert await a.runner.act(trip) is True

    assert (flag_of(a).status, flag_of(a).version) == ("rolled_back", 1)
    stored = await a.flags.current(ROUTE)
    assert stored.status == "rolled_back"
    [entry] = await a.flags.history(ROUTE, 10)
    assert (entry.actor, entry.trigger, entry.action) == ("guard", "guard", "rollback")
    assert entry.reason == describe(trip.verdict)
    assert entry.evidence is not None
    assert entry.evidence["rollout_id"] == "initial"
    assert entry.evidence["rule"] == "ceiling"
    assert (entry.evidence["candidate"]["n"], entry.evidence["candidate"]["failures"]) == (50, 30)
    assert entry.evidence["replica"] == "replica-0"
    assert entry.evidence["outcomes_at_write"] == {"cand_n": 50, "cand_f": 30, "fb_n": 0, "fb_f": 0}
    assert {k: entry.evidence[k] for k in msgspec.to_builtins(trip.verdict)} == (
        msgspec.to_builtins(trip.verdict)
    )
    samples = {"route": ROUTE, "trigger": "guard"}
    assert a.metrics.registry.get_sample_value("gateway_rollbacks_total", samples) == 1.0
    [(level, _, fields)] = a.log.named("guard.rollback")
    assert level == "warning"
    assert (fields["rule"], fields["version"]) == ("ceiling", 1)
    feed(a.guard, "candidate", 50, 50, rollout="initial")
    a.runner.tick()  # the trip again, but the flag is rolled back: nothing to latch or write
    assert a.runner.status()["pending_rollbacks"] == []
    assert a.latch.latched(ROUTE) is None


async def test_runner_does_nothing_for_a_trip_of_a_rollout_that_was_replaced(
    replicas: ReplicaFactory,
) -> None:
    """Rolled back and released by a person before the runner acts: the new rollout is left
    alone (no write), and the guard watches the new rollout id with clean counters."""
    a = await replicas()
    trip = trip_now(a)
    await a.flags.rollback(ROUTE, actor="ops", reason="manual rollback")
    released = await a.flags.release(ROUTE, actor="ops", reason="fixed, again")
    assert released.rollout_id != "initial"
    await a.runner.act(trip)

    assert flag_of(a).status == "active"
    history = await a.flags.history(ROUTE, 10)
    assert [e.action for e in history] == ["release", "rollback"]
    assert all(e.trigger == "manual" for e in history)
    state = a.guard.state(ROUTE)
    assert state is not None
    assert (state["rollout_id"], state["status"]) == (released.rollout_id, "watching")
    assert a.guard.tick() == []


async def test_runner_leaves_a_rollout_released_by_another_replica_alone(
    replicas: ReplicaFactory,
) -> None:
    """Replica B rolled back and released a new rollout; A's snapshot still shows the old one
    as active. A's write is a compare-and-set on the version it checked, so the new rollout
    is not rolled back on the old rollout's evidence."""
    a = await replicas()
    b = await replicas()
    trip = trip_now(a)
    await b.flags.rollback(ROUTE, actor="ops", reason="manual rollback")
    released = await b.flags.release(ROUTE, actor="ops", reason="fixed, again")
    assert (flag_of(a).rollout_id, flag_of(a).status) == ("initial", "active")  # stale
    await a.runner.act(trip)

    stored = await a.flags.current(ROUTE)
    assert (stored.status, stored.rollout_id, stored.version) == ("active", released.rollout_id, 2)
    assert [e.trigger for e in await a.flags.history(ROUTE, 10)] == ["manual", "manual"]
    assert a.guard.tick() == []


async def test_runner_does_not_roll_back_twice_when_another_replica_did_first(
    replicas: ReplicaFactory,
) -> None:
    """B rolled back first (A's snapshot is stale): A records no second rollback, and stops."""
    a = await replicas()
    b = await replicas()
    trip = trip_now(a)
    await b.flags.rollback(ROUTE, actor="ops", reason="manual rollback")
    assert await a.runner.act(trip) is True  # nothing left to do
    assert [e.actor for e in await a.flags.history(ROUTE, 10)] == ["ops"]


async def test_runner_retries_when_the_store_is_unavailable(replicas: ReplicaFactory) -> None:
    """The write fails with StoreUnavailableError: logged, nothing written, act() asks to be
    retried, and the rollback happens once the store answers."""
    a = await replicas()
    trip = trip_now(a)
    a.store.fail_writes = True
    assert await a.runner.act(trip) is False

    assert flag_of(a).status == "active"
    assert [fields["route"] for _, _, fields in a.log.named("guard.rollback_failed")] == [ROUTE]
    a.store.fail_writes = False
    assert await a.runner.act(trip) is True
    assert flag_of(a).status == "rolled_back"
    assert [e.trigger for e in await a.flags.history(ROUTE, 10)] == ["guard"]


async def test_runner_retries_when_a_concurrent_write_wins_the_race(
    replicas: ReplicaFactory,
) -> None:
    """A person's weight change lands between the runner's read and its compare-and-set: the
    rollout is still active, so act() asks to be retried (not dropped) and the rollback
    happens."""
    a = await replicas(poll_interval_s=0.02)
    b = await replicas()
    trip = trip_now(a)

    async def ramp_down() -> object:
        return await b.flags.update(
            ROUTE, FlagPatch(weight=10_000), actor="ops", reason="ramp down"
        )

    a.store.before_write = ramp_down
    assert await a.runner.act(trip) is False
    stored = await a.flags.current(ROUTE)
    assert (stored.status, stored.weight, stored.version) == ("active", 10_000, 1)
    assert a.log.named("guard.rollback_conflict")

    await wait_until(lambda: flag_of(a).version == 1, "A's snapshot to catch up with B's write")
    assert await a.runner.act(trip) is True
    stored = await a.flags.current(ROUTE)
    assert (stored.status, stored.weight, stored.version) == ("rolled_back", 10_000, 2)
    assert [e.trigger for e in await a.flags.history(ROUTE, 10)] == ["guard", "manual"]


async def test_runner_loop_rolls_back_on_its_own_ticks(replicas: ReplicaFactory) -> None:
    """start(): the runner ticks every tick_s and acts; failures alone lead to the rollback."""
    a = await replicas()
    await a.runner.start()
    feed(a.guard, "candidate", 60, 60, rollout="initial")
    await wait_until(lambda: flag_of(a).status == "rolled_back", "the guard's rollback")
    [entry] = await a.flags.history(ROUTE, 10)
    assert entry.trigger == "guard"
    assert isinstance(entry.evidence, dict)
    assert entry.evidence["rule"] == "ceiling"


# -- route-wide evidence -----------------------------------------------------------------------


def test_the_guard_looks_at_the_last_totals_plus_its_own_outcomes_since() -> None:
    """View = route-wide totals of the last exchange + this replica's outcomes after it."""
    guard = make_guard()
    feed(guard, "candidate", 10, 2)
    sent = guard.own_counts()
    assert sent == {(ROUTE, "ro_1"): OutcomeCounts(10, 2, 0, 0)}
    guard.merge_totals(sent, {(ROUTE, "ro_1"): OutcomeCounts(40, 20, 30, 1)})
    feed(guard, "candidate", 5, 5)
    feed(guard, "fallback", 1, 0)
    assert guard.counts(ROUTE) == OutcomeCounts(45, 25, 31, 1)


def test_route_wide_totals_trip_a_guard_whose_own_share_is_below_min_samples() -> None:
    """20 own candidate outcomes cannot trip (min_samples 50); with 60 route-wide, 40 of them
    failed, the same guard trips, and the verdict shows the route-wide counts."""
    guard = make_guard()
    feed(guard, "candidate", 20, 14)
    assert guard.tick() == []
    sent = guard.own_counts()
    guard.merge_totals(sent, {(ROUTE, "ro_1"): OutcomeCounts(60, 40, 0, 0)})
    [trip] = guard.tick()
    assert (trip.verdict.candidate.n, trip.verdict.candidate.failures) == (60, 40)


def test_totals_never_go_backwards_when_the_store_lost_other_replicas_counts() -> None:
    """The store restarted empty: the exchange returns only this replica's own counts; the
    guard keeps the totals it had seen, advanced by its own new outcomes."""
    guard = make_guard()
    feed(guard, "candidate", 10, 1)
    first = guard.own_counts()
    guard.merge_totals(first, {(ROUTE, "ro_1"): OutcomeCounts(100, 10, 80, 4)})
    feed(guard, "candidate", 5, 0)
    second = guard.own_counts()
    guard.merge_totals(second, {(ROUTE, "ro_1"): second[(ROUTE, "ro_1")]})
    assert guard.counts(ROUTE) == OutcomeCounts(105, 10, 80, 4)


def test_totals_of_a_replaced_rollout_are_ignored() -> None:
    """An exchange that was in flight while a release started a new rollout changes nothing."""
    guard = make_guard()
    feed(guard, "candidate", 3, 0)
    sent = guard.own_counts()
    guard.start_rollout(ROUTE, "ro_2")
    guard.merge_totals(sent, {(ROUTE, "ro_1"): OutcomeCounts(500, 400, 0, 0)})
    assert guard.counts(ROUTE) == OutcomeCounts()
    assert guard.tick() == []


async def test_two_replicas_decide_on_their_outcomes_together(replicas: ReplicaFactory) -> None:
    """A and B each saw 30 candidate outcomes (20 failed): neither alone has min_samples, but
    after one exchange each through the shared store both see 60 and both trip."""
    a = await replicas()
    b = await replicas()
    for replica in (a, b):
        feed(replica.guard, "candidate", 30, 20, rollout="initial")
        assert replica.guard.tick() == []
    await a.runner.sync_once()
    await b.runner.sync_once()
    await a.runner.sync_once()
    for replica in (a, b):
        assert replica.guard.counts(ROUTE) == OutcomeCounts(60, 40, 0, 0)
        [trip] = replica.guard.tick()
        assert trip.verdict.candidate.n == 60


async def test_many_replicas_tripping_at_once_write_one_rollback(replicas: ReplicaFactory) -> None:
    """Three replicas trip on the same totals: one guard rollback lands, one audit entry,
    carrying the replica that wrote it; the others stand down."""
    group = [await replicas() for _ in range(3)]
    trips = [trip_now(replica) for replica in group]
    results = await asyncio.gather(*(r.runner.act(t) for r, t in zip(group, trips, strict=True)))
    assert results == [True, True, True]
    history = await group[0].flags.history(ROUTE, 10)
    assert [(e.action, e.trigger) for e in history] == [("rollback", "guard")]
    assert history[0].evidence is not None
    assert history[0].evidence["replica"] in {"replica-0", "replica-1", "replica-2"}


async def test_a_tripped_replica_serves_the_fallback_while_the_store_is_down(
    replicas: ReplicaFactory,
) -> None:
    """Store down: the trip latches the route on this replica at once (the next request sees
    rolled_back), /readyz and the metric say a rollback is pending, and once the store is
    back the writer lands the rollback exactly once and the pending flag clears."""
    a = await replicas()
    a.store.fail_writes = True
    a.outcomes.down = True
    await a.runner.start()
    assert served(a).status == "active"
    feed(a.guard, "candidate", 50, 30, rollout="initial")
    await wait_until(lambda: served(a).status == "rolled_back", "the local latch")
    assert flag_of(a).status == "active"  # the snapshot: the write has not landed
    assert a.runner.status()["pending_rollbacks"] == [ROUTE]
    pending = {"route": ROUTE}
    assert a.metrics.registry.get_sample_value("gateway_guard_pending_rollbacks", pending) == 1
    await wait_until(lambda: bool(a.log.named("guard.rollback_failed")), "a failed write")
    await wait_until(lambda: a.runner.status()["evidence"] == "this_replica", "local evidence")
    assert a.metrics.registry.get_sample_value("gateway_guard_evidence_up") == 0

    a.store.fail_writes = False
    a.outcomes.down = False
    await wait_until(lambda: flag_of(a).status == "rolled_back", "the rollback to land")
    await wait_until(lambda: not a.runner.status()["pending_rollbacks"], "pending to clear")
    assert a.metrics.registry.get_sample_value("gateway_guard_pending_rollbacks", pending) == 0
    history = await a.flags.history(ROUTE, 10)
    assert [(e.action, e.trigger) for e in history] == [("rollback", "guard")]
    await wait_until(lambda: a.runner.status()["evidence"] == "route_wide", "shared evidence")


async def test_a_release_ends_the_local_latch(replicas: ReplicaFactory) -> None:
    """The latch holds for the condemned rollout id only: after the rollback lands and a
    person releases (new rollout id), the request path follows the flag again."""
    a = await replicas()
    feed(a.guard, "candidate", 50, 30, rollout="initial")
    a.store.fail_writes = True
    [trip] = a.runner.tick()
    assert served(a).status == "rolled_back"
    a.store.fail_writes = False
    assert await a.runner.act(trip) is True
    released = await a.flags.release(ROUTE, actor="ops", reason="fixed")
    assert a.latch.latched(ROUTE) is None
    assert (served(a).status, served(a).rollout_id) == ("active", released.rollout_id)


async def test_route_health_gauges_show_both_sides_failure_ratios(
    replicas: ReplicaFactory,
) -> None:
    """Both sides failing 15%: no trip (below the ceiling), but the gauges show each side's
    ratio, the route's overall ratio and the ceiling, for the both-variants-bad alert."""
    a = await replicas()
    feed(a.guard, "candidate", 100, 15, rollout="initial")
    feed(a.guard, "fallback", 100, 15, rollout="initial")
    assert a.runner.tick() == []
    sample = a.metrics.registry.get_sample_value
    for role in ("candidate", "fallback"):
        assert sample("gateway_guard_failure_ratio", {"route": ROUTE, "role": role}) == 0.15
        assert sample("gateway_guard_outcomes", {"route": ROUTE, "role": role}) == 100
    assert sample("gateway_route_failure_ratio", {"route": ROUTE}) == 0.15
    assert sample("gateway_guard_ceiling", {"route": ROUTE}) == 0.2


def test_a_late_break_is_caught_by_the_recent_rule_within_150_candidate_outcomes() -> None:
    """1,000 healthy candidate outcomes (2% failing), then every other one fails; the guard
    looking every 5 outcomes trips on the recent windows well before the whole-rollout rules
    could, and the audit reason names the window."""
    guard = make_guard()
    for index in range(1_000):
        guard.observe(ROUTE, "ro_1", "candidate", index % 50 == 0)
        if not guard.own_counts()[(ROUTE, "ro_1")].cand_n % 5:
            assert guard.tick() == []
    for after_break in range(1, 151):
        guard.observe(ROUTE, "ro_1", "candidate", after_break % 2 == 0)
        if after_break % 5 == 0:
            trips = guard.tick()
            if trips:
                break
    [trip] = trips
    assert trip.verdict.rule == "recent"
    assert after_break <= 150
    assert describe(trip.verdict).startswith("guard: recent rule: candidate failed")
