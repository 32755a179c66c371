"""The guard's clock and hands: every ``GATEWAY_GUARD_TICK_S`` it asks the pure guard for
verdicts and performs the rollbacks it returns, as a flag write through the flag service (the
same path as a person's: versioned, audited with the evidence, propagated to every replica),
then logs a warning and POSTs the optional webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import msgspec

from gateway.errors import ConflictError, GatewayError
from gateway.flags.service import FlagService
from gateway.quality.guard import Guard, Trip, Verdict
from gateway.quality.stats import lower_bound, upper_bound
from gateway.routing import FlagState

__all__ = ["GuardRunner", "describe"]


def describe(verdict: Verdict) -> str:
    """The audit reason of a guard rollback, with the numbers that decided it.

    The regression rule compares bounds at ``alpha / 2`` each (a union bound), so those are the
    bounds quoted for it; the ceiling rule uses the candidate's bound at ``alpha``.
    """
    cand, fb = verdict.candidate, verdict.fallback
    rate = f"candidate failed {cand.failures}/{cand.n} ({(cand.rate or 0):.1%}"
    if verdict.rule == "ceiling":
        return (
            f"guard: ceiling rule: {rate}, lower bound {cand.lower:.1%}) > ceiling "
            f"{verdict.ceiling:.1%} at alpha {verdict.alpha:g}"
        )
    half = verdict.alpha / 2
    lower = lower_bound(cand.failures, cand.n, half)
    upper = upper_bound(fb.failures, fb.n, half)
    return (
        f"guard: regression rule: {rate}, lower bound {lower:.1%}) vs fallback "
        f"{fb.failures}/{fb.n} ({(fb.rate or 0):.1%}, upper bound {upper:.1%}): difference >= "
        f"{lower - upper:.1%} > margin {verdict.margin:.1%} at alpha {verdict.alpha:g}"
    )


class GuardRunner:
    """Ticks the guard and acts on its trips."""

    def __init__(
        self,
        guard: Guard,
        flags: FlagService,
        logger: Any,
        *,
        tick_s: float,
        webhook_url: str | None = None,
    ) -> None:
        self._guard = guard
        self._flags = flags
        self._log = logger
        self._tick_s = tick_s
        self._webhook_url = webhook_url
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        flags.subscribe(self._on_flag_change)

    def _on_flag_change(self, old: FlagState | None, new: FlagState) -> None:
        if old is None or old.rollout_id != new.rollout_id:
            self._guard.start_rollout(new.route, new.rollout_id)

    async def start(self) -> None:
        for route, state in self._flags.all().items():
            self._guard.start_rollout(route, state.rollout_id)
        if self._webhook_url:
            self._http = httpx.AsyncClient(timeout=5.0)
        self._task = asyncio.create_task(self._loop(), name="guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                for trip in self._guard.tick():
                    await self.act(trip)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a bad webhook URL must not stop the guard
                self._log.error("guard.tick_failed", error=type(exc).__name__, detail=str(exc))

    async def act(self, trip: Trip) -> None:
        """Roll the route back for ``trip`` (once per rollout); retry next tick on failure."""
        current = self._flags.flag(trip.route)
        if current is None or current.rollout_id != trip.rollout_id:
            self._guard.acted(trip.route, trip.rollout_id)  # a newer rollout: moot
            return
        if current.status == "rolled_back":
            self._guard.acted(trip.route, trip.rollout_id)
            return
        evidence = msgspec.to_builtins(trip.verdict)
        evidence["rollout_id"] = trip.rollout_id
        reason = describe(trip.verdict)
        try:
            state = await self._flags.rollback(
                trip.route,
                actor="guard",
                reason=reason,
                trigger="guard",
                evidence=evidence,
                # CAS on the version checked above: never roll back a rollout that replaced
                # trip.rollout_id in the store after this replica's snapshot was taken.
                expected_version=current.version,
            )
        except ConflictError as exc:
            now = exc.current
            if isinstance(now, FlagState) and (
                now.status == "rolled_back" or now.rollout_id != trip.rollout_id
            ):
                self._guard.acted(trip.route, trip.rollout_id)  # rolled back or replaced first
            else:  # a concurrent write (a weight change...): the rollout still runs; retry
                self._log.warning("guard.rollback_conflict", route=trip.route)
                self._guard.retry(trip.route, trip.rollout_id)
            return
        except GatewayError as exc:
            self._log.error("guard.rollback_failed", route=trip.route, error=exc.message)
            self._guard.retry(trip.route, trip.rollout_id)
            return
        self._guard.acted(trip.route, trip.rollout_id)
        self._log.warning(
            "guard.rollback",
            route=trip.route,
            rollout_id=trip.rollout_id,
            rule=trip.verdict.rule,
            version=state.version,
            evidence=evidence,
        )
        if self._http is not None and self._webhook_url:
            notice = {
                "event": "gateway.guard.rollback",
                "route": trip.route,
                "rollout_id": trip.rollout_id,
                "flag_version": state.version,
                "reason": reason,
                "evidence": evidence,
            }
            try:
                response = await self._http.post(self._webhook_url, json=notice)
                response.raise_for_status()
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                self._log.error("guard.webhook_failed", route=trip.route, error=type(exc).__name__)
