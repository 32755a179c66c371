"""Always-valid confidence sequences for failure rates (pure math, no I/O).

The guard looks at its counts after every outcome, for as long as a rollout lasts. A fixed-n
test (a z-test) repeated at every look rolls back a healthy candidate far more often than its
alpha says; a *confidence sequence* holds at every sample size simultaneously, so looking
continuously is safe (Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 2021, section 3.3: conjugate mixtures).

For Bernoulli outcomes (failed or not) we use the beta-binomial mixture martingale: with ``s``
failures in ``n`` outcomes and a Beta(a, b) mixing prior,

    M_n(p) = B(a + s, b + n - s) / B(a, b) / (p^s (1 - p)^(n - s))

is a nonnegative martingale with mean 1 under the true rate ``p``, so by Ville's inequality
``P(exists n: M_n(p) >= 1/alpha) <= alpha``. The confidence sequence is
``{p : M_n(p) < 1/alpha}``, an interval around ``s/n`` found by bisection. It is exact (not
asymptotic) and tight for the small rates a guard watches. The prior Beta(1, 1) spends the
confidence evenly across sample sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Interval",
    "confidence_interval",
    "log_mixture_martingale",
    "lower_bound",
    "upper_bound",
]

_PRIOR_A = 1.0
_PRIOR_B = 1.0
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval ``[lower, upper]`` for a rate, valid at this and every other n."""

    lower: float
    upper: float


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_mixture_martingale(failures: int, n: int, p: float) -> float:
    """``log M_n(p)`` of the beta-binomial mixture (see the module docstring)."""
    return _log_marginal(failures, n) - _log_likelihood(failures, n, p)


@lru_cache(maxsize=65536)
def _log_marginal(failures: int, n: int) -> float:
    """``log B(a + s, b + n - s) - log B(a, b)``: the mixture's part that does not depend on p."""
    return _log_beta(_PRIOR_A + failures, _PRIOR_B + n - failures) - _log_beta(_PRIOR_A, _PRIOR_B)


def _log_likelihood(failures: int, n: int, p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return failures * math.log(p) + (n - failures) * math.log1p(-p)


def lower_bound(failures: int, n: int, alpha: float) -> float:
    """The lower end of :func:`confidence_interval` alone (half the work)."""
    if n <= 0 or failures == 0:
        return 0.0
    return _bound(failures, n, alpha, outside=0.0)


def upper_bound(failures: int, n: int, alpha: float) -> float:
    """The upper end of :func:`confidence_interval` alone (half the work)."""
    if n <= 0 or failures == n:
        return 1.0
    return _bound(failures, n, alpha, outside=1.0)


@lru_cache(maxsize=65536)
def confidence_interval(failures: int, n: int, alpha: float) -> Interval:
    """The time-uniform ``1 - alpha`` confidence interval for a failure rate.

    Args:
        failures: failed outcomes so far (``0 <= failures <= n``).
        n: outcomes so far; with ``n == 0`` the interval is ``[0, 1]``.
        alpha: the error allowed over the whole (unbounded) sequence of looks.

    Returns:
        ``Interval(lower, upper)``; ``P(the true rate ever leaves it) <= alpha``.
    """
    return Interval(lower_bound(failures, n, alpha), upper_bound(failures, n, alpha))


@lru_cache(maxsize=65536)
def _bound(failures: int, n: int, alpha: float, *, outside: float) -> float:
    """Where ``log M_n(p)`` crosses ``log(1/alpha)`` between ``s/n`` and ``outside``.

    ``log M_n(p) >= log(1/alpha)`` iff ``loglik(p) <= log_marginal - log(1/alpha)``; the
    likelihood is unimodal at ``s/n``, so bisection finds the crossing. Cached: counts only
    grow one outcome at a time and the guard looks at the same counts again and again.
    """
    level = _log_marginal(failures, n) - math.log(1 / alpha)
    if _log_likelihood(failures, n, outside) > level:
        return outside
    lo, hi = failures / n, outside
    for _ in range(40):  # 2^-40: far below any rate that matters
        mid = (lo + hi) / 2
        if _log_likelihood(failures, n, mid) > level:
            lo = mid
        else:
            hi = mid
    return lo
