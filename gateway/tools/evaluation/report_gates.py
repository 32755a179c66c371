"""The CI gates of a held-out evaluation (pure): does the candidate meet the thresholds asked?

* ``min-accuracy`` holds when the candidate's accuracy (or its Wilson interval's lower bound)
  is at least the threshold;
* ``max-regression`` holds when fallback minus candidate accuracy (or, on lower bounds, the
  upper end of its Newcombe interval) is at most the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.tools.evaluation.report_metrics import Difference, VariantMetrics
from gateway.tools.evaluation.report_text import pct, pp

__all__ = ["Gate", "check_gates"]

_EPS = 1e-12  # float noise allowed when comparing a metric with a gate's threshold


@dataclass(frozen=True, slots=True)
class Gate:
    """One CI gate: its name, the value observed, the threshold and whether it held."""

    name: str
    passed: bool
    observed: float | None
    threshold: float
    detail: str


def check_gates(
    candidate: VariantMetrics,
    fallback: VariantMetrics,
    difference: Difference,
    *,
    min_accuracy: float | None = None,
    max_regression: float | None = None,
    on_lower_bound: bool = False,
) -> list[Gate]:
    """Evaluate the requested gates (none requested: an empty list).

    * ``min-accuracy``: candidate accuracy >= ``min_accuracy`` (with ``on_lower_bound``: the
      lower end of its Wilson interval).
    * ``max-regression``: fallback accuracy minus candidate accuracy <= ``max_regression``
      (with ``on_lower_bound``: the upper end of that difference's Newcombe interval).

    A variant without any answered example fails every gate that needs its accuracy.
    """
    gates: list[Gate] = []
    basis = "lower bound" if on_lower_bound else "point estimate"
    if min_accuracy is not None:
        observed = (
            None
            if candidate.accuracy is None
            else candidate.accuracy_ci.lower
            if on_lower_bound
            else candidate.accuracy
        )
        passed = observed is not None and observed >= min_accuracy - _EPS
        gates.append(
            Gate(
                "min-accuracy",
                passed,
                observed,
                min_accuracy,
                f"candidate accuracy ({basis}) {pct(observed)} "
                f"{'>=' if passed else '<'} {pct(min_accuracy)}",
            )
        )
    if max_regression is not None:
        regression = (
            None
            if difference.accuracy is None
            else -difference.accuracy_ci.lower
            if on_lower_bound
            else -difference.accuracy
        )
        passed = regression is not None and regression <= max_regression + _EPS
        gates.append(
            Gate(
                "max-regression",
                passed,
                regression,
                max_regression,
                f"fallback minus candidate accuracy ({basis}) {pp(regression)} "
                f"{'<=' if passed else '>'} {pp(max_regression)}",
            )
        )
    return gates
