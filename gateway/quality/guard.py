"""The guard: per route and rollout, count candidate and fallback outcomes and decide whether
the candidate must be rolled back (DESIGN.md section 5). Pure and tick-driven: ``observe``
counts, ``tick`` decides; the caller does the flag write, the webhook and the logging.

An outcome *fails* when its answer failed a contract check, its upstream failed (after
failover, the candidate's failure still counts against the candidate), it took longer than the
route's ``latency_slo_s``, or feedback later called it wrong.

Rules, checked with time-uniform confidence sequences (:mod:`gateway.quality.stats`), so the
guard may look after every outcome without inflating its error rate. The route's ``alpha`` is
split (:func:`gateway.quality.late_break.split_alpha`): ``alpha_main`` for the two
whole-rollout rules, ``alpha_recent`` for the late-break windows, so a healthy candidate is
rolled back with probability at most ``alpha`` in all:

* **ceiling**: after ``min_samples`` candidate outcomes, the candidate's failure rate is above
  ``ceiling`` with confidence ``1 - alpha_main`` (its interval's lower bound is above the
  ceiling);
* **regression**: after ``min_samples`` outcomes on each side, the candidate's rate minus the
  fallback's is above ``margin`` with confidence ``1 - alpha_main`` (lower bound of the
  candidate's ``1 - alpha_main/2`` interval minus the upper bound of the fallback's, a union
  bound);
* **recent**: after ``min_samples`` candidate outcomes, the failure rate of a window of recent
  candidate outcomes is above ``ceiling`` with confidence (windows restarted every few dozen
  outcomes, each with its share of ``alpha_recent``: :mod:`gateway.quality.late_break`), so a
  candidate that breaks after a long healthy run is caught quickly.

A verdict is latched: once a rollout trips, the guard reports it until a release starts a new
rollout id with clean counters. ``mode: observe`` records verdicts without acting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.config import GuardConfig, Route
from gateway.flags.outcomes import ZERO, OutcomeCounts, RolloutKey
from gateway.quality.late_break import RecentEvidence, RecentWindow, describe_recent, split_alpha
from gateway.quality.stats import (
    confidence_interval,
    log_mixture_martingale,
    lower_bound,
    upper_bound,
)

__all__ = ["Guard", "Rule", "SideStats", "Trip", "Verdict", "decide_rule", "evaluate"]

Role = Literal["candidate", "fallback"]
Rule = Literal["ceiling", "regression", "recent"]


class SideStats(msgspec.Struct):
    """One side's counts and its confidence interval (at ``alpha_main``) for the failure rate."""

    n: int
    failures: int
    rate: float | None
    lower: float
    upper: float


class Verdict(msgspec.Struct):
    """What the guard concluded from the counts, with the evidence.

    ``alpha`` is the whole-rollout rules' share (``alpha_main``): the candidate's and the
    fallback's bounds are at ``alpha``, the regression rule's at ``alpha / 2`` each.
    ``alpha_route`` is the route's configured alpha (``alpha_main + alpha_recent``).
    ``recent`` is the late-break window's evidence: the window that tripped when ``rule`` is
    ``"recent"``, else the window closest to tripping if the caller passed one.
    """

    rule: Rule | None
    why: str
    candidate: SideStats
    fallback: SideStats
    difference_lower: float | None
    ceiling: float
    margin: float
    alpha: float
    min_samples: int
    alpha_route: float
    recent: RecentEvidence | None = None


def _side(failures: int, n: int, alpha: float) -> SideStats:
    interval = confidence_interval(failures, n, alpha)
    return SideStats(
        n=n,
        failures=failures,
        rate=None if n == 0 else failures / n,
        lower=round(interval.lower, 6),
        upper=round(interval.upper, 6),
    )


def decide_rule(
    policy: GuardConfig, cand_n: int, cand_f: int, fb_n: int, fb_f: int
) -> tuple[Literal["ceiling", "regression"] | None, str]:
    """Apply the two whole-rollout rules to one rollout's counts (pure), at ``alpha_main``;
    return the rule that fired and why. (The ``recent`` rule needs the history of looks: it
    is :class:`gateway.quality.late_break.RecentWindow`.)

    Cheap tests come first: no bound is computed unless the point estimates could trip a
    rule, and the fallback's bound only when the candidate's leaves room, so a healthy rollout
    costs a few comparisons per look.
    """
    ceiling, margin, need = policy.ceiling, policy.margin, policy.min_samples
    alpha = split_alpha(policy.alpha)[0]
    if cand_n < need:
        return None, f"candidate has {cand_n} outcomes; needs {need} before any verdict"
    cand_rate = cand_f / cand_n
    if cand_rate > ceiling and log_mixture_martingale(cand_f, cand_n, ceiling) >= _log_inv(alpha):
        return "ceiling", f"candidate failure rate is above the ceiling {ceiling:g} with confidence"
    if fb_n < need:
        return None, (
            f"candidate not above the ceiling with confidence; fallback has {fb_n} outcomes, "
            f"needs {need} to compare"
        )
    fb_rate = fb_f / fb_n
    if cand_rate - fb_rate <= margin:
        return None, f"candidate is not worse than the fallback by more than {margin:g}"
    lower = lower_bound(cand_f, cand_n, alpha / 2)
    if lower - fb_rate > margin and lower - upper_bound(fb_f, fb_n, alpha / 2) > margin:
        return "regression", (
            f"candidate is worse than the fallback by more than {margin:g} with confidence"
        )
    return None, "candidate may be worse than the fallback; not yet with confidence"


def evaluate(
    policy: GuardConfig,
    cand_n: int,
    cand_f: int,
    fb_n: int,
    fb_f: int,
    recent: RecentEvidence | None = None,
) -> Verdict:
    """:func:`decide_rule` plus the evidence: counts, rates and bounds of both sides.

    ``recent``: the late-break detector's evidence (``RecentWindow.fired`` or
    ``RecentWindow.evidence()``); when no whole-rollout rule fires and ``recent.tripped``, the
    verdict's rule is ``"recent"``. A whole-rollout rule that fires takes precedence.
    """
    rule: Rule | None
    rule, why = decide_rule(policy, cand_n, cand_f, fb_n, fb_f)
    if rule is None and recent is not None and recent.tripped:
        rule, why = "recent", describe_recent(recent)
    alpha = split_alpha(policy.alpha)[0]
    diff = None
    if cand_n and fb_n:
        diff = round(lower_bound(cand_f, cand_n, alpha / 2) - upper_bound(fb_f, fb_n, alpha / 2), 6)
    return Verdict(
        rule=rule,
        why=why,
        candidate=_side(cand_f, cand_n, alpha),
        fallback=_side(fb_f, fb_n, alpha),
        difference_lower=diff,
        ceiling=policy.ceiling,
        margin=policy.margin,
        alpha=alpha,
        min_samples=policy.min_samples,
        alpha_route=policy.alpha,
        recent=recent,
    )


def _log_inv(alpha: float) -> float:
    return math.log(1 / alpha)


@dataclass(slots=True)
class _Rollout:
    """One rollout's evidence on this replica.

    ``own`` is this replica's cumulative count; ``base_total`` the route-wide totals read at
    the last exchange with the store, which included ``base_own`` (this replica's count as then
    written). What the guard looks at is ``base_total + own - base_own``: every replica's
    outcomes up to the last exchange plus this replica's since. With the store down, the
    exchange stops and the view grows by this replica's own outcomes alone.
    """

    rollout_id: str
    recent: RecentWindow
    own: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    base_total: OutcomeCounts = ZERO
    base_own: OutcomeCounts = ZERO
    shadow: dict[str, int] = field(default_factory=lambda: {"agree": 0, "disagree": 0})
    dirty: bool = False
    tripped: Verdict | None = None
    acted: bool = False

    def view(self) -> OutcomeCounts:
        own, base, total = self.own, self.base_own, self.base_total
        return OutcomeCounts(
            total.cand_n + own[0] - base.cand_n,
            total.cand_f + own[1] - base.cand_f,
            total.fb_n + own[2] - base.fb_n,
            total.fb_f + own[3] - base.fb_f,
        )


@dataclass(frozen=True, slots=True)
class Trip:
    """A rollback the caller must perform: route, rollout and the evidence."""

    route: str
    rollout_id: str
    verdict: Verdict


class Guard:
    """Counts and verdicts for every route that has a guard (``mode`` not ``off``).

    The request path calls :meth:`observe`; the evidence sync calls :meth:`own_counts` and
    :meth:`merge_totals` to share counts route-wide (:mod:`gateway.flags.outcomes`); the
    runner calls :meth:`tick`. All of it runs on the event loop: no locks, no I/O.
    """

    def __init__(self, routes: dict[str, Route]) -> None:
        self._policies: dict[str, GuardConfig] = {
            name: route.guard
            for name, route in routes.items()
            if route.guard is not None and route.guard.mode != "off" and not route.passthrough
        }
        self._rollouts: dict[str, _Rollout] = {}

    def watches(self, route: str) -> bool:
        return route in self._policies

    def _new_rollout(self, route: str, rollout_id: str) -> _Rollout:
        return _Rollout(rollout_id, RecentWindow(self._policies[route]))

    def start_rollout(self, route: str, rollout_id: str) -> None:
        """Begin clean counters for ``rollout_id`` (called when a release changes it)."""
        if route in self._policies:
            current = self._rollouts.get(route)
            if current is None or current.rollout_id != rollout_id:
                self._rollouts[route] = self._new_rollout(route, rollout_id)

    def observe(self, route: str, rollout_id: str, role: Role, failed: bool) -> None:
        """Count one outcome of ``role`` in the route's current rollout."""
        if route not in self._policies:
            return
        current = self._rollouts.get(route)
        if current is None:
            current = self._rollouts[route] = self._new_rollout(route, rollout_id)
        elif current.rollout_id != rollout_id:
            return  # an outcome of an older (or not yet seen) rollout: not this rollout's
        own = current.own
        if role == "candidate":
            own[0] += 1
            own[1] += failed
        else:
            own[2] += 1
            own[3] += failed
        current.dirty = True

    def fail_after_the_fact(self, route: str, rollout_id: str, role: Role) -> None:
        """Turn an already counted success into a failure (negative feedback)."""
        current = self._rollouts.get(route)
        if current is None or current.rollout_id != rollout_id:
            return
        own = current.own
        if role == "candidate":
            own[1] = min(own[1] + 1, own[0])
        else:
            own[3] = min(own[3] + 1, own[2])
        current.dirty = True

    def observe_shadow(self, route: str, rollout_id: str, agreed: bool) -> None:
        current = self._rollouts.get(route)
        if current is not None and current.rollout_id == rollout_id:
            current.shadow["agree" if agreed else "disagree"] += 1

    # -- route-wide evidence -----------------------------------------------------------------

    def own_counts(self) -> dict[RolloutKey, OutcomeCounts]:
        """This replica's cumulative counts of every current rollout, to publish."""
        return {
            (route, current.rollout_id): OutcomeCounts(*current.own)
            for route, current in self._rollouts.items()
        }

    def merge_totals(
        self, sent: dict[RolloutKey, OutcomeCounts], totals: dict[RolloutKey, OutcomeCounts]
    ) -> None:
        """Take the route-wide ``totals`` an exchange returned for the ``sent`` own counts.

        Totals never go backwards for the guard: a store that lost other replicas' counts
        (restarted empty) shows less until they publish again, and until then the guard keeps
        what it had seen, advanced by this replica's own new outcomes.
        """
        for (route, rollout_id), total in totals.items():
            current = self._rollouts.get(route)
            if current is None or current.rollout_id != rollout_id:
                continue  # the rollout changed while the exchange was in flight
            own = sent.get((route, rollout_id), current.base_own)
            seen = current.base_total.plus(own.minus(current.base_own))
            current.base_total = total.at_least(seen)
            current.base_own = own
            current.dirty = True

    def counts(self, route: str) -> OutcomeCounts | None:
        """The route-wide view of the current rollout (``None`` without a guard or outcomes)."""
        current = self._rollouts.get(route)
        return None if current is None else current.view()

    def rollout_counts(self, route: str, rollout_id: str) -> OutcomeCounts | None:
        """The route-wide view of ``rollout_id``; ``None`` unless it is the route's current
        rollout here (the ramp must not decide on another rollout's counts)."""
        current = self._rollouts.get(route)
        if current is None or current.rollout_id != rollout_id:
            return None
        return current.view()

    # -- decisions -------------------------------------------------------------------------

    def tick(self) -> list[Trip]:
        """Evaluate every route with new outcomes; return the rollbacks to perform now.

        A route in ``observe`` mode gets its verdict recorded but is never returned.
        A trip is returned once per rollout (``acted``), however many ticks follow.
        """
        trips = []
        for route, current in self._rollouts.items():
            if not current.dirty:
                continue
            current.dirty = False
            policy = self._policies[route]
            if current.tripped is None:
                counts = current.view()
                rule, _ = decide_rule(policy, *counts)
                # The recent windows must see every look (not short-circuited by the rule).
                recent = current.recent.look(counts.cand_n, counts.cand_f)
                if rule is not None or recent is not None:
                    current.tripped = evaluate(policy, *counts, recent=current.recent.fired)
            if current.tripped is not None and not current.acted and policy.mode == "enforce":
                trips.append(Trip(route, current.rollout_id, current.tripped))
        return trips

    def acted(self, route: str, rollout_id: str) -> None:
        """The caller performed (or found already performed) the rollback of this rollout."""
        current = self._rollouts.get(route)
        if current is not None and current.rollout_id == rollout_id:
            current.acted = True

    def state(self, route: str) -> dict[str, Any] | None:
        """The guard's state for ``GET /admin/routes``: route-wide counts, bounds, verdict and
        why."""
        policy = self._policies.get(route)
        if policy is None:
            return None
        current = self._rollouts.get(route)
        if current is None:
            return {"mode": policy.mode, "rollout_id": None, "status": "no outcomes yet"}
        verdict = current.tripped or evaluate(
            policy, *current.view(), recent=current.recent.evidence()
        )
        status = "tripped" if current.tripped else "watching"
        return {
            "mode": policy.mode,
            "rollout_id": current.rollout_id,
            "status": status,
            "verdict": msgspec.to_builtins(verdict),
            "shadow": dict(current.shadow),
            "own_outcomes": dict(zip(OutcomeCounts._fields, current.own, strict=True)),
        }
