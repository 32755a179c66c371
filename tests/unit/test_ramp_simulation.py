"""The ramp simulation's requirements on its first runs (bench/ramp_simulation.py; the full
1,000 runs per scenario are in bench/results/ramp_simulation.md).

The simulation runs the real guard rules, the real ramp decision and the real ramp changes, so
these runs check the issue's promises on the same code: a healthy candidate climbs to 100% by
itself, a candidate 5 points worse never leaves the first step and is rolled back.
"""

from __future__ import annotations

import numpy as np

from bench.ramp_simulation import RAMP, SCENARIOS, simulate_run

HEALTHY, AA, WORSE = SCENARIOS[0], SCENARIOS[1], SCENARIOS[2]


def test_a_healthy_candidate_reaches_100_percent_through_every_step() -> None:
    rng = np.random.default_rng(HEALTHY.seed)
    runs = [simulate_run(HEALTHY, rng) for _ in range(10)]
    assert all(r.outcome == "complete" for r in runs)
    for r in runs:
        assert len(r.step_seconds) == len(RAMP.steps) - 1
        assert all(t >= RAMP.min_dwell_s for t in r.step_seconds)  # every step dwells


def test_a_candidate_five_points_worse_never_passes_the_first_step_and_is_rolled_back() -> None:
    rng = np.random.default_rng(WORSE.seed)
    runs = [simulate_run(WORSE, rng) for _ in range(10)]
    assert all(r.outcome == "rolled_back" for r in runs)
    assert all(r.highest_step == 0 for r in runs)
    assert {r.rule for r in runs} == {"regression"}


def test_a_and_a_reaches_100_percent() -> None:
    rng = np.random.default_rng(AA.seed)
    runs = [simulate_run(AA, rng) for _ in range(6)]
    assert all(r.outcome == "complete" for r in runs)
    # the first step waits for the evidence, far beyond its dwell; the next ones do not
    assert min(r.step_seconds[0] for r in runs) > 2 * RAMP.min_dwell_s
