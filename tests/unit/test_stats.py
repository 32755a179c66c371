"""The guard's confidence sequences (gateway.quality.stats): beta-binomial, time-uniform.

The interval for a failure rate after ``s`` failures in ``n`` outcomes is the set of rates ``p``
where the mixture martingale ``M_n(p)`` is below ``1/alpha``. The tests check its shape (it
contains ``s/n``, hits 0 and 1 at the right counts, shrinks with n), compare it with an
independent brute-force evaluation of the martingale on a fine grid of rates, and simulate long
streams: the true rate must stay inside the interval at *every* n in at least ``1 - alpha`` of
the runs, which a fixed-n interval checked at every n does not achieve.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

from gateway.quality.stats import (
    Interval,
    confidence_interval,
    log_mixture_martingale,
    lower_bound,
    upper_bound,
)

GRID_STEP = 1e-5


def brute_force_interval(s: int, n: int, alpha: float) -> tuple[float, float]:
    """The confidence set evaluated on a grid of rates, from the definition alone.

    With a Beta(1, 1) prior the mixture's marginal is ``s! (n - s)! / (n + 1)! =
    1 / ((n + 1) C(n, s))`` (exact integers here, no lgamma), so
    ``log M_n(p) = -log((n + 1) C(n, s)) - s log p - (n - s) log(1 - p)``.
    """
    grid = np.arange(1, round(1 / GRID_STEP)) * GRID_STEP  # open interval (0, 1)
    log_m = -math.log((n + 1) * math.comb(n, s)) - s * np.log(grid) - (n - s) * np.log1p(-grid)
    inside = grid[log_m < math.log(1 / alpha)]
    return float(inside.min()), float(inside.max())


def test_no_outcomes_give_the_whole_unit_interval() -> None:
    """n = 0: nothing is known, the interval is [0, 1]."""
    assert confidence_interval(0, 0, 0.05) == Interval(0.0, 1.0)
    assert (lower_bound(0, 0, 0.05), upper_bound(0, 0, 0.05)) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 10, 100, 5000])
def test_no_failures_give_lower_bound_zero_and_upper_bound_below_one(n: int) -> None:
    """s = 0: the lower end is exactly 0; the upper end is a real bound, shrinking with n."""
    interval = confidence_interval(0, n, 0.05)
    assert interval.lower == 0.0
    assert 0.0 < interval.upper < 1.0
    if n >= 100:
        assert interval.upper < 0.1


@pytest.mark.parametrize("n", [1, 10, 100, 5000])
def test_all_failures_give_upper_bound_one_and_lower_bound_above_zero(n: int) -> None:
    """s = n: the upper end is exactly 1; the lower end is a real bound, rising with n."""
    interval = confidence_interval(n, n, 0.05)
    assert interval.upper == 1.0
    assert 0.0 < interval.lower < 1.0
    if n >= 100:
        assert interval.lower > 0.9


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
@pytest.mark.parametrize("n", [1, 2, 7, 50, 333])
def test_interval_contains_the_observed_rate(n: int, alpha: float) -> None:
    """lower <= s/n <= upper for every s, and the ends are within [0, 1]."""
    for s in range(n + 1):
        interval = confidence_interval(s, n, alpha)
        assert 0.0 <= interval.lower <= s / n <= interval.upper <= 1.0, (s, n, alpha, interval)


def test_one_sided_bounds_are_the_ends_of_the_interval() -> None:
    """lower_bound and upper_bound return the same numbers as confidence_interval."""
    for s, n in [(0, 5), (1, 5), (3, 40), (40, 40), (17, 1000)]:
        assert confidence_interval(s, n, 0.05) == Interval(
            lower_bound(s, n, 0.05), upper_bound(s, n, 0.05)
        )


def test_interval_shrinks_as_outcomes_grow_at_a_fixed_rate() -> None:
    """At a steady 10% failure rate the width strictly decreases from n = 10 to n = 100,000."""
    widths = []
    for n in [10, 100, 1000, 10_000, 100_000]:
        interval = confidence_interval(n // 10, n, 0.05)
        widths.append(interval.upper - interval.lower)
    assert all(a > b for a, b in itertools.pairwise(widths)), widths
    assert widths[-1] < 0.01


def test_smaller_alpha_gives_a_wider_interval() -> None:
    """More confidence, wider interval (the 1/alpha threshold moves out)."""
    loose = confidence_interval(20, 200, 0.2)
    tight = confidence_interval(20, 200, 0.01)
    assert tight.lower < loose.lower
    assert tight.upper > loose.upper


@pytest.mark.parametrize("n", [30, 200])
def test_both_ends_never_decrease_as_failures_grow(n: int) -> None:
    """At fixed n, one more failure never lowers either end (the coverage test relies on it)."""
    lowers = [lower_bound(s, n, 0.05) for s in range(n + 1)]
    uppers = [upper_bound(s, n, 0.05) for s in range(n + 1)]
    assert lowers == sorted(lowers)
    assert uppers == sorted(uppers)


@pytest.mark.parametrize(
    ("s", "n", "alpha"),
    [(0, 20, 0.05), (1, 50, 0.05), (5, 50, 0.025), (20, 100, 0.05), (50, 100, 0.01),
     (3, 400, 0.05), (100, 100, 0.05), (37, 1000, 0.025)],
)  # fmt: skip
def test_interval_matches_a_brute_force_grid_evaluation_of_the_martingale(
    s: int, n: int, alpha: float
) -> None:
    """The bisected ends agree with the grid points where M_n(p) < 1/alpha, to 2 grid steps."""
    grid_lower, grid_upper = brute_force_interval(s, n, alpha)
    interval = confidence_interval(s, n, alpha)
    expected_lower = 0.0 if s == 0 else grid_lower
    expected_upper = 1.0 if s == n else grid_upper
    assert interval.lower == pytest.approx(expected_lower, abs=2 * GRID_STEP)
    assert interval.upper == pytest.approx(expected_upper, abs=2 * GRID_STEP)


@pytest.mark.parametrize(("s", "n"), [(0, 10), (3, 10), (12, 80), (80, 80)])
def test_log_martingale_equals_the_mixture_integral_over_the_likelihood(s: int, n: int) -> None:
    """log M_n(p) is log of (the integral of q^s (1-q)^(n-s) dq) / (p^s (1-p)^(n-s))."""
    q = np.linspace(0.0, 1.0, 200_001)
    integral = float(np.trapezoid(q**s * (1 - q) ** (n - s), q))
    for p in (0.01, 0.3, 0.77):
        expected = math.log(integral) - s * math.log(p) - (n - s) * math.log1p(-p)
        assert log_mixture_martingale(s, n, p) == pytest.approx(expected, abs=1e-6)


# -- coverage over long streams ------------------------------------------------------------


def accepted_failure_counts(p: float, steps: int, alpha: float) -> tuple[list[int], list[int]]:
    """For n = 1..steps, the range of failure counts s whose interval contains p.

    Both ends of the interval never decrease in s, so ``p`` is inside iff
    ``s_lo[n] <= s <= s_hi[n]``; each end moves by about one count per step, so a local search
    from the previous n calls the real bounds only a few times per n.
    """
    s_lo, s_hi = [0], [0]
    lo = hi = 0
    for n in range(1, steps + 1):
        while hi + 1 <= n and lower_bound(hi + 1, n, alpha) <= p:
            hi += 1
        while hi >= 0 and lower_bound(hi, n, alpha) > p:
            hi -= 1
        lo = min(lo, n)
        while lo > 0 and upper_bound(lo - 1, n, alpha) >= p:
            lo -= 1
        while lo <= n and upper_bound(lo, n, alpha) < p:
            lo += 1
        s_lo.append(lo)
        s_hi.append(hi)
    return s_lo, s_hi


def failure_paths(p: float, runs: int, steps: int, seed: int) -> npt.NDArray[np.int64]:
    """``runs`` Bernoulli(p) streams as cumulative failure counts, column n-1 after n outcomes."""
    rng = np.random.default_rng(seed)
    paths: npt.NDArray[np.int64] = np.cumsum(rng.random((runs, steps)) < p, axis=1, dtype=np.int64)
    return paths


@pytest.mark.parametrize(("p", "seed"), [(0.02, 11), (0.2, 12), (0.5, 13)])
def test_true_rate_stays_inside_the_interval_at_every_n_in_most_runs(p: float, seed: int) -> None:
    """3,000 runs x 2,000 outcomes: the true rate leaves the interval in at most alpha of them.

    (The measured rate is 3-4% at this horizon, so 3,000 runs keep the check clear of noise:
    with 300 runs the expected count would sit one standard deviation under the limit.)
    """
    alpha, runs, steps = 0.05, 3000, 2000
    s_lo, s_hi = accepted_failure_counts(p, steps, alpha)
    low, high = np.array(s_lo[1:]), np.array(s_hi[1:])
    ever_out = 0
    for chunk in range(runs // 1000):
        paths = failure_paths(p, 1000, steps, seed * 100 + chunk)
        inside = (paths >= low) & (paths <= high)
        ever_out += int(np.count_nonzero(~inside.all(axis=1)))
        if chunk == 0:  # the band against the real interval at a few (run, n)
            for run, n in [(0, 1), (1, 50), (2, 999), (3, 2000)]:
                s = int(paths[run, n - 1])
                interval = confidence_interval(s, n, alpha)
                assert bool(inside[run, n - 1]) == (interval.lower <= p <= interval.upper)
    assert ever_out <= alpha * runs, f"{ever_out}/{runs} runs left the interval at some n"


def test_a_fixed_n_interval_checked_at_every_n_fails_the_same_coverage_check() -> None:
    """The check above has teeth: a 95% Wald interval looked at after every outcome (from n = 30)
    excludes the true rate at some n in far more than 5% of the runs."""
    p, runs, steps = 0.2, 300, 2000
    paths = failure_paths(p, runs, steps, seed=12)
    n = np.arange(1, steps + 1)
    rate = paths / n
    half_width = 1.96 * np.sqrt(rate * (1 - rate) / n)
    outside = (np.abs(rate - p) > half_width)[:, 29:]
    ever_out = int(np.count_nonzero(outside.any(axis=1)))
    assert ever_out > 0.25 * runs, f"{ever_out}/{runs}"
