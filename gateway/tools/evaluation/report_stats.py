"""The statistics of a held-out evaluation (pure): intervals, percentiles, cost.

* :func:`wilson_interval`: a **95% Wilson score interval** for a proportion (Wilson 1927; exact
  enough at any n, unlike the normal approximation near 0 or 1);
* :func:`newcombe_interval`: a 95% interval for the difference of two proportions by
  **Newcombe's hybrid score method** (Newcombe 1998, method 10), built from the two Wilson
  intervals. It treats the two samples as independent; on the same examples two variants'
  answers are positively correlated, so the interval is conservative (wider);
* :func:`percentile`: ``statistics.quantiles``, inclusive method;
* :func:`cost_per_1k`: USD per 1,000 requests from per-request costs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "CONFIDENCE",
    "ConfidenceInterval",
    "cost_per_1k",
    "newcombe_interval",
    "percentile",
    "wilson_interval",
]


CONFIDENCE = 0.95
"""Confidence level of every interval in the report."""


@dataclass(frozen=True, slots=True)
class ConfidenceInterval:
    """A two-sided confidence interval ``[lower, upper]`` at a fixed-n level (not time-uniform)."""

    lower: float
    upper: float

    def __contains__(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> ConfidenceInterval:
    """Wilson score interval for a proportion ``successes / n``.

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the normal quantile of
    ``confidence`` (1.96 for 95%). E.g. 8 of 10 gives [0.4902, 0.9433].

    Raises:
        ValueError: ``successes`` outside ``0..n``. With ``n == 0`` the interval is [0, 1].
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..n, got {successes} of {n}")
    if n == 0:
        return ConfidenceInterval(0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 or n successes the bound is exactly 0 or 1; say so instead of float noise.
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return ConfidenceInterval(lower, upper)


def newcombe_interval(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = CONFIDENCE
) -> ConfidenceInterval:
    """Newcombe's hybrid score interval for ``p_a - p_b`` (Newcombe 1998, method 10).

    With Wilson intervals ``[l_a, u_a]`` and ``[l_b, u_b]`` and ``d = p_a - p_b``:
    ``[d - sqrt((p_a - l_a)² + (u_b - p_b)²), d + sqrt((u_a - p_a)² + (p_b - l_b)²)]``.
    E.g. 56/70 minus 48/80 gives [0.0524, 0.3339]. With an empty side: [-1, 1].
    """
    if n_a == 0 or n_b == 0:
        return ConfidenceInterval(-1.0, 1.0)
    p_a, p_b = successes_a / n_a, successes_b / n_b
    a = wilson_interval(successes_a, n_a, confidence)
    b = wilson_interval(successes_b, n_b, confidence)
    d = p_a - p_b
    return ConfidenceInterval(
        d - math.hypot(p_a - a.lower, b.upper - p_b),
        d + math.hypot(a.upper - p_a, p_b - b.lower),
    )


def percentile(values: Sequence[float], percent: int) -> float | None:
    """The ``percent``-th percentile (1..99) of ``values``, ``statistics.quantiles`` inclusive.

    One value is its own percentile; no values give ``None``.

    Raises:
        ValueError: ``percent`` outside 1..99.
    """
    if not 1 <= percent <= 99:
        raise ValueError(f"percent must lie in 1..99, got {percent}")
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def cost_per_1k(costs: Sequence[float]) -> float | None:
    """USD per 1,000 requests from per-request costs in USD (``None`` without any)."""
    return statistics.fmean(costs) * 1000 if costs else None
