"""How the ramp climbs, and how it stops: progressive delivery, simulated (docs/concepts.md).

Each run is one route with ``ramp: {steps: [10000, 50000, 100000], min_samples: 200,
min_dwell_s: 600}`` and the default guard (``GuardConfig()``: ceiling 0.20, margin 0.02, alpha
0.05, min_samples 50). Requests arrive at a steady rate; between two looks (every ``look_s``
seconds) the look's requests go to the candidate with probability weight/100000 (a new subject
each) and fail at their side's rate (binomial draws). At every look the real code decides, on
the rollout's cumulative counts, exactly as a replica does:

* the guard: :func:`gateway.quality.guard.decide_rule` (ceiling and regression) and its own
  :class:`gateway.quality.late_break.RecentWindow` (the recent rule); a trip ends the run
  rolled back;
* the ramp: :func:`gateway.quality.ramp.decide_ramp` on a real flag, moved by the real
  :func:`gateway.flags.ramp_changes.start_step` and :func:`~gateway.flags.ramp_changes.advance`;
  a run ends complete when the flag reaches the last step.

Not modelled: replicas and their flush delays (one stream of route-wide counts; the guard's
replica simulation is bench/results/guard_simulation.md), upstream latency, looks more often
than ``look_s`` (the real ramp looks every ``GATEWAY_GUARD_TICK_S``: times here are late by at
most one ``look_s``).

Usage::

    .venv/bin/python bench/ramp_simulation.py            # 1,000 runs per scenario
    .venv/bin/python bench/ramp_simulation.py --runs 50 --out /tmp/ramp   # a quick look

Writes ``bench/results/ramp_simulation.json`` and ``.md`` (or under ``--out``).
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import GuardConfig, RampConfig  # noqa: E402
from gateway.flags import ramp_changes  # noqa: E402
from gateway.flags.outcomes import OutcomeCounts  # noqa: E402
from gateway.quality.guard import decide_rule  # noqa: E402
from gateway.quality.late_break import RecentWindow  # noqa: E402
from gateway.quality.ramp import decide_ramp  # noqa: E402
from gateway.routing import FlagState  # noqa: E402

RAMP = RampConfig(steps=[10_000, 50_000, 100_000], min_samples=200, min_dwell_s=600)
POLICY = GuardConfig()


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate_rate: float
    fallback_rate: float
    rate_rps: float
    look_s: float
    horizon_s: float
    seed: int
    requirement: str


SCENARIOS = (
    Scenario(
        "healthy: candidate 3% vs fallback 5%, 20 req/s",
        0.03,
        0.05,
        20,
        10,
        6 * 3600,
        101,
        "reaches 100% in >= 99% of runs; never rolled back in >= 95%",
    ),
    Scenario(
        "A/A: 5% vs 5%, 20 req/s",
        0.05,
        0.05,
        20,
        15,
        12 * 3600,
        102,
        "reaches 100% in >= 95% of runs",
    ),
    Scenario(
        "5 points worse: 10% vs 5%, 20 req/s",
        0.10,
        0.05,
        20,
        10,
        12 * 3600,
        103,
        "never passes the first step and is rolled back, in >= 99% of runs",
    ),
    Scenario(
        "healthy at low traffic: 3% vs 5%, 1 req/s",
        0.03,
        0.05,
        1,
        60,
        48 * 3600,
        104,
        "reaches 100% (the time each step waits is the finding)",
    ),
    Scenario(
        "A/A at low traffic: 5% vs 5%, 1 req/s",
        0.05,
        0.05,
        1,
        300,
        7 * 86400,
        105,
        "the time each step waits is the finding",
    ),
)


@dataclass
class Run:
    outcome: str  # "complete", "rolled_back" or "timeout"
    seconds: float
    highest_step: int
    step_seconds: list[float]
    candidate_requests: int
    rule: str | None


def simulate_run(s: Scenario, rng: np.random.Generator) -> Run:
    """One run (see the module docstring)."""
    flag = FlagState(route="r", weight=RAMP.steps[0], rollout_id="ro", ramp_step=0)
    recent = RecentWindow(POLICY)
    cn = cf = fn = ff = 0
    now = 0.0
    step_started = 0.0
    step_seconds: list[float] = []
    per_look = s.rate_rps * s.look_s
    # the routes file's first step: the guard stamps its clock at the first look
    flag = ramp_changes.start_step(flag, ramp=RAMP, baseline=0, now=now)
    while now < s.horizon_s:
        now += s.look_s
        n = rng.poisson(per_look)
        to_candidate = int(rng.binomial(n, flag.weight / 100_000))
        cn += to_candidate
        cf += int(rng.binomial(to_candidate, s.candidate_rate))
        fn += n - to_candidate
        ff += int(rng.binomial(n - to_candidate, s.fallback_rate))
        rule, _ = decide_rule(POLICY, cn, cf, fn, ff)
        fired = recent.look(cn, cf)
        if rule is not None or fired is not None:
            step_seconds.append(now - step_started)
            return Run("rolled_back", now, flag.ramp_step or 0, step_seconds, cn, rule or fired)
        move = decide_ramp(RAMP, POLICY, flag, OutcomeCounts(cn, cf, fn, ff), now)
        if move.action == "advance":
            flag = ramp_changes.advance(flag, ramp=RAMP, baseline=cn, now=now, reason="sim")
            step_seconds.append(now - step_started)
            step_started = now
            if flag.ramp_step == len(RAMP.steps) - 1:
                return Run("complete", now, len(RAMP.steps) - 1, step_seconds, cn, None)
    step_seconds.append(now - step_started)
    return Run("timeout", now, flag.ramp_step or 0, step_seconds, cn, None)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "median": statistics.median(values) if values else None,
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


def summarize(s: Scenario, runs: list[Run], seconds: float) -> dict[str, Any]:
    complete = [r for r in runs if r.outcome == "complete"]
    rolled = [r for r in runs if r.outcome == "rolled_back"]
    passed_first = [r for r in runs if r.highest_step >= 1]
    step_times = [
        _stats(
            [
                r.step_seconds[i]
                for r in runs
                if len(r.step_seconds) > i
                and (r.outcome != "rolled_back" or i < len(r.step_seconds) - 1)
                and not (r.outcome == "timeout" and i == len(r.step_seconds) - 1)
            ]
        )
        for i in range(len(RAMP.steps) - 1)
    ]
    rules: dict[str, int] = {}
    for r in rolled:
        rules[str(r.rule)] = rules.get(str(r.rule), 0) + 1
    return {
        "scenario": s.name,
        "candidate_rate": s.candidate_rate,
        "fallback_rate": s.fallback_rate,
        "rate_rps": s.rate_rps,
        "look_s": s.look_s,
        "horizon_s": s.horizon_s,
        "seed": s.seed,
        "runs": len(runs),
        "requirement": s.requirement,
        "reached_100": len(complete) / len(runs),
        "passed_first_step": len(passed_first) / len(runs),
        "rolled_back": len(rolled) / len(runs),
        "rolled_back_at_step": {
            str(i): sum(r.highest_step == i for r in rolled) for i in range(len(RAMP.steps))
        },
        "timed_out": sum(r.outcome == "timeout" for r in runs) / len(runs),
        "seconds_to_100": _stats([r.seconds for r in complete]),
        "seconds_at_step": step_times,
        "seconds_to_rollback": _stats([r.seconds for r in rolled]),
        "candidate_requests_before_rollback": _stats([float(r.candidate_requests) for r in rolled]),
        "rules": rules,
        "cpu_seconds": round(seconds, 1),
    }


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return done.stdout.strip()


def _min(value: float | None) -> str:
    return "-" if value is None else f"{value / 60:,.1f}"


def _triple_min(stats: dict[str, float | None]) -> str:
    return f"{_min(stats['median'])} / {_min(stats['p95'])} / {_min(stats['max'])}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def write_results(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ramp_simulation.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Ramp simulation: progressive delivery",
        "",
        f"Measured {report['measured_at']} by `{report['command']}` (commit {m['git_commit']}, "
        f"Python {m['python']}, numpy {m['numpy']}), {report['runs']:,} runs per scenario, "
        f"{report['seconds']:,.0f} s in all.",
        "",
        "The route: `ramp: {steps: [10000, 50000, 100000], min_samples: 200, min_dwell_s: 600}` "
        "(10% -> 50% -> 100%) and the default guard (`GuardConfig()`: ceiling 0.20, margin "
        "0.02, alpha 0.05, min_samples 50). Requests arrive at the scenario's rate (Poisson "
        "per look), each to the candidate with probability weight/100000, failing at its "
        "side's rate. At every look (every *look* seconds) the real code decides on the "
        "rollout's cumulative counts: the guard's `decide_rule` and `RecentWindow` (a trip "
        "ends the run rolled back), then the ramp's `decide_ramp`, whose `advance` is applied "
        "with the real `ramp_changes.advance`. One stream of route-wide counts: replicas and "
        "their flush delays are the guard simulation's subject "
        "([guard_simulation.md](guard_simulation.md)); times here are late by at most one "
        "look.",
        "",
        "| scenario | look every | runs | reached 100% | passed the first step "
        "| rolled back (at step 1 / 2 / 3) "
        "| time to 100%, minutes (median / p95 / max) "
        "| time at step 1, minutes (median / p95 / max) "
        "| time at step 2, minutes "
        "| time to rollback, minutes "
        "| candidate requests before rollback (median / p95) | requirement |",
        "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- |",
    ]
    for r in report["results"]:
        at = r["rolled_back_at_step"]
        cand = r["candidate_requests_before_rollback"]
        lines.append(
            f"| {r['scenario']} | {r['look_s']:g} s | {r['runs']:,} | {r['reached_100']:.1%} "
            f"| {r['passed_first_step']:.1%} "
            f"| {r['rolled_back']:.1%} ({at['0']} / {at['1']} / {at['2']}) "
            f"| {_triple_min(r['seconds_to_100'])} | {_triple_min(r['seconds_at_step'][0])} "
            f"| {_triple_min(r['seconds_at_step'][1])} | {_triple_min(r['seconds_to_rollback'])} "
            f"| {_num(cand['median'])} / {_num(cand['p95'])} | {r['requirement']} |"
        )
    lines += [
        "",
        "Reading it:",
        "",
        "* Time at a step is from the step's start to the advance, over the runs that left it. "
        "A step lasts at least `min_dwell_s` (10 minutes) and until `min_samples` (200) "
        "candidate outcomes; the first step also lasts until the evidence shows the candidate "
        "not worse than the fallback by the margin (0.02): the always-valid upper bound of "
        "the difference must fall below it, which at 5% failure rates takes thousands of "
        "candidate outcomes. Later steps inherit that evidence (one rollout for the whole "
        "ramp), so they mostly wait for their dwell and samples.",
        "* At low traffic the evidence sets the pace of the first step: at 1 request/s a 10% "
        "step sees 0.1 candidate answers a second, so its 200 samples alone take 33 minutes, "
        "and showing 'not worse' by 0.02 takes hours; the later steps wait about their dwell.",
        "* A candidate 5 points worse is never shown not worse, so it never leaves the first "
        "step; the guard's regression rule rolls it back.",
        "",
        "Seeds: " + "; ".join(f"{r['scenario']}: {r['seed']}" for r in report["results"]) + ".",
    ]
    (out / "ramp_simulation.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    for scenario in SCENARIOS:
        rng = np.random.default_rng(scenario.seed)
        t = time.perf_counter()
        runs = [simulate_run(scenario, rng) for _ in range(args.runs)]
        row = summarize(scenario, runs, time.perf_counter() - t)
        print(json.dumps(row), flush=True)
        results.append(row)
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+uncommitted changes"
    report = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": ".venv/bin/python bench/ramp_simulation.py"
        + ("" if args.runs == 1_000 else f" --runs {args.runs}"),
        "runs": args.runs,
        "seconds": time.perf_counter() - started,
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "git_commit": commit or None,
        },
        "ramp": RAMP.model_dump(),
        "policy": POLICY.model_dump(),
        "results": results,
    }
    write_results(args.out, report)


if __name__ == "__main__":
    main()
