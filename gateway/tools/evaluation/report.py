"""The held-out evaluation's report: assembled from the results, rendered as rows and Markdown.

:func:`build_report` summarises both variants (:mod:`~gateway.tools.evaluation.report_metrics`),
compares them and checks the gates (:mod:`~gateway.tools.evaluation.report_gates`);
:class:`EvalReport` is the result, with its JSON form (every number unrounded);
:func:`summary_rows` is its table as text, for the terminal and :func:`render_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.config import Route
from gateway.quality.contract import Contract
from gateway.tools.evaluation.heldout_examples import Example
from gateway.tools.evaluation.heldout_state import Result
from gateway.tools.evaluation.report_gates import Gate, check_gates
from gateway.tools.evaluation.report_metrics import (
    Difference,
    VariantMetrics,
    compare,
    summarize_variant,
)
from gateway.tools.evaluation.report_stats import CONFIDENCE
from gateway.tools.evaluation.report_text import num, pct, pp, usd

__all__ = ["EvalReport", "build_report", "render_markdown", "summary_rows"]


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


def build_report(
    route: Route,
    examples: Sequence[Example],
    results: Mapping[tuple[int, str], Result],
    *,
    meta: Mapping[str, Any],
    min_accuracy: float | None,
    max_regression: float | None,
    on_lower_bound: bool,
) -> EvalReport:
    """Summarise both variants of ``route`` over ``examples``, compare them, check the gates.

    ``results`` maps ``(example index, variant name)`` to a result; a missing pair is left out.
    ``meta`` (what the run was: data file, URL, state file...) is added to the report's own
    (route, n, models, contract, methods, gates, ``generated_at`` in UTC).
    """
    contract = Contract(route.contract)
    golds = {example.index: example.gold for example in examples}
    variant_models = {name: variant.model for name, variant in route.variants.items()}
    summaries = []
    for role, name in (("candidate", route.candidate), ("fallback", route.fallback)):
        variant = route.variants[name]
        ordered = [results[(e.index, name)] for e in examples if (e.index, name) in results]
        summaries.append(
            summarize_variant(
                name, role, variant.model, ordered, golds, contract, variant_models=variant_models
            )
        )
    candidate, fallback = summaries
    difference = compare(candidate, fallback)
    gates = check_gates(
        candidate,
        fallback,
        difference,
        min_accuracy=min_accuracy,
        max_regression=max_regression,
        on_lower_bound=on_lower_bound,
    )
    full_meta = {
        "route": route.name,
        "n_examples": len(examples),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "variants": {
            "candidate": {"name": route.candidate, "model": candidate.model},
            "fallback": {"name": route.fallback, "model": fallback.model},
        },
        "contract": route.contract.model_dump() if route.contract else None,
        "confidence": CONFIDENCE,
        "accuracy_interval": "wilson-score",
        "difference_interval": "newcombe-hybrid-score (method 10, independent samples)",
        "gates": {
            "min_accuracy": min_accuracy,
            "max_regression": max_regression,
            "on_lower_bound": on_lower_bound,
        },
        **meta,
    }
    return EvalReport(full_meta, candidate, fallback, difference, tuple(gates))


def _accuracy_cell(m: VariantMetrics) -> str:
    if m.accuracy is None:
        return "-"
    return f"{pct(m.accuracy)} [{pct(m.accuracy_ci.lower)}, {pct(m.accuracy_ci.upper)}]"


def _errors_cell(m: VariantMetrics) -> str:
    kinds = ", ".join(f"{kind} {count}" for kind, count in m.errors_by_kind.items())
    return f"{m.errors} ({pct(m.error_rate)})" + (f": {kinds}" if kinds else "")


def summary_rows(report: EvalReport) -> list[tuple[str, str, str, str]]:
    """The report's table as text: (metric, candidate, fallback, candidate minus fallback)."""
    c, f, d = report.candidate, report.fallback, report.difference
    level = f"{CONFIDENCE:.0%}"
    accuracy_diff = (
        "-"
        if d.accuracy is None
        else f"{pp(d.accuracy)} [{pp(d.accuracy_ci.lower)}, {pp(d.accuracy_ci.upper)}]"
    )
    return [
        ("results", str(c.n), str(f.n), str(c.n - f.n)),
        ("answered", str(c.answered), str(f.answered), str(c.answered - f.answered)),
        ("errors", _errors_cell(c), _errors_cell(f), f"{d.errors:+d} ({pp(d.error_rate)})"),
        (
            f"accuracy [{level} CI: Wilson; diff: Newcombe]",
            _accuracy_cell(c),
            _accuracy_cell(f),
            accuracy_diff,
        ),
        (
            "contract pass rate",
            pct(c.contract_pass_rate),
            pct(f.contract_pass_rate),
            pp(d.contract_pass_rate),
        ),
        (
            "mean input tokens",
            num(c.mean_input_tokens),
            num(f.mean_input_tokens),
            num(d.mean_input_tokens, sign=True),
        ),
        (
            "mean output tokens",
            num(c.mean_output_tokens),
            num(f.mean_output_tokens),
            num(d.mean_output_tokens, sign=True),
        ),
        (
            "latency p50 (ms)",
            num(c.latency_p50_ms),
            num(f.latency_p50_ms),
            num(d.latency_p50_ms, sign=True),
        ),
        (
            "latency p95 (ms)",
            num(c.latency_p95_ms),
            num(f.latency_p95_ms),
            num(d.latency_p95_ms, sign=True),
        ),
        (
            "cost per 1,000 requests (USD)",
            usd(c.cost_per_1k_usd),
            usd(f.cost_per_1k_usd),
            usd(d.cost_per_1k_usd, sign=True),
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
