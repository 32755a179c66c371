"""The held-out evaluation's pure parts: intervals, percentiles, cost, gates, report, resume state.

Known values: Wilson 1927 score intervals as tabulated by Newcombe (1998, "Two-sided confidence
intervals for the single proportion", Table I) and Newcombe's hybrid score interval for a
difference (1998, "Interval estimation for the difference between independent proportions",
example 56/70 - 48/80 -> 0.0524 to 0.3339).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import ContractConfig, Price, Variant
from gateway.quality.contract import Contract
from gateway.tools.evaluation.heldout_examples import (
    DatasetError,
    Example,
    parse_example,
    read_examples,
)
from gateway.tools.evaluation.heldout_runner import price_per_token
from gateway.tools.evaluation.heldout_state import Result, StateWriter, plan_run, read_state
from gateway.tools.evaluation.report import EvalReport, render_markdown, summary_rows
from gateway.tools.evaluation.report_gates import check_gates
from gateway.tools.evaluation.report_metrics import VariantMetrics, compare, summarize_variant
from gateway.tools.evaluation.report_stats import (
    ConfidenceInterval,
    cost_per_1k,
    newcombe_interval,
    percentile,
    wilson_interval,
)

ROUTE = "support-triage"
LABELS = Contract(ContractConfig(labels=["billing", "technical", "account"], case_insensitive=True))


# -- intervals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "lower", "upper"),
    [
        (81, 263, 0.2553, 0.3662),  # Newcombe 1998, Table I
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (8, 10, 0.4902, 0.9433),
    ],
)
def test_wilson_interval_matches_published_values(
    successes: int, n: int, lower: float, upper: float
) -> None:
    interval = wilson_interval(successes, n)
    assert interval.lower == pytest.approx(lower, abs=5e-5)
    assert interval.upper == pytest.approx(upper, abs=5e-5)


def test_wilson_interval_edges_are_exact() -> None:
    """0 of n starts at exactly 0, n of n ends at exactly 1, no data is [0, 1]."""
    assert wilson_interval(0, 10).lower == 0.0
    assert wilson_interval(10, 10).upper == 1.0
    assert wilson_interval(0, 0) == ConfidenceInterval(0.0, 1.0)
    with pytest.raises(ValueError, match=r"0\.\.n"):
        wilson_interval(11, 10)


def test_wilson_interval_narrows_with_n_and_widens_with_confidence() -> None:
    small, large = wilson_interval(9, 10), wilson_interval(900, 1000)
    assert large.upper - large.lower < small.upper - small.lower
    wide = wilson_interval(9, 10, confidence=0.99)
    assert wide.lower < small.lower
    assert wide.upper > small.upper


def test_newcombe_interval_matches_published_example() -> None:
    interval = newcombe_interval(56, 70, 48, 80)
    assert interval.lower == pytest.approx(0.0524, abs=5e-5)
    assert interval.upper == pytest.approx(0.3339, abs=5e-5)


def test_newcombe_interval_is_antisymmetric_and_empty_side_is_uninformative() -> None:
    ab, ba = newcombe_interval(30, 40, 20, 40), newcombe_interval(20, 40, 30, 40)
    assert ab.lower == pytest.approx(-ba.upper)
    assert ab.upper == pytest.approx(-ba.lower)
    assert newcombe_interval(3, 10, 0, 0) == ConfidenceInterval(-1.0, 1.0)


# -- percentiles and cost ----------------------------------------------------------------------


def test_percentile_uses_inclusive_quantiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile([10.0, 20.0], 50) == pytest.approx(15.0)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"1\.\.99"):
        percentile(values, 100)


def test_cost_per_1k_is_mean_cost_times_1000() -> None:
    assert cost_per_1k([0.001, 0.003]) == pytest.approx(2.0)
    assert cost_per_1k([]) is None


# -- per-variant summary -----------------------------------------------------------------------


def _result(index: int, variant: str = "finetuned", **fields: object) -> Result:
    base: dict[str, object] = {
        "index": index,
        "example_hash": f"h{index}",
        "route": ROUTE,
        "variant": variant,
        "answer": "billing",
        "input_tokens": 30,
        "output_tokens": 2,
        "latency_ms": 10.0,
        "cost_usd": 0.00001,
    }
    base.update(fields)
    return Result(**base)  # type: ignore[arg-type]


def test_summary_counts_errors_apart_and_normalises_answers() -> None:
    """Accuracy is over answered results, after the contract's normalisation; errors are
    counted by kind and excluded from the other metrics."""
    golds = {0: "billing", 1: "billing", 2: "account", 3: "billing", 4: "billing"}
    results = [
        _result(0, answer=" Billing "),  # correct after strip + case folding
        _result(1, answer="technical"),  # wrong but valid
        _result(2, answer="sales"),  # wrong and breaks the contract
        _result(3, answer=None, error="http_502", status=502, latency_ms=9000.0, cost_usd=None),
        _result(4, answer=None, error="timeout", latency_ms=60000.0, cost_usd=None),
    ]
    m = summarize_variant("finetuned", "candidate", "ft:model", results, golds, LABELS)
    assert (m.n, m.answered, m.errors, m.correct, m.contract_passed) == (5, 3, 2, 1, 2)
    assert m.errors_by_kind == {"http_502": 1, "timeout": 1}
    assert m.error_rate == pytest.approx(0.4)
    assert m.accuracy == pytest.approx(1 / 3)
    assert m.accuracy_ci == wilson_interval(1, 3)
    assert m.contract_pass_rate == pytest.approx(2 / 3)
    assert m.latency_p95_ms == pytest.approx(10.0)  # error latencies left out
    assert m.mean_input_tokens == pytest.approx(30.0)
    assert m.cost_per_1k_usd == pytest.approx(0.01)


def test_models_served_names_the_variants_model_not_the_route() -> None:
    """Under response_model: route every answer's model is the route name: models_served
    counts the configured model of the variant the gateway says answered, and the answer's
    own model only when that variant is unknown (or not reported)."""
    models = {"finetuned": "ft:gpt-4o-mini:acme::abc", "prompted": "gpt-4o-mini"}
    golds = dict.fromkeys(range(5), "billing")
    results = [
        _result(0, model=ROUTE, served_variant="finetuned"),
        _result(1, model=ROUTE, served_variant="finetuned"),
        _result(2, model="gpt-4o-mini-2024-07-18", served_variant="renamed"),
        _result(3, model="upstream-model", served_variant=None),
        _result(4, answer=None, error="http_503", model=ROUTE, served_variant="finetuned"),
    ]
    m = summarize_variant(
        "finetuned", "candidate", models["finetuned"], results, golds, LABELS, variant_models=models
    )
    assert m.models_served == {
        "ft:gpt-4o-mini:acme::abc": 2,
        "gpt-4o-mini-2024-07-18": 1,
        "upstream-model": 1,
    }
    without = summarize_variant("finetuned", "candidate", "m", results, golds, LABELS)
    assert without.models_served == {ROUTE: 2, "gpt-4o-mini-2024-07-18": 1, "upstream-model": 1}


def test_summary_compares_json_answers_by_value() -> None:
    contract = Contract(ContractConfig(json_schema={"type": "object"}))
    golds = {0: '{"a": 1, "b": [1, 2]}'}
    same = _result(0, answer='{ "b": [1,2], "a": 1 }')
    m = summarize_variant("v", "candidate", "m", [same], golds, contract)
    assert m.correct == 1


def test_summary_of_nothing_answered_has_no_accuracy() -> None:
    results = [_result(0, answer=None, error="http_503")]
    m = summarize_variant("v", "candidate", "m", results, {0: "billing"}, LABELS)
    assert m.accuracy is None
    assert m.latency_p50_ms is None
    assert m.cost_per_1k_usd is None
    assert m.accuracy_ci == ConfidenceInterval(0.0, 1.0)


def _metrics(correct: int, answered: int, **fields: object) -> VariantMetrics:
    defaults: dict[str, object] = {
        "variant": "v",
        "role": "candidate",
        "model": "m",
        "n": answered,
        "answered": answered,
        "errors": 0,
        "error_rate": 0.0,
        "errors_by_kind": {},
        "correct": correct,
        "accuracy": correct / answered if answered else None,
        "accuracy_ci": wilson_interval(correct, answered),
        "contract_passed": answered,
        "contract_pass_rate": 1.0 if answered else None,
        "mean_input_tokens": 30.0,
        "mean_output_tokens": 2.0,
        "latency_p50_ms": 10.0,
        "latency_p95_ms": 20.0,
        "overhead_p50_ms": 0.1,
        "cost_per_1k_usd": 0.01,
        "total_cost_usd": 0.001,
        "models_served": {},
    }
    defaults.update(fields)
    return VariantMetrics(**defaults)  # type: ignore[arg-type]


def test_difference_is_candidate_minus_fallback() -> None:
    candidate = _metrics(95, 100, mean_input_tokens=30.0, cost_per_1k_usd=0.01)
    fallback = _metrics(
        80, 100, mean_input_tokens=800.0, cost_per_1k_usd=0.12, errors=3, error_rate=0.03
    )
    d = compare(candidate, fallback)
    assert d.accuracy == pytest.approx(0.15)
    assert d.accuracy_ci == newcombe_interval(95, 100, 80, 100)
    assert d.mean_input_tokens == pytest.approx(-770.0)
    assert d.cost_per_1k_usd == pytest.approx(-0.11)
    assert d.errors == -3
    assert d.error_rate == pytest.approx(-0.03)
    assert d.latency_p50_ms == 0.0
    assert compare(_metrics(0, 0), fallback).accuracy is None


# -- gates -------------------------------------------------------------------------------------


def test_min_accuracy_gate_on_point_estimate_or_lower_bound() -> None:
    candidate, fallback = _metrics(90, 100), _metrics(80, 100)
    d = compare(candidate, fallback)
    (gate,) = check_gates(candidate, fallback, d, min_accuracy=0.9)
    assert gate.passed
    assert gate.name == "min-accuracy"
    assert gate.observed == pytest.approx(0.9)  # equal to the threshold passes
    (gate,) = check_gates(candidate, fallback, d, min_accuracy=0.9, on_lower_bound=True)
    assert not gate.passed
    assert gate.observed == pytest.approx(wilson_interval(90, 100).lower)
    assert "<" in gate.detail


def test_max_regression_gate() -> None:
    """fallback - candidate <= Y passes; a bigger drop fails; the lower-bound mode uses the
    pessimistic end of Newcombe's interval."""
    candidate, fallback = _metrics(78, 100), _metrics(80, 100)
    d = compare(candidate, fallback)
    (gate,) = check_gates(candidate, fallback, d, max_regression=0.02)
    assert gate.passed
    assert gate.observed == pytest.approx(0.02)
    (gate,) = check_gates(candidate, fallback, d, max_regression=0.01)
    assert not gate.passed
    (gate,) = check_gates(candidate, fallback, d, max_regression=0.02, on_lower_bound=True)
    assert not gate.passed
    assert gate.observed == pytest.approx(-d.accuracy_ci.lower)


def test_gates_fail_without_answers_and_are_absent_unless_asked() -> None:
    candidate, fallback = _metrics(0, 0), _metrics(80, 100)
    d = compare(candidate, fallback)
    assert check_gates(candidate, fallback, d) == []
    gates = check_gates(candidate, fallback, d, min_accuracy=0.5, max_regression=0.5)
    assert [g.passed for g in gates] == [False, False]


def test_report_json_and_markdown_carry_every_number() -> None:
    candidate = _metrics(95, 100, variant="finetuned", model="ft:m")
    fallback = _metrics(80, 100, variant="prompted", role="fallback", model="m")
    d = compare(candidate, fallback)
    gates = tuple(check_gates(candidate, fallback, d, min_accuracy=0.99, max_regression=0.0))
    report = EvalReport({"route": ROUTE, "n_examples": 100}, candidate, fallback, d, gates)
    data = json.loads(json.dumps(report.to_json()))
    assert data["passed"] is False
    assert data["variants"]["candidate"]["accuracy_ci"]["lower"] == candidate.accuracy_ci.lower
    assert data["difference"]["accuracy"] == pytest.approx(0.15)
    assert [g["passed"] for g in data["gates"]] == [False, True]
    markdown = render_markdown(report)
    assert "| accuracy [95% CI: Wilson; diff: Newcombe] | 95.0% [" in markdown
    assert "**FAIL** `min-accuracy`" in markdown
    assert "**PASS** `max-regression`" in markdown
    rows = {row[0]: row for row in summary_rows(report)}
    assert rows["cost per 1,000 requests (USD)"][3] == "+$0.0000"
    assert rows["accuracy [95% CI: Wilson; diff: Newcombe]"][3].startswith("+15.0 pp [")


# -- examples and resume state -----------------------------------------------------------------


def _example(index: int, text: str = "charged twice", gold: str = "billing") -> Example:
    return parse_example(
        {
            "messages": [
                {"role": "system", "content": "the training prompt"},
                {"role": "user", "content": text},
                {"role": "assistant", "content": gold},
            ]
        },
        index,
    )


def test_example_sends_conversation_without_system_message_and_keeps_gold() -> None:
    example = _example(3)
    assert example.messages == ({"role": "user", "content": "charged twice"},)
    assert example.gold == "billing"
    assert example.index == 3
    assert _example(3).example_hash == example.example_hash
    assert _example(3, gold="account").example_hash != example.example_hash


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"prompt": "x"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "last message"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "no user message"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages\\[0\\]"),
    ],
)
def test_invalid_examples_say_what_is_wrong(item: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_example(item, 0)


def test_read_examples_reports_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "heldout.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
    )
    path.write_text(f"{good}\n\nnot json\n{{}}\n{good}\n")
    with pytest.raises(DatasetError) as caught:
        read_examples(path)
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == [f"{path}:3", f"{path}:4"]
    path.write_text(f"{good}\n\n{good}\n")
    assert [e.index for e in read_examples(path)] == [0, 1]


def test_plan_skips_done_pairs_in_example_then_variant_order() -> None:
    examples = [_example(i, text=f"charged twice {i}") for i in range(3)]
    records = [
        Result(0, examples[0].example_hash, ROUTE, "finetuned", answer="billing"),
        Result(1, examples[1].example_hash, ROUTE, "prompted", answer="billing"),
    ]
    plan = plan_run(examples, ("finetuned", "prompted"), records, route=ROUTE)
    assert set(plan.done) == {(0, "finetuned"), (1, "prompted")}
    assert [(e.index, v) for e, v in plan.todo] == [
        (0, "prompted"),
        (1, "finetuned"),
        (2, "finetuned"),
        (2, "prompted"),
    ]
    assert plan.stale == 0


def test_plan_ignores_stale_records_and_newest_record_wins() -> None:
    examples = [_example(0), _example(1, text="locked out", gold="account")]
    h0, h1 = examples[0].example_hash, examples[1].example_hash
    records = [
        Result(0, h0, ROUTE, "finetuned", error="http_502"),
        Result(0, h0, ROUTE, "finetuned", answer="billing"),  # a retry superseded the error
        Result(1, "edited-example", ROUTE, "finetuned", answer="account"),
        Result(1, h1, "other-route", "finetuned", answer="account"),
        Result(1, h1, ROUTE, "unknown-variant", answer="account"),
        Result(7, h0, ROUTE, "finetuned", answer="billing"),  # beyond --limit
    ]
    plan = plan_run(examples, ("finetuned",), records, route=ROUTE)
    assert plan.done[(0, "finetuned")].answer == "billing"
    assert [(e.index, v) for e, v in plan.todo] == [(1, "finetuned")]
    assert plan.stale == 4


def test_plan_retries_only_errors_when_asked() -> None:
    examples = [_example(0), _example(1, text="charged again")]
    records = [
        Result(0, examples[0].example_hash, ROUTE, "prompted", error="http_502"),
        Result(1, examples[1].example_hash, ROUTE, "prompted", answer="billing"),
    ]
    kept = plan_run(examples, ("prompted",), records, route=ROUTE)
    assert kept.todo == []
    assert kept.done[(0, "prompted")].error == "http_502"
    retried = plan_run(examples, ("prompted",), records, route=ROUTE, retry_errors=True)
    assert [(e.index, v) for e, v in retried.todo] == [(0, "prompted")]
    assert set(retried.done) == {(1, "prompted")}


def test_state_file_round_trips_and_survives_a_cut_last_line(tmp_path: Path) -> None:
    """A write cut by a kill leaves a partial line: it is skipped, and the next record still
    lands on a line of its own."""
    path = tmp_path / "out" / "state.jsonl"
    first = Result(0, "h0", ROUTE, "finetuned", answer="billing", input_tokens=3, cost_usd=1e-6)
    with StateWriter(path) as writer:
        writer.append(first)
    with path.open("a") as file:
        file.write('{"index": 1, "example_ha')
    second = Result(1, "h1", ROUTE, "finetuned", error="timeout")
    with StateWriter(path) as writer:
        writer.append(second)
    records, bad = read_state(path)
    assert records == [first, second]
    assert bad == 1
    assert read_state(tmp_path / "missing.jsonl") == ([], 0)


def _variant(route: str, model: str, per_million: tuple[float, float] | None) -> Variant:
    return Variant(
        name="candidate",
        route=route,
        upstream="sim",
        model=model,
        system_prompt=None,
        few_shot=(),
        params={},
        input_usd_per_token=per_million[0] / 1e6 if per_million else 0.0,
        output_usd_per_token=per_million[1] / 1e6 if per_million else 0.0,
        priced=per_million is not None,
    )


def test_an_answer_named_after_its_route_is_priced_by_the_variant() -> None:
    """A route named like a priced model, answering with the route's name (response_model:
    route): the variant's model's price, not the price of the model the route is named after.
    A dated snapshot the upstream names is priced as itself when listed, else as the variant."""
    prices = {"gpt-4o": Price(input=2.5, output=10.0), "ft:small": Price(input=0.3, output=1.2)}
    variant = _variant("gpt-4o", "ft:small", (0.3, 1.2))
    assert price_per_token("gpt-4o", variant, prices) == (0.3 / 1e6, 1.2 / 1e6)
    assert price_per_token("ft:small-2024-07-18", variant, prices) == (0.3 / 1e6, 1.2 / 1e6)
    other = _variant("triage", "ft:small", (0.3, 1.2))
    assert price_per_token("gpt-4o", other, prices) == (2.5 / 1e6, 10.0 / 1e6)
    assert price_per_token("triage", _variant("triage", "x", None), prices) is None
