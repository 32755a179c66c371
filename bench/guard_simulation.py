"""How often the guard rolls back, and how fast: the issue's scenarios, simulated (DESIGN.md 5).

Each scenario draws independent streams of requests (each to the candidate with probability
``share``, failing at the side's rate) and runs the guard's real rules
(:func:`gateway.quality.guard.decide_rule`, default ``GuardConfig()``: ceiling 0.20, margin
0.02, alpha 0.05, min_samples 50) after *every* outcome, the most demanding schedule (see
tests/unit/guard_sim.py). A run "trips" at the first look where a rule fires. The scenarios,
their requirements and their seeds are ``SCENARIOS`` in tests/unit/guard_sim.py; the unit tests
(tests/unit/test_guard_simulation.py) assert the requirements on the first runs of the same
seeds.

For contrast, the A/A scenarios are also run against a two-proportion z-test repeated at every
look (what the guard does *not* do), with the guard's margin and with no margin, and against
the guard itself with no margin.

Usage::

    .venv/bin/python bench/guard_simulation.py            # 1,000 runs per scenario
    .venv/bin/python bench/guard_simulation.py --quick    # 50 runs, prints only
    .venv/bin/python bench/guard_simulation.py --runs 5000 --out /tmp/results

Writes ``bench/results/guard_simulation.json`` and ``.md`` (not with ``--quick`` unless
``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import GuardConfig  # noqa: E402
from tests.unit.guard_sim import SCENARIOS, RunResult, Scenario, simulate_scenario  # noqa: E402

Z_95 = 1.6448536269514722  # one-sided 95% normal quantile
CONTRAST_SEED = 7


def percentile(values: list[int], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


def summarize(scenario: Scenario, results: list[RunResult], seconds: float) -> dict[str, Any]:
    tripped = [r for r in results if r.rule is not None]
    outcomes = [r.candidate_outcomes for r in tripped if r.candidate_outcomes is not None]
    requests = [r.request for r in tripped if r.request is not None]
    rules: dict[str, int] = {}
    for r in tripped:
        assert r.rule is not None
        rules[r.rule] = rules.get(r.rule, 0) + 1
    return {
        "scenario": scenario.name,
        "candidate_rate": scenario.candidate_rate,
        "fallback_rate": scenario.fallback_rate,
        "share": scenario.share,
        "requests": scenario.requests,
        "runs": len(results),
        "seed": scenario.seed,
        "tripped": len(tripped),
        "trip_rate": len(tripped) / len(results),
        "requirement": scenario.requirement(),
        "requirement_rate": scenario.measured(results),
        "met": scenario.met(results),
        "candidate_outcomes_to_trip": {
            "median": statistics.median(outcomes) if outcomes else None,
            "p95": percentile(outcomes, 95),
            "max": max(outcomes) if outcomes else None,
        },
        "requests_to_trip": {
            "median": statistics.median(requests) if requests else None,
            "p95": percentile(requests, 95),
            "max": max(requests) if requests else None,
        },
        "rules": rules,
        "seconds": round(seconds, 2),
    }


def z_test_trip(
    rng: np.random.Generator, scenario: Scenario, policy: GuardConfig, margin: float
) -> bool:
    """Whether a one-sided z-test at ``policy.alpha``, repeated after every outcome, ever trips
    (ceiling: candidate rate above the ceiling; regression: difference above ``margin``)."""
    n = scenario.requests
    to_candidate = rng.random(n) < scenario.share
    failed = np.where(
        to_candidate,
        rng.random(n) < scenario.candidate_rate,
        rng.random(n) < scenario.fallback_rate,
    )
    cand_n = np.cumsum(to_candidate)
    cand_f = np.cumsum(failed & to_candidate)
    fb_n = np.arange(1, n + 1) - cand_n
    fb_f = np.cumsum(failed & ~to_candidate)
    pc = cand_f / np.maximum(cand_n, 1)
    pf = fb_f / np.maximum(fb_n, 1)
    need = policy.min_samples
    c = policy.ceiling
    ceiling = (cand_n >= need) & ((pc - c) / np.sqrt(c * (1 - c) / np.maximum(cand_n, 1)) > Z_95)
    se = np.sqrt(pc * (1 - pc) / np.maximum(cand_n, 1) + pf * (1 - pf) / np.maximum(fb_n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        regression = (cand_n >= need) & (fb_n >= need) & (se > 0) & ((pc - pf - margin) / se > Z_95)
    return bool(np.any(ceiling | regression))


def contrasts(runs: int) -> list[dict[str, Any]]:
    """A/A false-rollback rates: z-test repeated at every look vs the guard, margin 0.02 and 0."""
    rows = []
    policy = GuardConfig()
    for scenario in (s for s in SCENARIOS if s.name.startswith("A/A")):
        for margin in (policy.margin, 0.0):
            rng = np.random.default_rng(CONTRAST_SEED)
            started = time.perf_counter()
            trips = sum(z_test_trip(rng, scenario, policy, margin) for _ in range(runs))
            rows.append(
                {
                    "scenario": scenario.name,
                    "method": "z-test at every look",
                    "margin": margin,
                    "runs": runs,
                    "seed": CONTRAST_SEED,
                    "false_rollback_rate": trips / runs,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
        started = time.perf_counter()
        guard = simulate_scenario(scenario, runs, GuardConfig(margin=0.0))
        rows.append(
            {
                "scenario": scenario.name,
                "method": "guard (confidence sequences)",
                "margin": 0.0,
                "runs": runs,
                "seed": scenario.seed,
                "false_rollback_rate": sum(r.rule is not None for r in guard) / runs,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return rows


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+uncommitted changes"
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "git_commit": commit or None,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def _pct(rate: float) -> str:
    return f"{rate:.1%}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def write_results(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "guard_simulation.json").write_text(json.dumps(report, indent=2) + "\n")
    m, p = report["machine"], report["policy"]
    seeds = "; ".join(f"{r['scenario']}: {r['seed']}" for r in report["results"])
    lines = [
        "# Guard simulation: false and true rollbacks",
        "",
        f"Measured {report['measured_at']} by `bench/guard_simulation.py` (commit "
        f"{m['git_commit']}). Policy `GuardConfig()`: ceiling {p['ceiling']}, margin "
        f"{p['margin']}, alpha {p['alpha']}, min_samples {p['min_samples']}. Every run is a "
        "fresh stream of requests (each to the candidate with probability *share*, failing "
        "at its side's rate); the guard's real `decide_rule` looks after **every** outcome; a "
        "run trips at the first look where a rule fires. Times to trip are over the runs that "
        "tripped.",
        "",
        "| scenario | candidate / fallback failure rate | share | requests | runs | trip rate "
        "| requirement | measured | met | candidate outcomes to trip (median / p95) "
        "| requests to trip (median / p95) | rule that fired |",
        "| --- | --- | --: | --: | --: | --: | --- | --: | --- | --: | --: | --- |",
    ]
    for r in report["results"]:
        outcomes, requests = r["candidate_outcomes_to_trip"], r["requests_to_trip"]
        rules = ", ".join(f"{rule} {count}" for rule, count in sorted(r["rules"].items())) or "-"
        lines.append(
            f"| {r['scenario']} | {_pct(r['candidate_rate'])} / {_pct(r['fallback_rate'])} "
            f"| {r['share']:.0%} | {r['requests']:,} | {r['runs']:,} | {_pct(r['trip_rate'])} "
            f"| {r['requirement']} | {_pct(r['requirement_rate'])} "
            f"| {'yes' if r['met'] else '**no**'} "
            f"| {_num(outcomes['median'])} / {_num(outcomes['p95'])} "
            f"| {_num(requests['median'])} / {_num(requests['p95'])} | {rules} |"
        )
    lines += [
        "",
        "For contrast, the A/A scenarios against a one-sided two-proportion z-test at alpha "
        f"{p['alpha']} repeated after every outcome (ceiling test plus difference-above-margin "
        "test, same min_samples), and against the guard with no margin:",
        "",
        "| scenario | method | margin | runs | false rollback rate |",
        "| --- | --- | --: | --: | --: |",
    ]
    for c in report["contrasts"]:
        lines.append(
            f"| {c['scenario']} | {c['method']} | {c['margin']:g} | {c['runs']:,} "
            f"| {_pct(c['false_rollback_rate'])} |"
        )
    lines += [
        "",
        "Machine:",
        "",
        f"* {m['nproc']} CPUs, {m['platform']}; load average {m['load_average_1m_at_start']} "
        "when the run started (a shared machine)",
        f"* Python {m['python']}, numpy {m['numpy']}",
        f"* seeds: {seeds}; z-test contrast: {CONTRAST_SEED}",
        "",
        "Reproduce: `.venv/bin/python bench/guard_simulation.py` (`--quick` for a 50-run smoke "
        "run). The same scenarios and seeds are asserted by tests/unit/test_guard_simulation.py "
        "(1,000 runs for the A/A and 50%-failing scenarios, 200 for the others).",
    ]
    (out / "guard_simulation.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per scenario (1000)")
    parser.add_argument("--quick", action="store_true", help="50 runs per scenario, no files")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results)")
    args = parser.parse_args()

    runs = 50 if args.quick else args.runs
    out: Path | None = args.out or (None if args.quick else ROOT / "bench" / "results")
    host = machine()
    policy = GuardConfig()
    results = []
    for scenario in SCENARIOS:
        print(f"{scenario.name}: {runs} runs", flush=True)
        started = time.perf_counter()
        simulated = simulate_scenario(scenario, runs, policy)
        summary = summarize(scenario, simulated, time.perf_counter() - started)
        print("  " + json.dumps(summary), flush=True)
        results.append(summary)
    print("contrast: z-test repeated at every look, A/A", flush=True)
    contrast = contrasts(runs)
    for row in contrast:
        print("  " + json.dumps(row), flush=True)

    report = {
        "benchmark": "guard_simulation",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": host,
        "policy": {
            "ceiling": policy.ceiling,
            "margin": policy.margin,
            "alpha": policy.alpha,
            "min_samples": policy.min_samples,
        },
        "results": results,
        "contrasts": contrast,
    }
    if out is not None:
        write_results(out, report)
        print(f"wrote {out / 'guard_simulation.json'} and .md")
    missed = [r["scenario"] for r in results if not r["met"]]
    if missed:
        print(f"requirement missed: {', '.join(missed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
