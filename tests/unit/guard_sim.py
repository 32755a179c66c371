"""Monte-Carlo runs of the guard's rules on simulated outcome streams (no network).

Two models, both running the guard's real rules (:func:`gateway.quality.guard.decide_rule`,
the whole-rollout rules, and :class:`gateway.quality.late_break.RecentWindow`, the recent rule):

**Every look** (:func:`simulate_run`, ``SCENARIOS``). Each run draws ``requests`` outcomes:
each request goes to the candidate with probability ``share`` and fails with the side's rate
(the candidate's rate may change after ``break_after`` candidate outcomes). The guard looks
after *every* outcome (the most demanding schedule: any peeking the real tick does is a subset
of these looks). Evaluating ``decide_rule`` at every look of every run would take minutes, so
numpy first finds the looks where a rule *could* fire: the point estimates are past the ceiling
or the margin, and a vectorised copy of the confidence-sequence arithmetic (the same ``lgamma``
values and bisection as :mod:`gateway.quality.stats`) says the rule holds, give or take a slack
far larger than any rounding difference. Only those looks run the real ``decide_rule``, in
order, and the first one where it fires is the trip. The prefilter is a superset of the looks
where the real rule fires, so the result is exactly what looking at every outcome with the real
code gives. The recent rule is evaluated with numpy from the detector's own thresholds
(:func:`gateway.quality.late_break.min_failures`) over every window at once
(:func:`recent_trip_counts`); the tests check both against the real code at every look.

**Replicas** (:func:`simulate_route_run`, ``ROUTE_SCENARIOS``). One route's requests, in order,
go round-robin to ``replicas`` gateway replicas. Time is counted in requests (request ``i``
arrives at time ``i``; ``Timing`` converts the real system's seconds at a stated request rate).
Each replica flushes its unflushed outcomes to the shared counters every ``flush`` (with a
random phase) and reads the route-wide totals back at once; its guard looks every ``tick``
(random phase) at the totals of its last flush plus its own outcomes since. The first look
(over all replicas) where a rule fires trips: that replica serves the fallback from that
moment; every other replica from ``propagation`` later (its own trip could only come earlier:
conservative). Outcomes count when the request arrives (upstream latency is not modelled: the
answers in flight at the latch are extra, see bench/results/guard_simulation.md).
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
from gateway.quality.late_break import (
    EVERY,
    SPAN,
    RecentWindow,
    min_failures,
    split_alpha,
    window_alpha,
)

__all__ = [
    "ROUTE_SCENARIOS",
    "SCENARIOS",
    "RouteResult",
    "RouteScenario",
    "RunResult",
    "Scenario",
    "Timing",
    "draw_stream",
    "main_trip",
    "recent_trip_counts",
    "replica_snapshots",
    "simulate_route_run",
    "simulate_route_scenario",
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
    break_after: int | None = None
    break_rate: float | None = None

    def measured(self, results: list[RunResult]) -> float:
        """The share of runs the requirement is about: runs that tripped (in time, if bounded;
        counted from the break when there is one)."""
        limit = self.within_candidate_outcomes
        offset = self.break_after or 0
        hits = [
            r
            for r in results
            if r.rule is not None
            and (
                limit is None
                or (
                    r.candidate_outcomes is not None
                    and offset < r.candidate_outcomes <= offset + limit
                )
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
        if self.break_after is not None:
            within += " of the break"
        return f"trips {within} in >= {self.bound:.0%} of runs"


SCENARIOS = (
    Scenario("A/A, 10% share", 0.05, 0.05, 0.10, 20_000, "not_trip", 0.01, 101, 1000),
    Scenario("A/A, 50% share", 0.05, 0.05, 0.50, 20_000, "not_trip", 0.01, 102, 1000),
    Scenario("candidate fails 50%", 0.50, 0.05, 0.50, 1_000, "trip", 0.99, 103, 1000, 100),
    Scenario("10 points worse, 10% share", 0.15, 0.05, 0.10, 10_000, "trip", 0.95, 104, 200),
    Scenario("20 points worse, 50% share", 0.25, 0.05, 0.50, 2_000, "trip", 0.95, 105, 200),
    Scenario("1 point worse (within margin)", 0.06, 0.05, 0.50, 20_000, "not_trip", 0.05, 106, 200),
    Scenario("at the ceiling (20% / 20%)", 0.20, 0.20, 0.50, 20_000, "not_trip", 0.05, 107, 200),
    Scenario("both bad (15% / 15%)", 0.15, 0.15, 0.50, 20_000, "not_trip", 0.01, 108, 200),
    Scenario("late break: 5% -> 50% after 1,000 candidate outcomes", 0.05, 0.05, 0.50, 3_000,
             "trip", 0.95, 109, 300, 150, break_after=1000, break_rate=0.50),
    Scenario("late break: 2% -> 50% after 1,000 candidate outcomes", 0.02, 0.02, 0.50, 3_000,
             "trip", 0.95, 110, 200, 150, break_after=1000, break_rate=0.50),
)  # fmt: skip
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


def draw_stream(
    rng: np.random.Generator,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    break_after: int | None = None,
    break_rate: float | None = None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(to_candidate, failed)`` per request: the side each request goes to and whether it
    failed; the candidate fails at ``break_rate`` from its ``break_after + 1``-th outcome on."""
    to_candidate = rng.random(requests) < share
    cand_draw = rng.random(requests)
    fb_draw = rng.random(requests)
    cand_rate: FloatArray | float = candidate_rate
    if break_after is not None:
        if break_rate is None:
            raise ValueError("break_after needs break_rate")
        ordinal = np.cumsum(to_candidate) - 1  # the candidate outcome's 0-based index
        cand_rate = np.where(ordinal < break_after, candidate_rate, break_rate)
    failed = np.where(to_candidate, cand_draw < cand_rate, fb_draw < fallback_rate)
    return to_candidate, failed


@lru_cache(maxsize=16)
def _recent_tables(
    ceiling: float, alpha: float, windows: int, every: int, span: int
) -> tuple[IntArray, IntArray]:
    """``(starts, needed)``: window k's start ``k * every`` and its thresholds for
    ``m = 1 .. span`` (rows: k = 1 .. windows), from the detector's own ``min_failures``."""
    alpha_recent = split_alpha(alpha)[1]
    starts = np.arange(1, windows + 1, dtype=np.int64) * every
    needed = np.empty((windows, span), dtype=np.int64)
    for row in range(windows):
        alpha_k = window_alpha(alpha_recent, row + 1)
        needed[row] = [min_failures(m, ceiling, alpha_k) for m in range(1, span + 1)]
    return starts, needed


def recent_trip_counts(
    cand_failed: npt.NDArray[np.bool_],
    policy: GuardConfig,
    *,
    every: int = EVERY,
    span: int = SPAN,
) -> int:
    """The candidate outcome count at which :class:`RecentWindow` looking after every
    candidate outcome first trips on this sequence of candidate outcomes (0: never).

    Looking after every outcome, window ``k`` starts exactly at count ``k * every`` and is
    looked at for ``m = 1 .. span`` more outcomes; all windows are checked at once."""
    total = len(cand_failed)
    windows = (total - 1) // every
    if windows < 1:
        return 0
    size = 1 << max(4, (windows - 1).bit_length())  # cache a few table sizes, not every one
    starts, needed = _recent_tables(policy.ceiling, policy.alpha, size, every, span)
    starts, needed = starts[:windows], needed[:windows]
    cum = np.concatenate([np.zeros(1, np.int64), np.cumsum(cand_failed, dtype=np.int64)])
    counts = starts[:, None] + np.arange(1, span + 1)[None, :]
    inside = counts <= total
    seg = cum[np.minimum(counts, total)] - cum[starts][:, None]
    hit = inside & (seg >= needed) & (counts >= policy.min_samples)
    if not hit.any():
        return 0
    return int(counts[hit].min())


def main_trip(
    policy: GuardConfig, cand_n: IntArray, cand_f: IntArray, fb_n: IntArray, fb_f: IntArray
) -> tuple[str | None, int | None]:
    """The first request index where a whole-rollout rule fires (prefilter, then the real rule)."""
    requests = len(cand_n)
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
                return rule, int(index)
        start, stop = stop, min(requests, stop * 4)
    return None, None


def simulate_run(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    break_after: int | None = None,
    break_rate: float | None = None,
) -> RunResult:
    """One stream of ``requests`` outcomes; the first look at which a real rule fires (a
    whole-rollout rule before the recent rule at the same look, as in ``evaluate``)."""
    to_candidate, failed = draw_stream(
        rng,
        candidate_rate=candidate_rate,
        fallback_rate=fallback_rate,
        share=share,
        requests=requests,
        break_after=break_after,
        break_rate=break_rate,
    )
    cand_n = np.cumsum(to_candidate, dtype=np.int64)
    cand_f = np.cumsum(failed & to_candidate, dtype=np.int64)
    fb_n = np.arange(1, requests + 1, dtype=np.int64) - cand_n
    fb_f = np.cumsum(failed & ~to_candidate, dtype=np.int64)
    rule, index = main_trip(policy, cand_n, cand_f, fb_n, fb_f)
    recent = recent_trip_counts(failed[to_candidate], policy)
    if recent:
        recent_index = int(np.flatnonzero(to_candidate)[recent - 1])
        if index is None or recent_index < index:
            rule, index = "recent", recent_index
    if rule is None or index is None:
        return RunResult(None, None, None)
    return RunResult(rule, index + 1, int(cand_n[index]))


def simulate_runs(
    runs: int,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    seed: int,
    break_after: int | None = None,
    break_rate: float | None = None,
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
            break_after=break_after,
            break_rate=break_rate,
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
        break_after=scenario.break_after,
        break_rate=scenario.break_rate,
    )


def simulate_run_every_look(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    break_after: int | None = None,
    break_rate: float | None = None,
) -> RunResult:
    """The same draws as :func:`simulate_run`, but the real rules at every single look (slow:
    for checking that the prefilter and the vectorised windows change nothing)."""
    to_candidate, failed = draw_stream(
        rng,
        candidate_rate=candidate_rate,
        fallback_rate=fallback_rate,
        share=share,
        requests=requests,
        break_after=break_after,
        break_rate=break_rate,
    )
    detector = RecentWindow(policy)
    cand_n = cand_f = fb_n = fb_f = 0
    for index in range(requests):
        if to_candidate[index]:
            cand_n += 1
            cand_f += bool(failed[index])
        else:
            fb_n += 1
            fb_f += bool(failed[index])
        rule, _ = decide_rule(policy, cand_n, cand_f, fb_n, fb_f)
        recent = detector.look(cand_n, cand_f)
        if rule is not None:
            return RunResult(rule, index + 1, cand_n)
        if recent is not None:
            return RunResult(recent, index + 1, cand_n)
    return RunResult(None, None, None)


# -- replicas: route-wide totals, flushes, ticks and propagation -------------------------------


@dataclass(frozen=True)
class Timing:
    """The real system's delays, in seconds, and the route's request rate that turns them into
    requests (the simulation's clock): flush every ``flush_s`` (``GATEWAY_GUARD_FLUSH_S``), look
    every ``tick_s`` (the runner decides after every exchange, so ``tick_s = flush_s``), a
    rollback reaches the other replicas ``propagation_s`` later (the flag store's p99)."""

    rate_rps: float = 200.0
    flush_s: float = 0.02
    tick_s: float = 0.02
    propagation_s: float = 0.1

    @property
    def flush(self) -> float:
        return self.flush_s * self.rate_rps

    @property
    def tick(self) -> float:
        return self.tick_s * self.rate_rps

    @property
    def propagation(self) -> float:
        return self.propagation_s * self.rate_rps


@dataclass(frozen=True)
class RouteResult:
    """One replicated run. ``tripped_at``: the time (in requests) of the first trip;
    ``candidate_outcomes_at_trip``: route-wide candidate outcomes by then;
    ``candidate_answers``: requests sent to the candidate before *every* replica served the
    fallback (None when no trip)."""

    rule: str | None
    replica: int | None
    tripped_at: float | None
    candidate_outcomes_at_trip: int | None
    candidate_answers: int | None


_TIE = 1e-9
"""In flush periods; phases are random, so only a flush's own time can be that close."""


def _last_flush(phase: FloatArray, period: float, at: FloatArray) -> FloatArray:
    """The time of the last flush at or before ``at`` (phase + k * period, k >= 0); -1 if none.
    (``_TIE`` absorbs rounding: a replica's own flush time maps back to that flush.)"""
    k = np.floor((at - phase) / period + _TIE)
    result: FloatArray = np.where(k >= 0, phase + k * period, -1.0)
    return result


def _count(cum: IntArray, at: FloatArray) -> IntArray:
    """Counts of the requests that arrived before ``at`` (request i arrives at time i); rows of
    ``cum`` are the cumulative counts after 0, 1, 2, ... requests; ``at < 0``: none."""
    index = np.clip(np.ceil(at).astype(np.int64), 0, len(cum) - 1)
    result: IntArray = np.where((at >= 0)[..., None], cum[index], 0)
    return result


def replica_snapshots(
    to_candidate: npt.NDArray[np.bool_],
    failed: npt.NDArray[np.bool_],
    replicas: int,
    flush_phase: FloatArray,
    tick_phase: FloatArray,
    timing: Timing,
    horizon: float,
) -> list[tuple[FloatArray, IntArray]]:
    """Per replica: its look times (before ``horizon``) and, at each, the counts its guard sees
    (``[cand_n, cand_f, fb_n, fb_f]``): the route-wide totals read at its last flush plus its
    own outcomes since. Request ``i`` goes to replica ``i % replicas``."""
    requests = len(to_candidate)
    mine = (np.arange(requests) % replicas)[None, :] == np.arange(replicas)[:, None]
    sides = np.stack(
        [to_candidate, to_candidate & failed, ~to_candidate, ~to_candidate & failed], axis=-1
    )
    per_replica = mine[:, :, None] & sides[None, :, :]  # replica x request x counter
    cum = np.concatenate(
        [np.zeros((replicas, 1, 4), np.int64), np.cumsum(per_replica, axis=1, dtype=np.int64)],
        axis=1,
    )  # replica x (requests + 1) x counter
    result = []
    for r in range(replicas):
        looks = np.arange(tick_phase[r], horizon, timing.tick)
        flushed = _last_flush(np.full(looks.shape, flush_phase[r]), timing.flush, looks)
        totals = np.zeros((len(looks), 4), np.int64)
        for j in range(replicas):
            read = _last_flush(np.full(looks.shape, flush_phase[j]), timing.flush, flushed)
            totals += _count(cum[j], np.where(flushed >= 0, read, -1.0))
        pending = _count(cum[r], looks) - _count(cum[r], flushed)
        result.append((looks, totals + pending))
    return result


def simulate_route_run(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    replicas: int,
    timing: Timing,
    break_after: int | None = None,
    break_rate: float | None = None,
) -> RouteResult:
    """One run of a route served by ``replicas`` replicas (see the module docstring); every
    look runs the real ``decide_rule`` and the replica's own ``RecentWindow``."""
    to_candidate, failed = draw_stream(
        rng,
        candidate_rate=candidate_rate,
        fallback_rate=fallback_rate,
        share=share,
        requests=requests,
        break_after=break_after,
        break_rate=break_rate,
    )
    flush_phase = rng.random(replicas) * timing.flush
    tick_phase = rng.random(replicas) * timing.tick
    horizon = requests - timing.propagation - 1  # every latch lands inside the stream
    views = replica_snapshots(
        to_candidate, failed, replicas, flush_phase, tick_phase, timing, horizon
    )
    best: tuple[float, int, str] | None = None
    for r, (looks, counts) in enumerate(views):
        detector = RecentWindow(policy)
        previous: tuple[int, int, int, int] | None = None
        for at, row in zip(looks.tolist(), counts.tolist(), strict=True):
            if best is not None and at >= best[0]:
                break
            cand_n, cand_f, fb_n, fb_f = row
            if (cand_n, cand_f, fb_n, fb_f) == previous:
                continue  # the real guard only evaluates a rollout with new outcomes
            previous = (cand_n, cand_f, fb_n, fb_f)
            rule: str | None
            rule, _ = decide_rule(policy, cand_n, cand_f, fb_n, fb_f)
            recent = detector.look(cand_n, cand_f)
            rule = rule or recent
            if rule is not None:
                best = (at, r, rule)
                break
    if best is None:
        return RouteResult(None, None, None, None, None)
    at, first, rule = best
    cand_index = np.concatenate([np.zeros(1, np.int64), np.cumsum(to_candidate, dtype=np.int64)])
    owner = np.arange(requests) % replicas
    answers = 0
    for r in range(replicas):
        latch = at if r == first else at + timing.propagation
        before = min(requests, math.ceil(latch))
        answers += int(np.count_nonzero(to_candidate[:before] & (owner[:before] == r)))
    return RouteResult(rule, first, at, int(cand_index[min(requests, math.ceil(at))]), answers)


@dataclass(frozen=True)
class RouteScenario:
    """A replicated situation and what must happen. ``must="roll_back"``: every run rolls back,
    and the median and 95th percentile of the candidate answers before every replica serves the
    fallback (counted from the break, if any) are at most ``within``. ``must="not_roll_back"``:
    fewer than ``bound`` of the runs roll back. ``must="report"``: no requirement (shown for
    the dependence on the request rate)."""

    name: str
    candidate_rate: float
    fallback_rate: float
    share: float
    requests: int
    replicas: int
    must: Literal["roll_back", "not_roll_back", "report"]
    seed: int
    test_runs: int
    bound: float = 0.0
    within: int | None = None
    break_after: int | None = None
    break_rate: float | None = None
    timing: Timing = Timing()

    def answers(self, results: list[RouteResult]) -> list[int]:
        """Candidate answers until every replica latched (from the break), per rolled-back run."""
        offset = self.break_after or 0
        return [r.candidate_answers - offset for r in results if r.candidate_answers is not None]

    def rollback_rate(self, results: list[RouteResult]) -> float:
        return sum(r.rule is not None for r in results) / len(results)

    def met(self, results: list[RouteResult]) -> bool | None:
        if self.must == "report":
            return None
        if self.must == "not_roll_back":
            return self.rollback_rate(results) < self.bound
        answers = self.answers(results)
        assert self.within is not None
        return (
            len(answers) == len(results)
            and min(answers) > 0
            and _nearest_rank(answers, 50) <= self.within
            and _nearest_rank(answers, 95) <= self.within
        )

    def requirement(self) -> str:
        if self.must == "report":
            return "-"
        if self.must == "not_roll_back":
            return f"rolls back in < {self.bound:.0%} of runs"
        since = " since the break" if self.break_after is not None else ""
        return f"every run; median and p95 <= {self.within} candidate answers{since}"


def _nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-len(ordered) * int(q) // 100)) - 1]


def _route_rows() -> tuple[RouteScenario, ...]:
    rows: list[RouteScenario] = []
    seed = 201
    for replicas in (1, 3, 12):
        rows.append(
            RouteScenario(
                f"A/A 5% / 5%, {replicas} replica(s)", 0.05, 0.05, 0.5, 20_000, replicas,
                "not_roll_back", seed, 100, bound=0.01,
            )
        )  # fmt: skip
        rows.append(
            RouteScenario(
                f"candidate fails 50%, {replicas} replica(s)", 0.5, 0.05, 0.5, 1_000, replicas,
                "roll_back", seed + 1, 200, within=100,
            )
        )  # fmt: skip
        rows.append(
            RouteScenario(
                f"late break 5% -> 50% after 1,000, {replicas} replica(s)", 0.05, 0.05, 0.5,
                3_000, replicas, "roll_back", seed + 2, 200, within=150, break_after=1000,
                break_rate=0.5,
            )
        )  # fmt: skip
        rows.append(
            RouteScenario(
                f"both bad 15% / 15%, {replicas} replica(s)", 0.15, 0.15, 0.5, 20_000, replicas,
                "not_roll_back", seed + 3, 50, bound=0.01,
            )
        )  # fmt: skip
        rows.append(
            RouteScenario(
                f"at the ceiling 20% / 20%, {replicas} replica(s)", 0.2, 0.2, 0.5, 20_000,
                replicas, "not_roll_back", seed + 4, 50, bound=0.05,
            )
        )  # fmt: skip
        seed += 10
    for rate in (50.0, 1000.0):
        rows.append(
            RouteScenario(
                f"candidate fails 50%, 12 replicas, {rate:g} req/s", 0.5, 0.05, 0.5, 1_000, 12,
                "report", seed, 20, timing=Timing(rate_rps=rate),
            )
        )  # fmt: skip
        seed += 1
    return tuple(rows)


ROUTE_SCENARIOS = _route_rows()
"""The replicated scenarios (issue 10), at 200 requests/s route-wide unless named: the bench runs
1,000 of each, the tests the first ``test_runs`` (same seeds)."""


def simulate_route_scenario(
    scenario: RouteScenario, runs: int, policy: GuardConfig | None = None
) -> list[RouteResult]:
    """``runs`` runs of a :class:`RouteScenario` from its seed (default ``GuardConfig()``)."""
    rng = np.random.default_rng(scenario.seed)
    return [
        simulate_route_run(
            rng,
            policy or GuardConfig(),
            candidate_rate=scenario.candidate_rate,
            fallback_rate=scenario.fallback_rate,
            share=scenario.share,
            requests=scenario.requests,
            replicas=scenario.replicas,
            timing=scenario.timing,
            break_after=scenario.break_after,
            break_rate=scenario.break_rate,
        )
        for _ in range(runs)
    ]
