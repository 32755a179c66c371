"""One variant's results summarised, and candidate minus fallback (pure: values in, values out).

Per variant (:func:`summarize_variant`), over its results:

* **accuracy**: answers equal to the gold by the route's contract (:meth:`Contract.agree`: the
  normalised label, equal JSON for JSON contracts, else the same text), over *answered*
  examples, with a 95% Wilson score interval
  (:func:`~gateway.tools.evaluation.report_stats.wilson_interval`);
* **contract pass rate**: answered examples passing every check of the contract;
* **errors**: results with an error (5xx, 429, timeout, wrong variant, invalid answer), by kind;
  they are left out of every other metric and never silently dropped;
* **mean input and output tokens**, **latency p50/p95** in milliseconds (client-side wall time,
  ``statistics.quantiles``, inclusive method), **cost per 1,000 requests** in USD (mean cost of
  an answered request times 1,000);
* **models served**: answered results by the model of the variant that answered (its
  ``x-gateway-variant``, looked up in the routes config), else by the answer's ``model``: a
  route with ``response_model: route`` (the default) names itself in ``model``, not the model.

The difference (:func:`compare`) is candidate minus fallback for each metric; the accuracy
difference has a 95% interval by Newcombe's hybrid score method
(:func:`~gateway.tools.evaluation.report_stats.newcombe_interval`).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.quality.contract import Contract
from gateway.tools.evaluation.heldout_state import Result
from gateway.tools.evaluation.report_stats import (
    CONFIDENCE,
    ConfidenceInterval,
    cost_per_1k,
    newcombe_interval,
    percentile,
    wilson_interval,
)

__all__ = ["Difference", "VariantMetrics", "compare", "summarize_variant"]


def _mean(values: Sequence[int | float]) -> float | None:
    return statistics.fmean(values) if values else None


def _served_model(result: Result, variant_models: Mapping[str, str]) -> str | None:
    """The model that answered: the configured model of the variant the gateway says served
    the answer, else the answer's own ``model`` (``None`` when neither is known)."""
    if result.served_variant is not None and result.served_variant in variant_models:
        return variant_models[result.served_variant]
    return result.model


def _models_served(answered: Sequence[Result], variant_models: Mapping[str, str]) -> dict[str, int]:
    served = (_served_model(r, variant_models) for r in answered)
    return dict(Counter(model for model in served if model is not None))


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
    variant_models: Mapping[str, str] | None = None,
) -> VariantMetrics:
    """Summarise one variant's results (one per example) against the golds by example index.

    ``variant_models`` (the route's model by variant name, from the routes config) names the
    model behind each answer's ``served_variant`` in ``models_served``; an answer whose variant
    is not in it (or not reported) counts under its own ``model``.

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
        models_served=_models_served(answered, variant_models or {}),
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
