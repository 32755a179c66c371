"""The guard's clock and hands, three tasks per replica:

* **evidence sync** (every ``GATEWAY_GUARD_FLUSH_S``): publish this replica's outcome counts
  to the flag store and read back the route-wide totals (:mod:`gateway.flags.outcomes`), so
  every replica's guard decides on the same stream of outcomes; counts that did not change
  since this replica wrote them are only read, and written again once per :data:`REWRITE_S`
  (an idle replica does not write the same numbers 50 times a second);
* **ticks** (after every exchange, and every ``GATEWAY_GUARD_TICK_S`` for this replica's own
  outcomes while the store is away): ask the pure guard for verdicts; a trip latches
  the route on its fallback on this replica at once (:class:`~gateway.quality.latch.LatchedFlags`)
  and queues the rollback write; the tick never waits on the store;
* **rollback writer**: performs each queued rollback as a flag write through the flag service
  (the same path as a person's: compare-and-set on the version the guard saw, audited with the
  route-wide evidence and the replica's id, propagated to every replica), retrying with backoff
  while the store is down, then logs a warning and POSTs the optional webhook.

Many replicas tripping on the same totals write one rollback: the first write wins the
compare-and-set, the others find the flag rolled back and stand down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from gateway.errors import ConflictError, GatewayError, StoreUnavailableError
from gateway.flags.outcomes import OutcomeCounts, OutcomeStore, RolloutKey
from gateway.flags.service import FlagService
from gateway.quality.guard import Guard, Trip, Verdict
from gateway.quality.latch import LatchedFlags
from gateway.quality.late_break import describe_recent
from gateway.quality.stats import lower_bound, upper_bound
from gateway.routing import FlagState
from gateway.tasks import cancel_and_wait
from gateway.telemetry import Metrics

__all__ = ["GuardRunner", "describe"]

_MAX_BACKOFF_S = 2.0
REWRITE_S = 1.0
"""Counts that did not change since this replica last wrote them are read, not written again,
for this long: an idle replica writes once a second instead of every exchange (a store that
lost its data gets an idle replica's share back within that second)."""


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
    if verdict.rule == "recent" and verdict.recent is not None:
        return "guard: recent rule: " + describe_recent(verdict.recent)
    half = verdict.alpha / 2
    lower = lower_bound(cand.failures, cand.n, half)
    upper = upper_bound(fb.failures, fb.n, half)
    return (
        f"guard: regression rule: {rate}, lower bound {lower:.1%}) vs fallback "
        f"{fb.failures}/{fb.n} ({(fb.rate or 0):.1%}, upper bound {upper:.1%}): difference >= "
        f"{lower - upper:.1%} > margin {verdict.margin:.1%} at alpha {verdict.alpha:g}"
    )


class GuardRunner:
    """Shares the evidence, ticks the guard, latches and writes its rollbacks."""

    def __init__(
        self,
        guard: Guard,
        flags: FlagService,
        latch: LatchedFlags,
        metrics: Metrics,
        logger: Any,
        *,
        replica: str,
        tick_s: float,
        flush_s: float,
        outcomes: OutcomeStore | None = None,
        webhook_url: str | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._guard = guard
        self._flags = flags
        self._latch = latch
        self._metrics = metrics
        self._log = logger
        self._replica = replica
        self._tick_s = tick_s
        self._flush_s = flush_s
        self._outcomes = outcomes
        self._webhook_url = webhook_url
        self._sleep = sleep
        self._clock = clock
        self._written: dict[RolloutKey, tuple[OutcomeCounts, float]] = {}
        """Per rollout: the own counts last written and when (:data:`REWRITE_S`)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self._pending: dict[str, Trip] = {}
        self._wake = asyncio.Event()
        self._evidence_error: str | None = "no exchange yet" if outcomes is not None else None
        self._route_gauges: set[tuple[str, str]] = set()
        flags.subscribe(self._on_flag_change)

    def _on_flag_change(self, old: FlagState | None, new: FlagState) -> None:
        if old is None or old.rollout_id != new.rollout_id:
            self._guard.start_rollout(new.route, new.rollout_id)
            if old is not None:
                self._latch.forget(new.route, old.rollout_id)
                pending = self._pending.get(new.route)
                if pending is not None and pending.rollout_id != new.rollout_id:
                    del self._pending[new.route]  # replaced by a newer rollout: moot
                    self._metrics.guard_pending_rollbacks.labels(new.route).set(0)

    async def start(self) -> None:
        for route, state in self._flags.all().items():
            self._guard.start_rollout(route, state.rollout_id)
        if self._webhook_url:
            self._http = httpx.AsyncClient(timeout=5.0)
        self._tasks = [asyncio.create_task(self._tick_loop(), name="guard-tick")]
        self._tasks.append(asyncio.create_task(self._write_loop(), name="guard-rollback"))
        if self._outcomes is not None:
            self._tasks.append(asyncio.create_task(self._sync_loop(), name="guard-evidence"))

    async def stop(self) -> None:
        for task in self._tasks:
            if not await cancel_and_wait(task):
                self._log.error("guard.task_did_not_stop", task=task.get_name())
        if self._outcomes is not None:
            await self._outcomes.aclose()
        if self._http is not None:
            await self._http.aclose()

    @property
    def evidence_route_wide(self) -> bool:
        """Whether the last exchange of outcome counts with the store worked (the ramp advances
        only then)."""
        return self._outcomes is None or self._evidence_error is None

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: whether the evidence is route-wide, and rollbacks not yet written."""
        return {
            "evidence": "route_wide" if self._evidence_error is None else "this_replica",
            "evidence_error": self._evidence_error,
            "pending_rollbacks": sorted(self._pending),
        }

    # -- evidence ----------------------------------------------------------------------------

    async def sync_once(self) -> None:
        """Publish this replica's counts and take the route-wide totals (one exchange).

        Raises:
            StoreUnavailableError: the store cannot be reached (the counts stay local).
        """
        assert self._outcomes is not None
        own = self._guard.own_counts()
        if not own:
            return
        now = self._clock()
        written = self._written
        changed = {
            key: counts
            for key, counts in own.items()
            if (last := written.get(key)) is None or last[0] != counts or now - last[1] >= REWRITE_S
        }
        totals = await self._outcomes.exchange(self._replica, changed, own.keys())
        for key, counts in changed.items():
            written[key] = (counts, now)
        if len(written) > len(own):  # forget rollouts that are no longer current
            for key in [key for key in written if key not in own]:
                del written[key]
        self._guard.merge_totals(changed, totals)
        self._exchanged()

    def _exchanged(self) -> None:
        """An exchange worked: the evidence is route-wide (again)."""
        if self._evidence_error is not None:
            self._log.info("guard.evidence_route_wide")
        self._evidence_error = None
        self._metrics.guard_evidence_up.set(1)

    async def _sync_loop(self) -> None:
        delay = self._flush_s
        while True:
            await self._sleep(delay)
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # store down, or a bug: keep counting locally, retry
                message = exc.message if isinstance(exc, GatewayError) else type(exc).__name__
                if self._evidence_error != message:
                    self._log.warning("guard.evidence_local", reason=message)
                self._evidence_error = message
                self._metrics.guard_evidence_up.set(0)
                delay = min(max(delay * 2, self._flush_s), _MAX_BACKOFF_S)
                continue
            self._exchanged()
            delay = self._flush_s
            self._tick_safely()  # decide on fresh totals at once, not up to a tick later

    # -- decisions -----------------------------------------------------------------------------

    def tick(self) -> list[Trip]:
        """One look: latch and queue every trip; refresh the route-health gauges."""
        trips = self._guard.tick()
        for trip in trips:
            self._guard.acted(trip.route, trip.rollout_id)  # the writer owns it from now on
            current = self._flags.flag(trip.route)
            if current is None or current.rollout_id != trip.rollout_id:
                continue  # a newer rollout replaced the one that tripped: moot
            if current.status == "rolled_back":
                continue
            self._latch.latch(trip.route, trip.rollout_id)
            self._pending[trip.route] = trip
            self._metrics.guard_pending_rollbacks.labels(trip.route).set(1)
            self._log.warning(
                "guard.tripped",
                route=trip.route,
                rollout_id=trip.rollout_id,
                rule=trip.verdict.rule,
                replica=self._replica,
            )
            self._wake.set()
        self._update_gauges()
        return trips

    def _update_gauges(self) -> None:
        metrics = self._metrics
        for route in self._flags.all():
            counts = self._guard.counts(route)
            if counts is None:
                continue
            sides = (
                ("candidate", counts.cand_n, counts.cand_f),
                ("fallback", counts.fb_n, counts.fb_f),
            )
            for role, n, failed in sides:
                metrics.guard_outcomes.labels(route, role).set(n)
                key = (route, role)
                if n:
                    metrics.guard_failure_ratio.labels(route, role).set(failed / n)
                    self._route_gauges.add(key)
                elif key in self._route_gauges:
                    metrics.forget_guard_failure_ratio(route, role)
                    self._route_gauges.discard(key)
            total = counts.cand_n + counts.fb_n
            if total:
                ratio = (counts.cand_f + counts.fb_f) / total
                metrics.route_failure_ratio.labels(route).set(ratio)

    def _tick_safely(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # a bug must not stop the guard
            self._log.error("guard.tick_failed", error=type(exc).__name__, detail=str(exc))

    async def _tick_loop(self) -> None:
        while True:
            await self._sleep(self._tick_s)
            self._tick_safely()

    # -- the rollback writer ---------------------------------------------------------------

    async def _write_loop(self) -> None:
        delay = self._tick_s
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                delay = self._tick_s
            for route, trip in list(self._pending.items()):
                try:
                    done = await self.act(trip)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug or a bad webhook URL must not stop the writer
                    self._log.error("guard.act_failed", error=type(exc).__name__, detail=str(exc))
                    done = False
                if done and self._pending.get(route) is trip:
                    del self._pending[route]
                    self._metrics.guard_pending_rollbacks.labels(route).set(0)
            if self._pending:
                await self._sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    async def act(self, trip: Trip) -> bool:
        """Write the rollback for ``trip``; True once it is written or moot, False to retry."""
        current = self._flags.flag(trip.route)
        if current is None or current.rollout_id != trip.rollout_id:
            return True  # a newer rollout: moot
        if current.status == "rolled_back":
            return True
        counts = self._guard.counts(trip.route)
        evidence = msgspec.to_builtins(trip.verdict)
        evidence["rollout_id"] = trip.rollout_id
        evidence["replica"] = self._replica
        evidence["evidence"] = "route_wide" if self._evidence_error is None else "this_replica"
        if counts is not None:
            evidence["outcomes_at_write"] = counts._asdict()
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
                return True  # rolled back (by another replica) or replaced first
            self._log.warning("guard.rollback_conflict", route=trip.route)
            return False  # a concurrent write (a targeting change...): the rollout still runs
        except StoreUnavailableError as exc:
            self._log.error(
                "guard.rollback_failed", route=trip.route, error=exc.message, latched=True
            )
            return False
        self._log.warning(
            "guard.rollback",
            route=trip.route,
            rollout_id=trip.rollout_id,
            rule=trip.verdict.rule,
            version=state.version,
            replica=self._replica,
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
        return True
