"""Monte-Carlo runs of the guard's rules on simulated outcome streams (no network).

Each run draws ``requests`` outcomes: each request goes to the candidate with probability
``share`` and fails with the side's rate. The guard looks after *every* outcome (the most
demanding schedule: any peeking the real tick does is a subset of these looks). numpy draws
the streams and finds the looks where a rule could possibly fire (point estimates past the
ceiling or the margin); only those looks run :func:`gateway.quality.guard.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.config import GuardConfig
from gateway.quality.guard import decide_rule

__all__ = ["RunResult", "simulate_run", "simulate_runs"]


@dataclass(frozen=True)
class RunResult:
    """Where a run tripped: the request index and the candidate outcomes so far (or None)."""

    rule: str | None
    request: int | None
    candidate_outcomes: int | None


def simulate_run(
    rng: np.random.Generator,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
) -> RunResult:
    to_candidate = rng.random(requests) < share
    failed = np.where(
        to_candidate,
        rng.random(requests) < candidate_rate,
        rng.random(requests) < fallback_rate,
    )
    cand_n = np.cumsum(to_candidate)
    cand_f = np.cumsum(failed & to_candidate)
    fb_n = np.arange(1, requests + 1) - cand_n
    fb_f = np.cumsum(failed & ~to_candidate)
    with np.errstate(divide="ignore", invalid="ignore"):
        cand_rate = np.where(cand_n > 0, cand_f / np.maximum(cand_n, 1), 0.0)
        fb_rate = np.where(fb_n > 0, fb_f / np.maximum(fb_n, 1), 0.0)
    enough = cand_n >= policy.min_samples
    possible = enough & (
        (cand_rate > policy.ceiling)
        | ((fb_n >= policy.min_samples) & (cand_rate - fb_rate > policy.margin))
    )
    for index in np.flatnonzero(possible):
        rule, _ = decide_rule(
            policy, int(cand_n[index]), int(cand_f[index]), int(fb_n[index]), int(fb_f[index])
        )
        if rule is not None:
            return RunResult(rule, int(index) + 1, int(cand_n[index]))
    return RunResult(None, None, None)


def simulate_runs(
    runs: int,
    policy: GuardConfig,
    *,
    candidate_rate: float,
    fallback_rate: float,
    share: float,
    requests: int,
    seed: int,
) -> list[RunResult]:
    rng = np.random.default_rng(seed)
    return [
        simulate_run(
            rng,
            policy,
            candidate_rate=candidate_rate,
            fallback_rate=fallback_rate,
            share=share,
            requests=requests,
        )
        for _ in range(runs)
    ]
