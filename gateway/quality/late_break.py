"""The guard's late-break detector: is the candidate's *recent* failure rate above the ceiling?

The whole-rollout rules (:func:`gateway.quality.guard.decide_rule`) count every outcome since
the rollout began. After 1,000 healthy answers, a candidate that starts failing half the time
needs hundreds more before the whole-rollout rate, diluted by the healthy past, is confidently
above the ceiling. This module watches *windows* of recent outcomes instead, with its own share
of the route's alpha, so the guard's overall false-rollback bound still holds.

Design (pure; counts in, verdict out):

* **Alpha split.** The route's ``alpha`` is split: ``alpha_main = alpha * (1 - RECENT_SHARE)``
  for the whole-rollout rules, ``alpha_recent = alpha * RECENT_SHARE`` for the windows
  (:func:`split_alpha`). A false rollback needs a false alarm of one or the other, so
  ``P(false rollback) <= alpha_main + alpha_recent = alpha`` (union bound).
* **Windows.** Window ``k`` (``k = 1, 2, ...``) starts at the first look whose cumulative
  candidate count ``n`` is at least ``k * EVERY``; its counts are the outcomes after that look.
  The start is a stopping time (it depends only on counts already seen), so a test started
  there is valid by optional stopping. When one look jumps over several checkpoints, only the
  last one's window starts (the skipped windows' alpha is simply not spent: conservative).
  Each window is watched until it holds ``SPAN`` outcomes (evaluated once more at the first
  look at or past ``SPAN``), so at most ``SPAN / EVERY + 1`` windows are open at any time.
* **Alpha spending.** Window ``k`` gets ``alpha_k = alpha_recent / (k (k + 1))``; the
  ``alpha_k`` sum to ``alpha_recent`` (telescoping), however long the rollout runs. This is
  alpha spending over an unbounded sequence of looks (Lan and DeMets, "Discrete sequential
  boundaries for clinical trials", Biometrika 1983), indexed by candidate count, not time.
* **The test in a window.** With ``s`` failures in ``m`` outcomes of the window and the route's
  ceiling ``c``, the mixture likelihood ratio over a few failure rates ``q_j`` above ``c``
  (odds ratios ``ODDS_RATIOS`` against ``c``, equal weights)::

      M_m = (1/K) sum_j (q_j / c)^s ((1 - q_j) / (1 - c))^(m - s)

  is a nonnegative supermartingale with ``M_0 = 1`` whenever each outcome fails with
  probability at most ``c`` given the past (each factor has conditional mean at most 1 because
  ``q_j > c``): the null is "the candidate's rate is at most the ceiling at every outcome", so
  a candidate that drifts but stays under the ceiling is covered too. By Ville's inequality
  (Ville, "Etude critique de la notion de collectif", 1939) ``P(exists m: M_m >= 1/alpha_k)
  <= alpha_k``: the test may be looked at after every outcome, or at any subset of looks
  (batched totals). This is the method of mixtures of Robbins ("Statistical methods related to
  the law of the iterated logarithm", Ann. Math. Statist. 1970), the one-sided, discrete-mixture
  form of the time-uniform confidence sequences of Howard, Ramdas, McAuliffe and Sekhon
  ("Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021).
  Restarting tests at checkpoints with spent alpha is the construction behind sequential change
  detection with a false-alarm *probability* bound (compare the e-detectors of Shin, Ramdas and
  Rinaldo, "E-detectors: a nonparametric framework for sequential change detection", 2023,
  which bound the average run length instead).
* **Cheap looks.** ``M_m`` grows with ``s`` at fixed ``m``, so each window trips exactly when
  its failures reach a threshold ``needed(m)``; the thresholds are precomputed per
  ``(ceiling, alpha_k)`` and shared by every rollout (cached, grown on demand). A look at an
  unchanged snapshot costs one comparison; a healthy look costs one subtraction and comparison
  against the oldest window (which holds the most failures) and, when that is not conclusive,
  one per open window.

Parameters (``EVERY = 25``, ``SPAN = 200``, odds ratios 2, 4, 8, ``RECENT_SHARE = 0.5``) were
chosen by simulation (bench/results/guard_simulation.md): with the default policy (ceiling
0.20, alpha 0.05) a break from 2-5% to 50% failures after 1,000 healthy outcomes is caught
within about 50 candidate outcomes of the break at the median and 100 at the 95th percentile
when the guard looks after every outcome (the whole-rollout rules alone: about 240 and 300),
at any offset of the break from a checkpoint (tests/unit/test_late_break.py). A break to a
rate just above the ceiling (35%) takes several hundred outcomes; the whole-rollout rules
remain the guard for slow drifts and for regressions against the fallback (this detector has
no regression rule).

Negative feedback that turns an already counted success into a failure after a window started
is counted in that window (the counts cannot tell which outcome it was about); this can only
make the detector trip more easily, by at most the number of such late failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import msgspec

from gateway.config import GuardConfig

__all__ = [
    "EVERY",
    "ODDS_RATIOS",
    "RECENT_SHARE",
    "SPAN",
    "RecentEvidence",
    "RecentWindow",
    "describe_recent",
    "log_e_value",
    "min_failures",
    "split_alpha",
    "window_alpha",
]

RECENT_SHARE = 0.5
"""Share of the route's alpha spent on the recent windows; the rest goes to the whole-rollout
rules."""

EVERY = 25
"""A window starts every ``EVERY`` candidate outcomes (at the first look past each checkpoint)."""

SPAN = 200
"""A window is watched until it holds ``SPAN`` candidate outcomes."""

ODDS_RATIOS = (2.0, 4.0, 8.0)
"""The mixture's alternatives: failure rates whose odds are these multiples of the ceiling's
(ceiling 0.20: rates 1/3, 1/2 and 2/3)."""


def split_alpha(alpha: float) -> tuple[float, float]:
    """``(alpha_main, alpha_recent)``: the whole-rollout rules' and the windows' shares.

    Raises:
        ValueError: ``alpha`` is not in (0, 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha * (1 - RECENT_SHARE), alpha * RECENT_SHARE


def window_alpha(alpha_recent: float, k: int) -> float:
    """``alpha_recent / (k (k + 1))``: window ``k``'s share (``k >= 1``); they sum to
    ``alpha_recent``.

    Raises:
        ValueError: ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"windows are numbered from 1, got {k}")
    return alpha_recent / (k * (k + 1))


@lru_cache(maxsize=64)
def _alternatives(ceiling: float) -> tuple[tuple[float, float], ...]:
    """Per alternative ``q_j``: ``(log(q_j / c), log((1 - q_j) / (1 - c)))``."""
    if not 0 < ceiling < 1:
        raise ValueError(f"ceiling must be in (0, 1), got {ceiling}")
    odds = ceiling / (1 - ceiling)
    terms = []
    for ratio in ODDS_RATIOS:
        q = odds * ratio / (1 + odds * ratio)
        terms.append((math.log(q / ceiling), math.log((1 - q) / (1 - ceiling))))
    return tuple(terms)


def log_e_value(failures: int, n: int, ceiling: float) -> float:
    """``log M_n``: the log of the mixture likelihood ratio of ``failures`` in ``n`` outcomes
    against the ceiling (see the module docstring); 0.0 for ``n == 0``.

    Raises:
        ValueError: not ``0 <= failures <= n``, or ``ceiling`` not in (0, 1).
    """
    if not 0 <= failures <= n:
        raise ValueError(f"need 0 <= failures <= n, got {failures} failures in {n}")
    terms = [failures * a + (n - failures) * b for a, b in _alternatives(ceiling)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms)) - math.log(len(terms))


class _Thresholds:
    """``needed[m]``: the fewest failures in ``m`` window outcomes with ``log M >= level``
    (``m + 1`` when none is enough), grown on demand. ``needed`` never decreases and grows by
    at most one per outcome (one more success lowers ``M``; one more failure raises it), so
    each new entry costs one or two evaluations of ``log M``."""

    __slots__ = ("ceiling", "level", "needed", "smallest")

    def __init__(self, ceiling: float, level: float) -> None:
        self.ceiling = ceiling
        self.level = level
        self.needed = [1]  # m = 0: no failure count can trip (none is possible)
        smallest = 1
        while log_e_value(smallest, smallest, ceiling) < level:
            smallest += 1
        self.smallest = smallest
        """Fewest failures with which this window can ever trip (all of its outcomes failed)."""

    def at(self, m: int) -> int:
        needed = self.needed
        while len(needed) <= m:
            size = len(needed)
            s = min(needed[-1], size)
            while s <= size and log_e_value(s, size, self.ceiling) < self.level:
                s += 1
            needed.append(s)
        return needed[m]


@lru_cache(maxsize=4096)
def _thresholds(ceiling: float, alpha_k: float) -> _Thresholds:
    return _Thresholds(ceiling, math.log(1 / alpha_k))


def min_failures(m: int, ceiling: float, alpha_k: float) -> int:
    """The fewest failures among ``m`` window outcomes that trip a window of level
    ``alpha_k`` (``m + 1`` if none do). Cached per ``(ceiling, alpha_k)``.

    Raises:
        ValueError: ``m < 0``, or ``ceiling`` not in (0, 1).
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    return _thresholds(ceiling, alpha_k).at(m)


class RecentEvidence(msgspec.Struct, frozen=True):
    """One window's counts and test, as shown in a verdict (audit evidence).

    ``start_n``/``start_failures`` are the rollout's cumulative candidate counts when the
    window started; ``n``/``failures`` are the window's own counts (outcomes after the start).
    ``needed`` is the fewest failures that trip the window at ``n``; ``log_e_value`` is
    ``log M`` and trips at ``log(1/alpha)`` or above.
    """

    tripped: bool
    window: int
    start_n: int
    start_failures: int
    n: int
    failures: int
    rate: float | None
    needed: int
    log_e_value: float
    alpha: float
    alpha_recent: float
    ceiling: float


def describe_recent(evidence: RecentEvidence) -> str:
    """A one-line account of a window, e.g. for an audit reason or ``why``."""
    first, last = evidence.start_n + 1, evidence.start_n + evidence.n
    rate = f" ({evidence.rate:.1%})" if evidence.rate is not None else ""
    verdict = "above the ceiling with confidence" if evidence.tripped else "not yet with confidence"
    return (
        f"candidate failed {evidence.failures}/{evidence.n}{rate} of its outcomes "
        f"{first:,}-{last:,} (window {evidence.window}, needs {evidence.needed} failures); "
        f"{verdict}: ceiling {evidence.ceiling:.1%}, log e-value "
        f"{evidence.log_e_value:.2f} vs log(1/alpha) {math.log(1 / evidence.alpha):.2f}, "
        f"window alpha {evidence.alpha:.2g} of the recent windows' {evidence.alpha_recent:g}"
    )


@dataclass(slots=True)
class _Window:
    k: int
    start_n: int
    start_f: int
    alpha: float
    thresholds: _Thresholds


class RecentWindow:
    """The late-break detector for one rollout: feed it cumulative candidate counts.

    ``look(n, failures)`` takes the rollout's cumulative candidate outcomes and failures (as
    the guard sees them: route-wide totals plus unflushed local ones). Snapshots may jump by
    any amount between looks and may repeat; a snapshot with fewer outcomes or failures than
    one already seen is ignored (counts only grow). It returns ``"recent"`` once a window
    trips, and again at every later look (latched: a new rollout needs a new detector). No
    verdict before ``policy.min_samples`` candidate outcomes in all, like the ceiling rule.

    Args:
        policy: the route's guard policy (``ceiling``, ``alpha``, ``min_samples``).
        every: candidate outcomes between window starts (default :data:`EVERY`).
        span: outcomes each window is watched for (default :data:`SPAN`).

    Raises:
        ValueError: ``every`` or ``span`` is below 1.
    """

    __slots__ = ("_every", "_fired", "_last_k", "_open", "_policy", "_seen", "_span", "alpha")

    def __init__(self, policy: GuardConfig, *, every: int = EVERY, span: int = SPAN) -> None:
        if every < 1 or span < 1:
            raise ValueError(f"every and span must be >= 1, got {every} and {span}")
        self._policy = policy
        self._every = every
        self._span = span
        self.alpha = split_alpha(policy.alpha)[1]
        """The alpha all windows together spend (``alpha_recent``)."""
        self._open: list[_Window] = []
        self._last_k = 0
        self._seen = (0, 0)
        self._fired: RecentEvidence | None = None

    @property
    def fired(self) -> RecentEvidence | None:
        """The evidence of the window that tripped (``tripped=True``), or None."""
        return self._fired

    def look(self, n: int, failures: int) -> Literal["recent"] | None:
        """Look at the cumulative candidate counts; ``"recent"`` if a window trips (latched).

        Raises:
            ValueError: not ``0 <= failures <= n``.
        """
        if self._fired is not None:
            return "recent"
        seen_n, seen_f = self._seen
        if n == seen_n and failures == seen_f:
            return None
        if not 0 <= failures <= n:
            raise ValueError(f"need 0 <= failures <= n, got {failures} failures in {n}")
        if n < seen_n or failures < seen_f:
            return None  # an older snapshot than one already seen
        self._seen = (n, failures)
        windows = self._open
        k = n // self._every
        if k > self._last_k:  # a checkpoint passed: the newest window starts at this look
            self._last_k = k
            alpha_k = window_alpha(self.alpha, k)
            windows.append(
                _Window(k, n, failures, alpha_k, _thresholds(self._policy.ceiling, alpha_k))
            )
        if not windows:
            return None
        # the oldest open window holds the most failures and the lowest threshold floor
        if failures - windows[0].start_f < windows[0].thresholds.smallest:
            self._retire(n)
            return None
        if n >= self._policy.min_samples:
            for window in windows:
                m = n - window.start_n
                if m and failures - window.start_f >= window.thresholds.at(m):
                    self._fired = self._evidence(window, n, failures, tripped=True)
                    return "recent"
        self._retire(n)
        return None

    def evidence(self) -> RecentEvidence | None:
        """The tripped window's evidence, else the open window closest to tripping (highest
        ``log_e_value`` minus its ``log(1/alpha)``), else None; for the guard's state."""
        if self._fired is not None:
            return self._fired
        n, failures = self._seen
        best: RecentEvidence | None = None
        best_gap = -math.inf
        for window in self._open:
            if n - window.start_n <= 0:
                continue
            candidate = self._evidence(window, n, failures, tripped=False)
            gap = candidate.log_e_value - math.log(1 / window.alpha)
            if gap > best_gap:
                best, best_gap = candidate, gap
        return best

    def _retire(self, n: int) -> None:
        windows = self._open
        while windows and n - windows[0].start_n >= self._span:
            windows.pop(0)

    def _evidence(self, window: _Window, n: int, failures: int, *, tripped: bool) -> RecentEvidence:
        m, s = n - window.start_n, failures - window.start_f
        return RecentEvidence(
            tripped=tripped,
            window=window.k,
            start_n=window.start_n,
            start_failures=window.start_f,
            n=m,
            failures=s,
            rate=None if m == 0 else round(s / m, 6),
            needed=window.thresholds.at(m),
            log_e_value=round(log_e_value(s, m, self._policy.ceiling), 6),
            alpha=window.alpha,
            alpha_recent=self.alpha,
            ceiling=self._policy.ceiling,
        )
