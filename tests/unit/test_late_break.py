"""The late-break detector (gateway.quality.late_break): windows of recent candidate outcomes.

The tests check the arithmetic against independent computations (the mixture likelihood ratio
as a plain product, the thresholds by a full scan), the supermartingale property the bound
rests on, the spending (the windows' alphas sum to alpha_recent), the detector's handling of
the snapshots a distributed guard feeds it (jumps, repeats, stale ones, bad ones), and, by
simulation, what it is for: a break after a long healthy run is caught quickly, while a
candidate sitting exactly at the ceiling trips in at most alpha_recent of the runs.
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from gateway.config import GuardConfig
from gateway.quality.guard import evaluate
from gateway.quality.late_break import (
    EVERY,
    ODDS_RATIOS,
    SPAN,
    RecentWindow,
    describe_recent,
    log_e_value,
    min_failures,
    split_alpha,
    window_alpha,
)

POLICY = GuardConfig()  # ceiling 0.20, alpha 0.05, min_samples 50
ALPHA_MAIN, ALPHA_RECENT = split_alpha(POLICY.alpha)


def alternatives(ceiling: float) -> list[float]:
    odds = ceiling / (1 - ceiling)
    return [odds * r / (1 + odds * r) for r in ODDS_RATIOS]


def e_value_by_product(failures: int, n: int, ceiling: float) -> float:
    """The mixture likelihood ratio from its definition, as a product of per-outcome factors."""
    total = 0.0
    for q in alternatives(ceiling):
        value = 1.0
        for index in range(n):
            value *= q / ceiling if index < failures else (1 - q) / (1 - ceiling)
        total += value
    return total / len(ODDS_RATIOS)


def feed_stream(detector: RecentWindow, failed: list[bool], step: int = 1) -> int | None:
    """Feed cumulative counts every ``step`` outcomes; the count at which it trips, or None."""
    failures = 0
    for index, bad in enumerate(failed, start=1):
        failures += bad
        if (index % step == 0 or index == len(failed)) and detector.look(index, failures):
            return index
    return None


# -- the arithmetic -----------------------------------------------------------------------------


def test_the_alpha_split_and_the_spending_add_up_to_the_routes_alpha() -> None:
    """alpha_main + alpha_recent = alpha; the windows' alphas sum to alpha_recent (partial sums
    1 - 1/(K+1) of it, exactly, as fractions)."""
    assert math.isclose(ALPHA_MAIN + ALPHA_RECENT, POLICY.alpha)
    assert 0 < ALPHA_MAIN < POLICY.alpha
    assert 0 < ALPHA_RECENT < POLICY.alpha
    for windows in (1, 10, 1000):
        spent = sum(Fraction(1, k * (k + 1)) for k in range(1, windows + 1))
        assert spent == 1 - Fraction(1, windows + 1)
        total = sum(window_alpha(ALPHA_RECENT, k) for k in range(1, windows + 1))
        assert total == pytest.approx(ALPHA_RECENT * float(spent), rel=1e-12)
        assert total < ALPHA_RECENT
    with pytest.raises(ValueError, match="numbered from 1"):
        window_alpha(ALPHA_RECENT, 0)
    with pytest.raises(ValueError, match="alpha must be in"):
        split_alpha(1.0)


@pytest.mark.parametrize("ceiling", [0.05, 0.2, 0.6])
def test_log_e_value_is_the_mixture_likelihood_ratio(ceiling: float) -> None:
    """log_e_value equals the log of the plain product definition, for several counts."""
    for failures, n in [(0, 0), (0, 10), (3, 10), (10, 10), (12, 80), (40, 120)]:
        expected = math.log(e_value_by_product(failures, n, ceiling))
        assert log_e_value(failures, n, ceiling) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="failures <= n"):
        log_e_value(5, 4, ceiling)


@pytest.mark.parametrize("ceiling", [0.05, 0.2, 0.6])
def test_the_e_value_is_a_supermartingale_under_any_rate_up_to_the_ceiling(
    ceiling: float,
) -> None:
    """E[M_{m+1} / M_m | past] is 1 at the ceiling and below 1 under it, for each alternative
    and so for the mixture: Ville's inequality applies to the windows' tests."""
    for p in (ceiling, ceiling / 2, 0.0):
        for q in alternatives(ceiling):
            assert q > ceiling
            step = p * q / ceiling + (1 - p) * (1 - q) / (1 - ceiling)
            if p == ceiling:
                assert step == pytest.approx(1.0, abs=1e-12)
            else:
                assert step < 1.0


@pytest.mark.parametrize("alpha_k", [ALPHA_RECENT / 2, ALPHA_RECENT / 1640, 1e-9])
@pytest.mark.parametrize("ceiling", [0.05, 0.2, 0.6])
def test_min_failures_is_the_smallest_count_whose_e_value_reaches_one_over_alpha(
    ceiling: float, alpha_k: float
) -> None:
    """The cached, incrementally grown thresholds equal a full scan over every failure count."""
    level = math.log(1 / alpha_k)
    for m in [0, 1, 2, 5, 17, 60, 201, 64, 3]:  # out of order: the table grows, then is read
        scan = next((s for s in range(m + 1) if log_e_value(s, m, ceiling) >= level), m + 1)
        assert min_failures(m, ceiling, alpha_k) == scan, m
    assert min_failures(0, ceiling, alpha_k) == 1  # nothing trips an empty window
    with pytest.raises(ValueError, match="m must be"):
        min_failures(-1, ceiling, alpha_k)


def test_later_windows_need_more_evidence() -> None:
    """Window k's alpha shrinks with k, so its threshold at a given size never falls."""
    for m in (40, 100, 200):
        needed = [min_failures(m, 0.2, window_alpha(ALPHA_RECENT, k)) for k in range(1, 60)]
        assert needed == sorted(needed)
        assert needed[-1] > needed[0]


# -- the detector on snapshots ------------------------------------------------------------------


def test_no_verdict_before_min_samples_candidate_outcomes() -> None:
    """Every outcome fails: not before min_samples in all, and at the first look from then on."""
    detector = RecentWindow(POLICY)
    for n in range(1, POLICY.min_samples):
        assert detector.look(n, n) is None
    assert detector.look(POLICY.min_samples, POLICY.min_samples) == "recent"


def test_a_trip_is_latched_and_its_evidence_is_the_window_that_tripped() -> None:
    """After a trip every look says "recent"; the evidence's numbers are consistent with the
    window's counts, its threshold and its alpha."""
    detector = RecentWindow(POLICY)
    failed = [False] * 1000 + [True] * 200
    at = feed_stream(detector, failed)
    assert at is not None
    assert 1000 < at <= 1200
    evidence = detector.fired
    assert evidence is not None
    assert evidence.tripped
    assert evidence.start_n % EVERY == 0
    assert evidence.start_n + evidence.n == at
    assert evidence.failures == at - max(1000, evidence.start_n)
    assert evidence.failures >= evidence.needed == min_failures(evidence.n, 0.2, evidence.alpha)
    assert evidence.alpha == window_alpha(ALPHA_RECENT, evidence.start_n // EVERY)
    assert evidence.log_e_value >= math.log(1 / evidence.alpha)
    assert evidence.log_e_value == pytest.approx(log_e_value(evidence.failures, evidence.n, 0.2))
    assert detector.look(at + 500, at) == "recent"  # whatever comes next
    assert detector.evidence() == evidence


def test_repeated_stale_and_impossible_snapshots() -> None:
    """The same snapshot again changes nothing; an older one is ignored; failures > n raise."""
    detector = RecentWindow(POLICY)
    assert detector.look(100, 3) is None
    assert detector.look(100, 3) is None
    before = detector.evidence()
    assert detector.look(90, 3) is None  # fewer outcomes than already seen
    assert detector.look(100, 2) is None  # fewer failures than already seen
    assert detector.evidence() == before
    with pytest.raises(ValueError, match="failures <= n"):
        detector.look(101, 102)
    with pytest.raises(ValueError, match="failures <= n"):
        detector.look(101, -1)


def test_failures_without_new_outcomes_are_looked_at() -> None:
    """Negative feedback raises failures at an unchanged n: that snapshot can trip."""
    detector = RecentWindow(POLICY)
    assert detector.look(1000, 20) is None
    assert detector.look(1060, 20) is None
    failures = 20
    while detector.look(1060, failures) is None:
        failures += 1
        assert failures <= 1060
    evidence = detector.fired
    assert evidence is not None
    assert evidence.start_n + evidence.n == 1060
    assert failures - evidence.start_failures == evidence.needed


def test_batched_snapshots_start_at_most_one_window_per_look() -> None:
    """A look that jumps over several checkpoints starts one window, numbered by the last
    checkpoint passed (the skipped windows' alpha is not spent)."""
    detector = RecentWindow(POLICY)
    assert detector.look(10 * EVERY + 3, 0) is None
    assert detector.look(20 * EVERY + 1, 0) is None
    assert detector.look(20 * EVERY + 2, 0) is None
    failures = 0
    n = 20 * EVERY + 2
    while detector.look(n, failures) is None:
        n, failures = n + 1, failures + 1
    evidence = detector.fired
    assert evidence is not None
    assert evidence.window == 20
    assert evidence.start_n == 20 * EVERY + 1


def test_windows_close_after_their_span() -> None:
    """Failures that happened long ago (more than SPAN outcomes before any open window) do not
    count: 5 failures after 1,000 clean outcomes, then a long clean run: no trip, and the open
    windows are the recent, clean ones."""
    detector = RecentWindow(POLICY)
    failed = [False] * 1000 + [True] * 5 + [False] * (3 * SPAN)
    assert feed_stream(detector, failed) is None
    evidence = detector.evidence()
    assert evidence is not None
    assert evidence.start_n >= len(failed) - SPAN - EVERY  # only recent windows are open
    assert evidence.failures == 0


def test_the_detector_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="every and span"):
        RecentWindow(POLICY, every=0)


def test_a_verdict_with_recent_evidence() -> None:
    """evaluate(): rule "recent" when the window tripped and no whole-rollout rule fires, with
    the window's account as why; a whole-rollout rule that fires takes precedence."""
    detector = RecentWindow(POLICY)
    feed_stream(detector, [False] * 1000 + [True] * 60)
    recent = detector.fired
    assert recent is not None
    verdict = evaluate(POLICY, 1000 + recent.n, recent.failures, 500, 10, recent=recent)
    assert verdict.rule == "recent"
    assert verdict.why == describe_recent(recent)
    assert f"{recent.failures}/{recent.n}" in verdict.why
    assert verdict.recent == recent
    assert (verdict.alpha, verdict.alpha_route) == (ALPHA_MAIN, POLICY.alpha)
    assert evaluate(POLICY, 60, 60, 0, 0, recent=recent).rule == "ceiling"
    watching = evaluate(POLICY, 100, 2, 0, 0, recent=RecentWindow(POLICY).evidence())
    assert watching.rule is None


# -- what it is for: simulated streams ----------------------------------------------------------


def every_look_trips(failed: npt.NDArray[np.bool_], policy: GuardConfig) -> npt.NDArray[np.int64]:
    """Per run (row), the outcome count at which the detector first trips when it looks after
    every outcome (0: never), computed window by window with numpy from min_failures."""
    runs, steps = failed.shape
    cum = np.concatenate([np.zeros((runs, 1), np.int64), np.cumsum(failed, axis=1)], axis=1)
    first = np.full(runs, steps + 1)
    alpha_recent = split_alpha(policy.alpha)[1]
    for k in range(1, (steps - 1) // EVERY + 1):
        start = k * EVERY
        stop = min(steps, start + SPAN)
        m = np.arange(1, stop - start + 1)
        alpha_k = window_alpha(alpha_recent, k)
        needed = np.array([min_failures(int(i), policy.ceiling, alpha_k) for i in m])
        hit = (cum[:, start + 1 : stop + 1] - cum[:, start : start + 1] >= needed) & (
            start + m >= policy.min_samples
        )
        at = np.where(hit.any(axis=1), start + 1 + hit.argmax(axis=1), steps + 1)
        first = np.minimum(first, at)
    return np.where(first <= steps, first, 0)


def test_the_numpy_version_agrees_with_the_detector() -> None:
    """every_look_trips (used below) == RecentWindow looked at after every outcome."""
    rng = np.random.default_rng(5)
    rates = np.where(np.arange(1500) < 700, 0.1, 0.45)
    failed = rng.random((12, 1500)) < rates
    fast = every_look_trips(failed, POLICY)
    for row in range(12):
        slow = feed_stream(RecentWindow(POLICY), failed[row].tolist())
        assert int(fast[row]) == (slow or 0), row
    assert np.count_nonzero(fast) >= 6  # both outcomes are covered


def test_a_break_after_1000_healthy_outcomes_is_caught_within_150() -> None:
    """3% failures for 1,000 outcomes, then 50%: median and 95th percentile of the outcomes
    from the break to the trip are within 150, at every offset of the break from a checkpoint.
    """
    rng = np.random.default_rng(21)
    for offset in (0, EVERY // 2, EVERY - 1):
        brk = 1000 + offset
        rates = np.where(np.arange(brk + 400) < brk, 0.03, 0.5)
        trips = every_look_trips(rng.random((400, brk + 400)) < rates, POLICY)
        assert np.all(trips > brk), "tripped before the break"
        delays = (trips - brk).tolist()
        assert statistics.median(delays) <= 150
        assert np.percentile(delays, 95) <= 150


def test_a_candidate_at_the_ceiling_trips_in_at_most_alpha_recent_of_the_runs() -> None:
    """Exactly at the 20% ceiling for 3,000 outcomes (120 windows), looked at after every
    outcome: the share of runs with a trip is at most alpha_recent (2.5%)."""
    rng = np.random.default_rng(22)
    trips = every_look_trips(rng.random((2000, 3000)) < POLICY.ceiling, POLICY)
    rate = np.count_nonzero(trips) / len(trips)
    assert rate <= ALPHA_RECENT, rate


def test_without_spending_the_same_check_fails() -> None:
    """The check above has teeth: giving every window the whole alpha_recent (no spending)
    trips a candidate at the ceiling in far more than alpha_recent of the runs."""
    rng = np.random.default_rng(22)
    failed = rng.random((300, 3000)) < POLICY.ceiling
    cum = np.concatenate([np.zeros((300, 1), np.int64), np.cumsum(failed, axis=1)], axis=1)
    tripped = np.zeros(300, bool)
    for start in range(EVERY, 3000, EVERY):
        stop = min(3000, start + SPAN)
        m = np.arange(1, stop - start + 1)
        needed = np.array([min_failures(int(i), 0.2, ALPHA_RECENT) for i in m])
        tripped |= (cum[:, start + 1 : stop + 1] - cum[:, start : start + 1] >= needed).any(axis=1)
    assert np.count_nonzero(tripped) > 4 * ALPHA_RECENT * 300
