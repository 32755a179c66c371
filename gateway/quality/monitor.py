"""Quality in the request path: check each answer against its route's contract, count the
outcome for the guard, and remember the request for late feedback.

The relay calls :meth:`QualityMonitor.judge` with an answer (its text, tool calls and refusal,
:class:`~gateway.quality.answer.Answer`) and
:meth:`QualityMonitor.settle` once per request when it is finished; the guard itself is pure
(:mod:`gateway.quality.guard`) and decides on its own ticks.
"""

from __future__ import annotations

from typing import Any

from gateway.config import GatewayConfig, Route
from gateway.quality.answer import Answer
from gateway.quality.contract import Contract
from gateway.quality.feedback import Attribution, RecentRequests
from gateway.quality.guard import Guard
from gateway.telemetry import Metrics, RequestRecord

__all__ = ["GUARDED_DECISIONS", "QualityMonitor"]

GUARDED_DECISIONS = frozenset({"rollout", "targeted", "failover", "violation", "shadow"})
"""Decisions whose outcomes the guard counts. Overrides (evaluations) and pass-through calls
are left out: they are not the rollout's traffic."""


class QualityMonitor:
    """Contracts of every route, check metrics, the guard's inputs, the feedback memory."""

    def __init__(
        self, config: GatewayConfig, metrics: Metrics, guard: Guard, recent: RecentRequests
    ) -> None:
        self.guard = guard
        self.recent = recent
        self._metrics = metrics
        self.contracts = {
            name: Contract(route.contract)
            for name, route in config.routes.items()
            if route.contract is not None
        }
        self._check_children: dict[tuple[str, str, str, bool], Any] = {}
        for name, contract in self.contracts.items():
            for variant in config.routes[name].variants:
                for check in contract.names:
                    for passed in (True, False):
                        self._check_children[(name, variant, check, passed)] = (
                            metrics.quality_checks.labels(
                                name, variant, check, "pass" if passed else "fail"
                            )
                        )
        self._slo = {
            name: route.guard.latency_slo_s
            for name, route in config.routes.items()
            if route.guard is not None and route.guard.latency_slo_s is not None
        }

    def judge(self, route: str, variant: str, answer: Answer | str | None) -> list[str]:
        """Run the route's checks that apply to one answer (``None``: no answer); count them;
        return the names that failed."""
        contract = self.contracts.get(route)
        if contract is None:
            return []
        failed = []
        children = self._check_children
        for result in contract.check(answer):
            children[(route, variant, result.check, result.passed)].inc()
            if not result.passed:
                failed.append(result.check)
        return failed

    def too_slow(self, route: str, duration_s: float) -> bool:
        """Whether an answer that took ``duration_s`` breaches the route's ``latency_slo_s``."""
        slo = self._slo.get(route)
        return slo is not None and duration_s > slo

    def count_failed_attempt(self, rec: RequestRecord, route: Route) -> None:
        """The candidate's answer was not used (upstream error, or a failed check with
        ``on_violation: fallback``): count it against the candidate now."""
        if rec.pool_exhausted:  # the gateway's saturation, not the candidate's failure
            return
        if rec.rollout_id is not None and rec.decision in GUARDED_DECISIONS:
            self.guard.observe(route.name, rec.rollout_id, "candidate", True)

    def settle(self, rec: RequestRecord, duration_s: float) -> None:
        """Count the finished request's outcome for the guard and remember it for feedback."""
        if rec.route is None or rec.variant is None or rec.role is None:
            return
        failed = bool(rec.checks_failed) or rec.status >= 500 or rec.status == 499
        if self.too_slow(rec.route, duration_s):
            failed = True
        guarded = rec.rollout_id is not None and rec.decision in GUARDED_DECISIONS
        if rec.pool_exhausted:  # the gateway's saturation says nothing about either variant
            guarded = False
        if guarded and rec.status != 499:
            assert rec.rollout_id is not None
            self.guard.observe(rec.route, rec.rollout_id, rec.role, failed)  # type: ignore[arg-type]
        if rec.status < 500:
            self.recent.remember(
                rec.request_id,
                Attribution(
                    route=rec.route,
                    variant=rec.variant,
                    role=rec.role,
                    rollout_id=rec.rollout_id,
                    failed=failed,
                    guarded=guarded,
                    at=self.recent.now(),
                ),
            )

    def feedback(self, request_id: str, negative: bool) -> Attribution:
        """Apply a verdict to a recent request. Raises NotFoundError / ConflictError."""
        item = self.recent.claim(request_id)
        self._metrics.feedback.labels(
            item.route, item.variant, "negative" if negative else "positive"
        ).inc()
        if negative and item.guarded and not item.failed and item.rollout_id and item.role:
            self.guard.fail_after_the_fact(item.route, item.rollout_id, item.role)  # type: ignore[arg-type]
            item.failed = True
        return item
