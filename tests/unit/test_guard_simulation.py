"""The guard's statistics, simulated (no network): how often it rolls back, and how fast.

Every scenario of the issue (tests/unit/guard_sim.py ``SCENARIOS``) runs with the default
policy (``GuardConfig()``: ceiling 0.20, margin 0.02, alpha 0.05, min_samples 50), the guard
(whole-rollout rules and recent windows) looking after every single outcome, from a fixed seed:

* A/A (both sides fail 5%), 20,000 requests at 10% and at 50% candidate share: a false
  rollback in under 1% of 1,000 runs;
* a candidate failing 50% (fallback 5%, 50% share): rolled back within 100 candidate outcomes
  in at least 99% of 1,000 runs;
* 10 points worse (15% vs 5%) at 10% share: rolled back before 10,000 requests in at least 95%;
* 20 points worse (25% vs 5%) at 50% share: rolled back within 2,000 requests in at least 95%;
* 1 point worse (6% vs 5%, inside the 0.02 margin): rolled back in under 5% of runs;
* both at the 20% ceiling: rolled back in under 5% (alpha); both at 15%: under 1%;
* a break from 5% (or 2%) to 50% failures after 1,000 candidate outcomes: rolled back within
  150 candidate outcomes of the break in at least 95% of runs.

The replicated model (``ROUTE_SCENARIOS``: 1 and 12 replicas, round-robin, flushes, ticks and
propagation at 200 requests/s) runs its smoke version here: its snapshots are checked against
a plain event-by-event replay, one replica looking after every request equals the every-look
model, and the requirements hold on the first runs of each seed.

bench/guard_simulation.py runs the same scenarios with 1,000 runs each and commits the table.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway.config import GuardConfig
from tests.unit.guard_sim import (
    ROUTE_SCENARIOS,
    SCENARIOS,
    RouteResult,
    RouteScenario,
    RunResult,
    Scenario,
    Timing,
    draw_stream,
    replica_snapshots,
    simulate_route_run,
    simulate_run,
    simulate_run_every_look,
    simulate_scenario,
)
from tests.unit.guard_sim_pool import route_results

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def run(name: str) -> tuple[Scenario, list[RunResult]]:
    scenario = BY_NAME[name]
    return scenario, simulate_scenario(scenario, scenario.test_runs)


def tripped(results: list[RunResult]) -> list[RunResult]:
    return [r for r in results if r.rule is not None]


@pytest.mark.parametrize("name", ["A/A, 10% share", "A/A, 50% share"])
def test_a_candidate_as_good_as_the_fallback_is_rolled_back_in_under_1_percent_of_runs(
    name: str,
) -> None:
    """A/A, 5% failures each, 20,000 requests, 1,000 runs: fewer than 10 false rollbacks."""
    scenario, results = run(name)
    assert len(results) == 1000
    false_rollbacks = len(tripped(results))
    assert false_rollbacks < 0.01 * len(results), f"{false_rollbacks} false rollbacks"
    assert scenario.met(results)


def test_a_candidate_failing_half_the_time_is_rolled_back_within_100_candidate_outcomes() -> None:
    """50% vs 5% at 50% share: in >= 99% of 1,000 runs, by the 100th candidate outcome."""
    scenario, results = run("candidate fails 50%")
    assert len(results) == 1000
    in_time = [r for r in tripped(results) if r.candidate_outcomes and r.candidate_outcomes <= 100]
    assert len(in_time) >= 0.99 * len(results), f"{len(in_time)} of {len(results)} in time"
    # never before min_samples candidate outcomes
    assert min(r.candidate_outcomes or 0 for r in tripped(results)) >= 50
    assert scenario.met(results)


def test_a_candidate_10_points_worse_at_10_percent_share_is_rolled_back_before_10000_requests() -> (
    None
):
    """15% vs 5% at 10% share: below the 20% ceiling, so the regression rule does it."""
    scenario, results = run("10 points worse, 10% share")
    done = tripped(results)
    assert len(done) >= 0.95 * len(results), f"{len(done)} of {len(results)} rolled back"
    assert all(r.request is not None and r.request <= 10_000 for r in done)
    assert {r.rule for r in done} == {"regression"}
    assert scenario.met(results)


def test_a_candidate_20_points_worse_at_50_percent_share_is_rolled_back_quickly() -> None:
    """25% vs 5% at 50% share: rolled back within 2,000 requests in >= 95% of runs."""
    scenario, results = run("20 points worse, 50% share")
    done = tripped(results)
    assert len(done) >= 0.95 * len(results), f"{len(done)} of {len(results)} rolled back"
    assert scenario.met(results)


def test_a_candidate_worse_by_less_than_the_margin_rarely_trips() -> None:
    """6% vs 5% (a 0.01 difference, the margin is 0.02), 20,000 requests: < 5% of runs trip."""
    scenario, results = run("1 point worse (within margin)")
    rate = len(tripped(results)) / len(results)
    assert rate < 0.05, f"tripped in {rate:.1%} of runs"
    assert scenario.met(results)


def test_the_a_a_requirement_fails_for_a_guard_set_to_trip_on_noise() -> None:
    """The check has teeth: with the ceiling at the true 5% rate and alpha 0.9 (0.45 for the
    whole-rollout rules), the same A/A scenario rolls back in well over 1% of runs."""
    sloppy = GuardConfig(ceiling=0.05, alpha=0.9, min_samples=10)
    scenario = BY_NAME["A/A, 50% share"]
    results = simulate_scenario(scenario, 100, sloppy)
    assert scenario.measured(results) > 0.03
    assert not scenario.met(results)


@pytest.mark.parametrize(
    ("candidate_rate", "fallback_rate", "share", "requests", "break_after"),
    [(0.15, 0.05, 0.1, 3000, None), (0.05, 0.05, 0.5, 1500, None), (0.3, 0.05, 0.5, 1500, None),
     (0.09, 0.05, 0.5, 2500, None), (0.27, 0.27, 0.5, 3000, None), (0.2, 0.2, 0.5, 3000, None),
     (0.05, 0.05, 0.5, 1600, 600), (0.1, 0.05, 0.5, 2000, 700)],
)  # fmt: skip
def test_the_numpy_prefilter_finds_the_same_trip_as_the_real_rule_at_every_look(
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    break_after: int | None,
) -> None:
    """simulate_run (vectorised prefilter and windows) == decide_rule and RecentWindow called
    after every single outcome, for trips by any rule early, late or never."""
    policy = GuardConfig()
    rules = []
    for seed in range(6):
        kwargs = {
            "candidate_rate": candidate_rate,
            "fallback_rate": fallback_rate,
            "share": share,
            "requests": requests,
            "break_after": break_after,
            "break_rate": None if break_after is None else 0.45,
        }
        fast = simulate_run(np.random.default_rng(seed), policy, **kwargs)  # type: ignore[arg-type]
        slow = simulate_run_every_look(np.random.default_rng(seed), policy, **kwargs)  # type: ignore[arg-type]
        assert fast == slow, seed
        rules.append(fast.rule)
    if candidate_rate >= 0.15 and candidate_rate != fallback_rate:
        assert any(rules)  # the comparison covered runs that trip, not only quiet ones
    if break_after is not None:
        assert "recent" in rules  # and runs the recent rule decided


def test_the_stream_breaks_after_the_given_candidate_outcome() -> None:
    """draw_stream: the candidate fails at the first rate for its first break_after outcomes,
    at break_rate afterwards; the fallback is untouched."""
    to_candidate, failed = draw_stream(
        np.random.default_rng(3),
        candidate_rate=0.0,
        fallback_rate=0.0,
        share=0.5,
        requests=4000,
        break_after=900,
        break_rate=1.0,
    )
    cand = failed[to_candidate]
    assert not cand[:900].any()
    assert cand[900:].all()
    assert not failed[~to_candidate].any()


@pytest.mark.parametrize(
    "name",
    [
        "at the ceiling (20% / 20%)",
        "both bad (15% / 15%)",
        "late break: 5% -> 50% after 1,000 candidate outcomes",
        "late break: 2% -> 50% after 1,000 candidate outcomes",
    ],
)
def test_ceiling_both_bad_and_late_break_requirements(name: str) -> None:
    """At the ceiling: < alpha; both 15%: < 1% (the guard cannot blame the candidate); a late
    break: within 150 candidate outcomes of the break in >= 95%, never before it."""
    scenario, results = run(name)
    assert scenario.met(results), scenario.measured(results)
    if scenario.break_after is not None:
        assert all(
            r.candidate_outcomes is not None and r.candidate_outcomes > scenario.break_after
            for r in results
        )
        assert {r.rule for r in results} <= {"recent", "ceiling"}
        assert "recent" in {r.rule for r in results}


# -- replicas ------------------------------------------------------------------------------------

ROUTE_BY_NAME = {scenario.name: scenario for scenario in ROUTE_SCENARIOS}


def replay_snapshots(
    to_candidate: npt.NDArray[np.bool_],
    failed: npt.NDArray[np.bool_],
    replicas: int,
    flush_phase: list[float],
    tick_phase: list[float],
    timing: Timing,
    horizon: float,
) -> list[list[tuple[float, tuple[int, ...]]]]:
    """The same views, replayed event by event: requests, flushes (write then read) and looks
    in time order, each replica keeping its pending counts and its last read totals."""
    events: list[tuple[float, int, str, int]] = []  # time, order at equal times, kind, replica
    for i in range(len(to_candidate)):
        events.append((float(i), 0, "request", i % replicas))
    for r in range(replicas):
        at = flush_phase[r]
        while at < horizon:
            events.append((at, 1, "flush", r))
            at += timing.flush
        at = tick_phase[r]
        while at < horizon:
            events.append((at, 2, "look", r))
            at += timing.tick
    store = [0, 0, 0, 0]
    pending = [[0, 0, 0, 0] for _ in range(replicas)]
    read = [[0, 0, 0, 0] for _ in range(replicas)]
    views: list[list[tuple[float, tuple[int, ...]]]] = [[] for _ in range(replicas)]
    request = 0
    for at, _, kind, r in sorted(events):
        if kind == "request":
            cand, bad = bool(to_candidate[request]), bool(failed[request])
            delta = [cand, cand and bad, not cand, (not cand) and bad]
            pending[r] = [a + b for a, b in zip(pending[r], delta, strict=True)]
            request += 1
        elif kind == "flush":
            store = [a + b for a, b in zip(store, pending[r], strict=True)]
            pending[r] = [0, 0, 0, 0]
            read[r] = list(store)
        else:
            views[r].append((at, tuple(a + b for a, b in zip(read[r], pending[r], strict=True))))
    return views


@pytest.mark.parametrize(("replicas", "seed"), [(1, 1), (3, 2), (12, 3)])
def test_replica_snapshots_match_an_event_by_event_replay(replicas: int, seed: int) -> None:
    """What each replica's guard sees (last read totals + own pending), vectorised, equals a
    plain replay of requests, flushes and looks; with one replica it is the exact count."""
    rng = np.random.default_rng(seed)
    timing = Timing(rate_rps=200.0)
    to_candidate, failed = draw_stream(
        rng, candidate_rate=0.3, fallback_rate=0.1, share=0.5, requests=600
    )
    flush_phase = (rng.random(replicas) * timing.flush).tolist()
    tick_phase = (rng.random(replicas) * timing.tick).tolist()
    views = replica_snapshots(
        to_candidate,
        failed,
        replicas,
        np.array(flush_phase),
        np.array(tick_phase),
        timing,
        590.0,
    )
    expected = replay_snapshots(
        to_candidate, failed, replicas, flush_phase, tick_phase, timing, 590.0
    )
    for r in range(replicas):
        looks, counts = views[r]
        replayed = expected[r]
        assert len(looks) == len(replayed)
        assert looks.tolist() == pytest.approx([at for at, _ in replayed], abs=1e-9)
        assert [tuple(row) for row in counts.tolist()] == [row for _, row in replayed]
        if replicas == 1:
            for at, row in zip(looks.tolist(), counts.tolist(), strict=True):
                assert row[0] + row[2] == min(600, int(np.ceil(at)))  # nothing is missing


@pytest.mark.parametrize(
    ("candidate_rate", "break_after"), [(0.5, None), (0.3, None), (0.05, 700), (0.05, None)]
)
def test_one_replica_looking_after_every_request_is_the_every_look_model(
    candidate_rate: float, break_after: int | None
) -> None:
    """One replica, a tick of one request: the replicated model finds the same trip (rule and
    candidate outcomes) as the every-look model on the same stream."""
    timing = Timing(rate_rps=10.0, tick_s=0.1, flush_s=0.05, propagation_s=0.1)
    policy = GuardConfig()
    for seed in range(4):
        kwargs = {
            "candidate_rate": candidate_rate,
            "fallback_rate": 0.05,
            "share": 0.5,
            "requests": 2000,
            "break_after": break_after,
            "break_rate": None if break_after is None else 0.5,
        }
        route = simulate_route_run(
            np.random.default_rng(seed),
            policy,
            replicas=1,
            timing=timing,
            **kwargs,  # type: ignore[arg-type]
        )
        every = simulate_run_every_look(np.random.default_rng(seed), policy, **kwargs)  # type: ignore[arg-type]
        assert (route.rule, route.candidate_outcomes_at_trip) == (
            every.rule,
            every.candidate_outcomes,
        ), seed


def route_run(name: str) -> tuple[RouteScenario, list[RouteResult]]:
    """The row's first ``test_runs`` runs (computed in the background when the session started
    them early: tests/unit/guard_sim_pool.py; the same seeds, the same results)."""
    return ROUTE_BY_NAME[name], route_results(name)


@pytest.mark.parametrize(
    "name",
    [
        "A/A 5% / 5%, 12 replica(s)",
        "candidate fails 50%, 1 replica(s)",
        "candidate fails 50%, 12 replica(s)",
        "late break 5% -> 50% after 1,000, 1 replica(s)",
        "late break 5% -> 50% after 1,000, 12 replica(s)",
        "both bad 15% / 15%, 12 replica(s)",
        "at the ceiling 20% / 20%, 12 replica(s)",
    ],
)
def test_replicated_requirements_hold_on_the_first_runs(name: str) -> None:
    """The bench's replicated rows, first runs of the same seeds: no false rollback in A/A at 12
    replicas, broken and late-break candidates out within their budgets on 1 and 12 replicas."""
    scenario, results = route_run(name)
    assert scenario.met(results), (scenario.rollback_rate(results), scenario.answers(results))


def test_route_wide_totals_are_what_makes_12_replicas_as_fast_as_one() -> None:
    """The check has teeth: with no flushes (each replica's guard sees only its own outcomes,
    the guard before issue 10), 12 replicas let far more than 100 candidate answers through."""
    scenario = ROUTE_BY_NAME["candidate fails 50%, 12 replica(s)"]
    rng = np.random.default_rng(scenario.seed)
    local = Timing(flush_s=1e9)  # never flushes
    answers = []
    for _ in range(20):
        result = simulate_route_run(
            rng,
            GuardConfig(),
            candidate_rate=0.5,
            fallback_rate=0.05,
            share=0.5,
            requests=3000,
            replicas=12,
            timing=local,
        )
        assert result.candidate_answers is not None
        answers.append(result.candidate_answers)
    assert min(answers) > 4 * GuardConfig().min_samples
