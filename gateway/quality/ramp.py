"""When the ramp moves: the pure decision (no I/O, no clock of its own).

A route's ``ramp: {steps, min_samples, min_dwell_s}`` raises the candidate's weight step by
step. At each look the guard's ramp asks :func:`decide_ramp` what to do with the route's flag,
given the route-wide outcome counts of the flag's rollout and the time now. The answer:

* ``advance``: move to the next step. All of these hold at the current step: at least
  ``min_samples`` candidate outcomes since the step began (route-wide), at least
  ``min_dwell_s`` seconds since it began, and the candidate is shown **not worse** than the
  fallback: the always-valid upper bound of the candidate's failure rate minus the
  fallback's is below the guard's ``margin``;
* ``start``: stamp the clock of a step that has none (the routes file's first step);
* ``wait``: not yet, with ``why`` and the seconds of dwell left;
* ``complete`` (at the last step), ``paused`` (a person paused it), ``stopped`` (a rollback
  ended it, or it never started): nothing to do.

The bound. The guard's counts are per rollout and every step of a ramp shares the rollout, so
the evidence is the whole ramp's: the upper end of the candidate's time-uniform interval minus
the lower end of the fallback's, each at ``alpha_main / 2`` (the guard's share of ``alpha`` for
its whole-rollout rules, :func:`gateway.quality.late_break.split_alpha`; halves for the two
sides, a union bound, as the regression rule does the other way round). Confidence sequences
hold at every look at once (Howard et al. 2021, :mod:`gateway.quality.stats`), so however often
the ramp looks, the chance that it ever advances a candidate whose failure rate is more than
``margin`` above the fallback's stays below ``alpha_main``. The per-step ``min_samples`` makes
each step see the candidate at its new exposure before the next.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.config import GuardConfig, RampConfig
from gateway.flags.outcomes import OutcomeCounts
from gateway.quality.late_break import split_alpha
from gateway.quality.stats import lower_bound, upper_bound
from gateway.routing import FlagState

__all__ = ["RampMove", "RampState", "decide_ramp", "difference_upper_bound"]

RampState = Literal["ramping", "paused", "complete", "stopped"]
Action = Literal["advance", "start", "wait", "complete", "paused", "stopped"]


class RampMove(msgspec.Struct, frozen=True, kw_only=True):
    """What the ramp does now, and the numbers it decided on.

    ``state`` is the ramp's state as ``GET /admin/routes`` shows it; ``samples`` the candidate
    outcomes at this step, route-wide; ``upper_bound`` the always-valid upper bound of the
    candidate's failure rate minus the fallback's (``None`` before the candidate has outcomes);
    ``dwell_remaining_s`` the seconds the step must still last (the whole ``min_dwell_s`` when
    the step's clock has not started, 0 when complete).
    """

    action: Action
    state: RampState
    why: str
    step: int
    weight: int
    samples: int
    upper_bound: float | None
    dwell_remaining_s: float


def difference_upper_bound(policy: GuardConfig, counts: OutcomeCounts) -> float | None:
    """Upper bound of (candidate failure rate - fallback failure rate), valid at every look at
    once with probability ``1 - alpha_main`` (see the module docstring). ``None`` without
    candidate outcomes. A side without outcomes has the widest interval, [0, 1]."""
    if counts.cand_n <= 0:
        return None
    half = split_alpha(policy.alpha)[0] / 2
    upper = upper_bound(counts.cand_f, counts.cand_n, half)
    lower = lower_bound(counts.fb_f, counts.fb_n, half)
    return round(upper - lower, 6)


def decide_ramp(
    ramp: RampConfig,
    policy: GuardConfig,
    flag: FlagState,
    counts: OutcomeCounts | None,
    now: float,
    *,
    tripped: bool = False,
) -> RampMove:
    """What the ramp of ``flag`` does now (pure).

    Args:
        ramp: the route's ``ramp:``; ``policy`` its ``guard:`` (``margin``, ``alpha``).
        flag: the route's flag (its ``ramp_*`` fields hold the ramp's state).
        counts: the route-wide outcome counts of ``flag.rollout_id`` (``None``: none yet).
        now: Unix seconds.
        tripped: the guard condemned this rollout (its rollback is on the way): never advance.
    """
    counts = counts or OutcomeCounts()
    last = len(ramp.steps) - 1
    step = min(flag.ramp_step or 0, last)
    samples = max(0, counts.cand_n - flag.ramp_step_baseline)
    bound = difference_upper_bound(policy, counts)

    def move(action: Action, state: RampState, why: str, dwell: float) -> RampMove:
        return RampMove(
            action=action,
            state=state,
            why=why,
            step=step,
            weight=flag.weight,
            samples=samples,
            upper_bound=bound,
            dwell_remaining_s=round(dwell, 3),
        )

    if flag.status == "rolled_back":
        return move(
            "stopped", "stopped", "rolled back: the rollback ended the ramp", ramp.min_dwell_s
        )
    if flag.ramp_step is None:
        return move("stopped", "stopped", "not started: ramp resume starts it", ramp.min_dwell_s)
    if flag.ramp_paused:
        return move(
            "paused", "paused", "paused by a person: ramp resume continues", ramp.min_dwell_s
        )
    if flag.ramp_step >= last:
        return move("complete", "complete", "at the last step", 0.0)
    started = flag.ramp_step_started_at
    if started is None:
        return move("start", "ramping", "the step's clock starts now", ramp.min_dwell_s)
    dwell = max(0.0, started + ramp.min_dwell_s - now)
    waits = []
    if tripped:
        waits.append("the guard tripped; its rollback is on the way")
    if not flag.enabled:
        waits.append("the kill switch is off")
    if samples < ramp.min_samples:
        waits.append(f"{samples} of {ramp.min_samples} candidate outcomes at this step")
    if dwell > 0:
        waits.append(f"{dwell:.0f} s of the step's {ramp.min_dwell_s:g} s dwell left")
    if not waits and (bound is None or bound >= policy.margin):
        shown = "none yet" if bound is None else f"{bound:.4f}"
        waits.append(
            f"not yet shown not worse: upper bound of the difference {shown} >= margin "
            f"{policy.margin:g}"
        )
    if waits:
        return move("wait", "ramping", "; ".join(waits), dwell)
    return move(
        "advance",
        "ramping",
        f"not worse: upper bound of the difference {bound:.4f} < margin {policy.margin:g}",
        0.0,
    )
