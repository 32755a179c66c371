"""The guard's statistics, simulated (no network): how often it rolls back, and how fast.

Every scenario of the issue (tests/unit/guard_sim.py ``SCENARIOS``) runs with the default
policy (``GuardConfig()``: ceiling 0.20, margin 0.02, alpha 0.05, min_samples 50), the guard
looking after every single outcome, from a fixed seed:

* A/A (both sides fail 5%), 20,000 requests at 10% and at 50% candidate share: a false
  rollback in under 1% of 1,000 runs;
* a candidate failing 50% (fallback 5%, 50% share): rolled back within 100 candidate outcomes
  in at least 99% of 1,000 runs;
* 10 points worse (15% vs 5%) at 10% share: rolled back before 10,000 requests in at least 95%;
* 20 points worse (25% vs 5%) at 50% share: rolled back within 2,000 requests in at least 95%;
* 1 point worse (6% vs 5%, inside the 0.02 margin): rolled back in under 5% of runs.

bench/guard_simulation.py runs the same scenarios with 1,000 runs each and commits the table.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.config import GuardConfig
from tests.unit.guard_sim import (
    SCENARIOS,
    RunResult,
    Scenario,
    simulate_run,
    simulate_run_every_look,
    simulate_scenario,
)

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
    ("candidate_rate", "fallback_rate", "share", "requests"),
    [(0.15, 0.05, 0.1, 3000), (0.05, 0.05, 0.5, 1500), (0.3, 0.05, 0.5, 1500),
     (0.09, 0.05, 0.5, 2500), (0.27, 0.27, 0.5, 3000)],
)  # fmt: skip
def test_the_numpy_prefilter_finds_the_same_trip_as_the_real_rule_at_every_look(
    candidate_rate: float, fallback_rate: float, share: float, requests: int
) -> None:
    """simulate_run (vectorised prefilter) == decide_rule called after every single outcome,
    for trips by either rule early (first looks), late (vectorised bounds) or never."""
    policy = GuardConfig()
    trips = 0
    for seed in range(6):
        fast = simulate_run(
            np.random.default_rng(seed),
            policy,
            candidate_rate=candidate_rate,
            fallback_rate=fallback_rate,
            share=share,
            requests=requests,
        )
        slow = simulate_run_every_look(
            np.random.default_rng(seed),
            policy,
            candidate_rate=candidate_rate,
            fallback_rate=fallback_rate,
            share=share,
            requests=requests,
        )
        assert fast == slow, seed
        trips += fast.rule is not None
    if candidate_rate >= 0.15:
        assert trips > 0  # the comparison covered runs that trip, not only quiet ones
