"""Monte-Carlo runs of the guard's rules on simulated outcome streams (no network).

Each run draws ``requests`` outcomes: each request goes to the candidate with probability
``share`` and fails with the side's rate. The guard looks after *every* outcome (the most
demanding schedule: any peeking the real tick does is a subset of these looks).

Evaluating :func:`gateway.quality.guard.decide_rule` at every look of every run would take
minutes, so numpy first finds the looks where a rule *could* fire: the point estimates are past
the ceiling or the margin, and a vectorised copy of the confidence-sequence arithmetic (the same
``lgamma`` values and bisection as :mod:`gateway.quality.stats`) says the rule holds, give or
take a slack far larger than any rounding difference. Only those looks run the real
``decide_rule``, in order, and the first one where it fires is the trip. The prefilter is a
superset of the looks where the real rule fires, so the result is exactly what looking at every
outcome with the real code gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.config import GuardConfig
from gateway.quality.guard import decide_rule
from gateway.quality.late_break import split_alpha

__all__ = [
    "SCENARIOS",
    "RunResult",
    "Scenario",
    "simulate_run",
    "simulate_run_every_look",
    "simulate_runs",
    "simulate_scenario",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_SLACK = 1e-4
"""How much more lenient the prefilter is than the real rule (log-martingale and rate units).
Rounding differences between the two are below 1e-9; a wider slack only costs a few more calls
of the real rule."""

_EPS = 1e-12  # the clipping of p in gateway.quality.stats
_FIRST_WINDOW = 1024
_DIRECT = 16


@dataclass(frozen=True)
class RunResult:
    """Where a run tripped: the request index and the candidate outcomes so far (or None)."""

    rule: str | None
    request: int | None
    candidate_outcomes: int | None


@dataclass(frozen=True)
class Scenario:
    """One simulated situation and what the guard must do in it (the issue's requirements).

    ``must="trip"``: at least ``bound`` of the runs trip within ``requests`` requests (and
    within ``within_candidate_outcomes`` candidate outcomes, when set). ``must="not_trip"``:
    fewer than ``bound`` of the runs trip within ``requests`` requests.
    """

    name: str
    candidate_rate: float
    fallback_rate: float
    share: float
    requests: int
    must: Literal["trip", "not_trip"]
    bound: float
    seed: int
    test_runs: int
    within_candidate_outcomes: int | None = None

    def measured(self, results: list[RunResult]) -> float:
        """The share of runs the requirement is about: runs that tripped (in time, if bounded)."""
        limit = self.within_candidate_outcomes
        hits = [
            r
            for r in results
            if r.rule is not None
            and (
                limit is None
                or (r.candidate_outcomes is not None and r.candidate_outcomes <= limit)
            )
        ]
        return len(hits) / len(results)

    def met(self, results: list[RunResult]) -> bool:
        rate = self.measured(results)
        return rate >= self.bound if self.must == "trip" else rate < self.bound

    def requirement(self) -> str:
        """The requirement in words, for the results table."""
        if self.must == "not_trip":
            return f"trips in < {self.bound:.0%} of runs"
        within = (
            f"within {self.within_candidate_outcomes} candidate outcomes"
            if self.within_candidate_outcomes
            else f"within {self.requests:,} requests"
        )
        return f"trips {within} in >= {self.bound:.0%} of runs"


SCENARIOS = (
    Scenario("A/A, 10% share", 0.05, 0.05, 0.10, 20_000, "not_trip", 0.01, 101, 1000),
    Scenario("A/A, 50% share", 0.05, 0.05, 0.50, 20_000, "not_trip", 0.01, 102, 1000),
    Scenario("candidate fails 50%", 0.50, 0.05, 0.50, 1_000, "trip", 0.99, 103, 1000, 100),
    Scenario("10 points worse, 10% share", 0.15, 0.05, 0.10, 10_000, "trip", 0.95, 104, 200),
    Scenario("20 points worse, 50% share", 0.25, 0.05, 0.50, 2_000, "trip", 0.95, 105, 200),
    Scenario("1 point worse (within margin)", 0.06, 0.05, 0.50, 20_000, "not_trip", 0.05, 106, 200),
)
"""Every scenario of the issue, with its seed; the tests run ``test_runs`` of each, the bench
1,000 (from the same seed, so the test's runs are the bench's first runs)."""


@lru_cache(maxsize=8)
def _log_gamma_table(size: int) -> FloatArray:
    """``lgamma(k)`` for ``k = 0 .. size`` (index 0 unused), with math.lgamma like stats.py."""
    table = np.zeros(size + 1)
    for k in range(1, size + 1):
        table[k] = math.lgamma(k)
    return table


def _log_marginal(lg: FloatArray, s: IntArray, n: IntArray) -> FloatArray:
    """``log B(1 + s, 1 + n - s) - log B(1, 1)`` (Beta(1, 1) prior), vectorised."""
    result: FloatArray = lg[1 + s] + lg[1 + n - s] - lg[2 + n]
    return result


def _log_likelihood(s: IntArray, n: IntArray, p: FloatArray | float) -> FloatArray:
    q = np.clip(p, _EPS, 1 - _EPS)
    result: FloatArray = s * np.log(q) + (n - s) * np.log1p(-q)
    return result


def _bound(lg: FloatArray, s: IntArray, n: IntArray, alpha: float, outside: float) -> FloatArray:
    """The confidence sequence's end towards ``outside`` (0: lower, 1: upper), by bisection."""
    if s.size == 0:
        return np.zeros(0)
    level = _log_marginal(lg, s, n) - math.log(1 / alpha)
    lo: FloatArray = s / n
    hi: FloatArray = np.full(lo.shape, outside)
    for _ in range(32):  # 2^-32: far inside the slack
        mid = (lo + hi) / 2
        inside = _log_likelihood(s, n, mid) > level
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return lo


def _looks_that_may_trip(
    policy: GuardConfig,
    lg: FloatArray,
    cand_n: IntArray,
    cand_f: IntArray,
    fb_n: IntArray,
    fb_f: IntArray,
) -> Iterator[int]:
    """Indices of the looks where either rule may fire (a superset of where it does), in order.

    The first ``_DIRECT`` looks whose point estimates are past a threshold are returned as
    they are (a clearly bad candidate trips at one of them, and the real rule is cheaper than
    the vectorised bounds); the others only if the vectorised bounds say the rule may fire.
    """
    need = policy.min_samples
    cand_rate = cand_f / np.maximum(cand_n, 1)
    fb_rate = fb_f / np.maximum(fb_n, 1)
    enough = cand_n >= need
    over_ceiling = enough & (cand_rate > policy.ceiling)
    over_margin = enough & (fb_n >= need) & (cand_rate - fb_rate > policy.margin)
    possible = np.flatnonzero(over_ceiling | over_margin)
    direct, rest = possible[:_DIRECT], possible[_DIRECT:]
    yield from (int(index) for index in direct)

    ceiling_idx = rest[over_ceiling[rest]]
    s, n = cand_f[ceiling_idx], cand_n[ceiling_idx]
    log_m = _log_marginal(lg, s, n) - _log_likelihood(s, n, policy.ceiling)
    alpha_main = split_alpha(policy.alpha)[0]
    ceiling_idx = ceiling_idx[log_m >= math.log(1 / alpha_main) - _SLACK]

    regression_idx = rest[over_margin[rest]]
    half = alpha_main / 2
    lower = _bound(lg, cand_f[regression_idx], cand_n[regression_idx], half, 0.0)
    regression_idx = regression_idx[lower - fb_rate[regression_idx] > policy.margin - _SLACK]
    upper = _bound(lg, fb_f[regression_idx], fb_n[regression_idx], half, 1.0)
    lower = _bound(lg, cand_f[regression_idx], cand_n[regression_idx], half, 0.0)
    regression_idx = regression_idx[lower - upper > policy.margin - _SLACK]

    yield from (int(index) for index in np.union1d(ceiling_idx, regression_idx))


def simulate_run(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
) -> RunResult:
    """One stream of ``requests`` outcomes; the first look at which the real rule fires."""
    to_candidate = rng.random(requests) < share
    failed = np.where(
        to_candidate,
        rng.random(requests) < candidate_rate,
        rng.random(requests) < fallback_rate,
    )
    cand_n = np.cumsum(to_candidate, dtype=np.int64)
    cand_f = np.cumsum(failed & to_candidate, dtype=np.int64)
    fb_n = np.arange(1, requests + 1, dtype=np.int64) - cand_n
    fb_f = np.cumsum(failed & ~to_candidate, dtype=np.int64)
    lg = _log_gamma_table(requests + 2)
    start, stop = 0, min(requests, _FIRST_WINDOW)
    while start < requests:  # windows of looks, growing: most trips come early
        window = slice(start, stop)
        found = _looks_that_may_trip(
            policy, lg, cand_n[window], cand_f[window], fb_n[window], fb_f[window]
        )
        for index in (start + offset for offset in found):
            rule, _ = decide_rule(
                policy, int(cand_n[index]), int(cand_f[index]), int(fb_n[index]), int(fb_f[index])
            )
            if rule is not None:
                return RunResult(rule, int(index) + 1, int(cand_n[index]))
        start, stop = stop, min(requests, stop * 4)
    return RunResult(None, None, None)


def simulate_runs(
    runs: int,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    seed: int,
) -> list[RunResult]:
    """``runs`` independent streams from one seeded generator (reproducible)."""
    rng = np.random.default_rng(seed)
    return [
        simulate_run(
            rng,
            policy,
            candidate_rate=candidate_rate,
            fallback_rate=fallback_rate,
            share=share,
            requests=requests,
        )
        for _ in range(runs)
    ]


def simulate_scenario(
    scenario: Scenario, runs: int, policy: GuardConfig | None = None
) -> list[RunResult]:
    """``runs`` runs of a :class:`Scenario` from its seed (default policy: ``GuardConfig()``)."""
    return simulate_runs(
        runs,
        policy or GuardConfig(),
        candidate_rate=scenario.candidate_rate,
        fallback_rate=scenario.fallback_rate,
        share=scenario.share,
        requests=scenario.requests,
        seed=scenario.seed,
    )


def simulate_run_every_look(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
) -> RunResult:
    """The same draws as :func:`simulate_run`, but the real rule at every single look (slow:
    for checking that the prefilter changes nothing)."""
    to_candidate = rng.random(requests) < share
    failed = np.where(
        to_candidate,
        rng.random(requests) < candidate_rate,
        rng.random(requests) < fallback_rate,
    )
    cand_n = cand_f = fb_n = fb_f = 0
    for index in range(requests):
        if to_candidate[index]:
            cand_n += 1
            cand_f += bool(failed[index])
        else:
            fb_n += 1
            fb_f += bool(failed[index])
        rule, _ = decide_rule(policy, cand_n, cand_f, fb_n, fb_f)
        if rule is not None:
            return RunResult(rule, index + 1, cand_n)
    return RunResult(None, None, None)
