"""The held-out evaluation's statistics, gates and report documents (pure: values in, values out).

Per variant (:func:`summarize_variant`), over its results:

* **accuracy**: answers equal to the gold by the route's contract (:meth:`Contract.agree`: the
  normalised label, equal JSON for JSON contracts, else the same text), over *answered*
  examples, with a **95% Wilson score interval** (Wilson 1927; exact enough at any n, unlike
  the normal approximation near 0 or 1);
* **contract pass rate**: answered examples passing every check of the contract;
* **errors**: results with an error (5xx, 429, timeout, wrong variant, invalid answer), by kind;
  they are left out of every other metric and never silently dropped;
* **mean input and output tokens**, **latency p50/p95** in milliseconds (client-side wall time,
  ``statistics.quantiles``, inclusive method), **cost per 1,000 requests** in USD (mean cost of
  an answered request times 1,000).

The difference (:func:`compare`) is candidate minus fallback for each metric; the accuracy
difference has a 95% interval by **Newcombe's hybrid score method** (Newcombe 1998, method 10),
built from the two Wilson intervals. It treats the two variants as independent samples; on the
same examples their answers are positively correlated, so the interval is conservative (wider).

Gates (:func:`check_gates`): ``min_accuracy`` holds when the candidate's accuracy (or its
interval's lower bound) is at least the threshold; ``max_regression`` holds when fallback minus
candidate accuracy (or, on lower bounds, the upper end of its interval) is at most the
threshold.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from gateway.evaluation.heldout import Result
from gateway.quality.contract import Contract

__all__ = [
    "CONFIDENCE",
    "ConfidenceInterval",
    "Difference",
    "EvalReport",
    "Gate",
    "VariantMetrics",
    "check_gates",
    "compare",
    "cost_per_1k",
    "newcombe_interval",
    "percentile",
    "render_markdown",
    "summarize_variant",
    "summary_rows",
    "wilson_interval",
]

CONFIDENCE = 0.95
"""Confidence level of every interval in the report."""

_EPS = 1e-12  # float noise allowed when comparing a metric with a gate's threshold


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


def _mean(values: Sequence[int | float]) -> float | None:
    return statistics.fmean(values) if values else None


@dataclass(frozen=True, slots=True)
class VariantMetrics:
    """One variant's results, summarised (see the module docstring for each metric's rule).

    Rates are fractions in 0..1; ``None`` means "no answered example to measure".
    """

    variant: str
    role: str
    model: str
    n: int
    answered: int
    errors: int
    error_rate: float
    errors_by_kind: dict[str, int]
    correct: int
    accuracy: float | None
    accuracy_ci: ConfidenceInterval
    contract_passed: int
    contract_pass_rate: float | None
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    overhead_p50_ms: float | None
    cost_per_1k_usd: float | None
    total_cost_usd: float
    models_served: dict[str, int]


def summarize_variant(
    variant: str,
    role: str,
    model: str,
    results: Sequence[Result],
    golds: Mapping[int, str],
    contract: Contract,
    confidence: float = CONFIDENCE,
) -> VariantMetrics:
    """Summarise one variant's results (one per example) against the golds by example index.

    Raises:
        KeyError: a result's index has no gold.
    """
    answered = [r for r in results if r.error is None]
    correct = sum(contract.agree(r.answer, golds[r.index]) for r in answered)
    passed = sum(all(c.passed for c in contract.check(r.answer)) for r in answered)
    latencies = [r.latency_ms for r in answered]
    overheads = [r.overhead_ms for r in answered if r.overhead_ms is not None]
    costs = [r.cost_usd for r in answered if r.cost_usd is not None]
    errors = Counter(r.error for r in results if r.error is not None)
    n = len(results)
    return VariantMetrics(
        variant=variant,
        role=role,
        model=model,
        n=n,
        answered=len(answered),
        errors=sum(errors.values()),
        error_rate=sum(errors.values()) / n if n else 0.0,
        errors_by_kind=dict(sorted(errors.items())),
        correct=correct,
        accuracy=correct / len(answered) if answered else None,
        accuracy_ci=wilson_interval(correct, len(answered), confidence),
        contract_passed=passed,
        contract_pass_rate=passed / len(answered) if answered else None,
        mean_input_tokens=_mean([r.input_tokens for r in answered if r.input_tokens is not None]),
        mean_output_tokens=_mean(
            [r.output_tokens for r in answered if r.output_tokens is not None]
        ),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        overhead_p50_ms=percentile(overheads, 50),
        cost_per_1k_usd=cost_per_1k(costs),
        total_cost_usd=math.fsum(costs),
        models_served=dict(Counter(r.model for r in answered if r.model is not None)),
    )


@dataclass(frozen=True, slots=True)
class Difference:
    """Candidate minus fallback, metric by metric (``None`` when either side has no value)."""

    accuracy: float | None
    accuracy_ci: ConfidenceInterval
    contract_pass_rate: float | None
    error_rate: float
    errors: int
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_per_1k_usd: float | None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compare(
    candidate: VariantMetrics, fallback: VariantMetrics, confidence: float = CONFIDENCE
) -> Difference:
    """Candidate minus fallback for every metric, with Newcombe's interval for accuracy."""
    return Difference(
        accuracy=_minus(candidate.accuracy, fallback.accuracy),
        accuracy_ci=newcombe_interval(
            candidate.correct, candidate.answered, fallback.correct, fallback.answered, confidence
        ),
        contract_pass_rate=_minus(candidate.contract_pass_rate, fallback.contract_pass_rate),
        error_rate=candidate.error_rate - fallback.error_rate,
        errors=candidate.errors - fallback.errors,
        mean_input_tokens=_minus(candidate.mean_input_tokens, fallback.mean_input_tokens),
        mean_output_tokens=_minus(candidate.mean_output_tokens, fallback.mean_output_tokens),
        latency_p50_ms=_minus(candidate.latency_p50_ms, fallback.latency_p50_ms),
        latency_p95_ms=_minus(candidate.latency_p95_ms, fallback.latency_p95_ms),
        cost_per_1k_usd=_minus(candidate.cost_per_1k_usd, fallback.cost_per_1k_usd),
    )


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
                f"candidate accuracy ({basis}) {_pct(observed)} "
                f"{'>=' if passed else '<'} {_pct(min_accuracy)}",
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
                f"fallback minus candidate accuracy ({basis}) {_pp(regression)} "
                f"{'<=' if passed else '>'} {_pp(max_regression)}",
            )
        )
    return gates


@dataclass(frozen=True, slots=True)
class EvalReport:
    """A finished evaluation: run metadata, both variants, their difference, the gates.

    ``meta`` holds what the run was (route, data file, n, models, URL, timestamp, methods).
    """

    meta: dict[str, Any]
    candidate: VariantMetrics
    fallback: VariantMetrics
    difference: Difference
    gates: tuple[Gate, ...]

    @property
    def passed(self) -> bool:
        """Whether every gate held (no gates: ``True``)."""
        return all(gate.passed for gate in self.gates)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: every number unrounded, intervals as lower/upper."""
        return {
            "meta": self.meta,
            "variants": {"candidate": asdict(self.candidate), "fallback": asdict(self.fallback)},
            "difference": asdict(self.difference),
            "gates": [asdict(gate) for gate in self.gates],
            "passed": self.passed,
        }


# -- presentation ------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pp"


def _num(value: float | None, digits: int = 1, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _usd(value: float | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    prefix = ("+" if value >= 0 else "-") if sign else ""
    return f"{prefix}${abs(value):.4f}"


def _accuracy_cell(m: VariantMetrics) -> str:
    if m.accuracy is None:
        return "-"
    return f"{_pct(m.accuracy)} [{_pct(m.accuracy_ci.lower)}, {_pct(m.accuracy_ci.upper)}]"


def _errors_cell(m: VariantMetrics) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in m.errors_by_kind.items())
    return f"{m.errors} ({_pct(m.error_rate)})" + (f": {kinds}" if kinds else "")


def summary_rows(report: EvalReport) -> list[tuple[str, str, str, str]]:
    """The report's table as text: (metric, candidate, fallback, candidate minus fallback)."""
    c, f, d = report.candidate, report.fallback, report.difference
    level = f"{CONFIDENCE:.0%}"
    accuracy_diff = (
        "-"
        if d.accuracy is None
        else f"{_pp(d.accuracy)} [{_pp(d.accuracy_ci.lower)}, {_pp(d.accuracy_ci.upper)}]"
    )
    return [
        ("results", str(c.n), str(f.n), str(c.n - f.n)),
        ("answered", str(c.answered), str(f.answered), str(c.answered - f.answered)),
        ("errors", _errors_cell(c), _errors_cell(f), f"{d.errors:+d} ({_pp(d.error_rate)})"),
        (
            f"accuracy [{level} CI: Wilson; diff: Newcombe]",
            _accuracy_cell(c),
            _accuracy_cell(f),
            accuracy_diff,
        ),
        (
            "contract pass rate",
            _pct(c.contract_pass_rate),
            _pct(f.contract_pass_rate),
            _pp(d.contract_pass_rate),
        ),
        (
            "mean input tokens",
            _num(c.mean_input_tokens),
            _num(f.mean_input_tokens),
            _num(d.mean_input_tokens, sign=True),
        ),
        (
            "mean output tokens",
            _num(c.mean_output_tokens),
            _num(f.mean_output_tokens),
            _num(d.mean_output_tokens, sign=True),
        ),
        (
            "latency p50 (ms)",
            _num(c.latency_p50_ms),
            _num(f.latency_p50_ms),
            _num(d.latency_p50_ms, sign=True),
        ),
        (
            "latency p95 (ms)",
            _num(c.latency_p95_ms),
            _num(f.latency_p95_ms),
            _num(d.latency_p95_ms, sign=True),
        ),
        (
            "cost per 1,000 requests (USD)",
            _usd(c.cost_per_1k_usd),
            _usd(f.cost_per_1k_usd),
            _usd(d.cost_per_1k_usd, sign=True),
        ),
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: EvalReport) -> str:
    """The report as Markdown: a heading with the run, the table, the gates, the methods."""
    meta, c, f = report.meta, report.candidate, report.fallback
    header = (
        "metric",
        f"candidate `{c.variant}` ({c.model})",
        f"fallback `{f.variant}` ({f.model})",
        "candidate − fallback",
    )
    lines = [
        f"# Held-out evaluation: route `{meta.get('route')}`",
        "",
        f"Data `{meta.get('data')}`, {meta.get('n_examples')} examples, gateway "
        f"{meta.get('url')}, {meta.get('generated_at')}.",
        "",
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "| --- | ---: | ---: | ---: |",
        *("| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in summary_rows(report)),
        "",
        "## Gates",
        "",
    ]
    if report.gates:
        lines += [
            f"- **{'PASS' if g.passed else 'FAIL'}** `{g.name}`: {g.detail}" for g in report.gates
        ]
    else:
        lines.append("No gates requested (`--min-accuracy`, `--max-regression`).")
    lines += [
        "",
        "## Method",
        "",
        "Accuracy is exact match with the gold after the route contract's normalisation (JSON "
        "equality for JSON contracts), over answered examples. Intervals are 95%: Wilson score "
        "per variant; Newcombe's hybrid score interval (method 10) for the difference, which "
        "treats the variants as independent and is therefore conservative on paired examples. "
        "Errors (5xx, 429, timeouts, wrong variant, invalid answers) are counted and excluded "
        "from the other metrics. Latency is client-side wall time; cost uses the routes file's "
        "prices.",
        "",
    ]
    return "\n".join(lines)
