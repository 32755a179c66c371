"""The ramp's hands: look at every ramped route, write each step the way a person would.

Every ``GATEWAY_GUARD_TICK_S`` each replica asks :func:`gateway.quality.ramp.decide_ramp`, for
each route with a ``ramp:``, what to do with the flag it serves, on the guard's route-wide
counts of the flag's rollout. An ``advance`` (or the ``start`` of a step's clock) is a flag
write through the flag service: compare-and-set on the version the replica saw, audited
(``trigger: guard``, ``action: ramp_advance`` / ``ramp_start``) with the evidence (counts,
samples at the step, dwell, bound, margin, the replica), propagated to every replica. Of
several replicas deciding on the same totals, the first write wins and the others find the
version moved and stand down: one audit entry per step.

The ramp only moves on route-wide evidence (the last exchange of counts with the store
worked) and never for a rollout the guard has condemned on this replica (its latch).
People steer it through :meth:`Ramper.pause` and :meth:`Ramper.resume` (the admin API).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateway.config import GatewayConfig, GuardConfig, RampConfig
from gateway.errors import ConflictError, NotFoundError, StoreUnavailableError
from gateway.flags import ramp_changes
from gateway.flags.changes import Action
from gateway.flags.outcomes import OutcomeCounts
from gateway.flags.service import FlagService
from gateway.quality.guard import Guard
from gateway.quality.latch import LatchedFlags
from gateway.quality.late_break import split_alpha
from gateway.quality.ramp import RampMove, decide_ramp
from gateway.routing import FlagState
from gateway.tasks import cancel_and_wait
from gateway.telemetry.ramp_metrics import RampMetrics

__all__ = ["Ramper"]


class Ramper:
    """Moves every ramped route's flag up its steps; pauses and resumes on request.

    Args:
        evidence_route_wide: whether the guard's last exchange of counts worked (the ramp
            never advances on one replica's counts alone).
        clock: Unix seconds (tests pass a fake one); ``sleep`` likewise.
    """

    def __init__(
        self,
        config: GatewayConfig,
        guard: Guard,
        flags: FlagService,
        latch: LatchedFlags,
        logger: Any,
        *,
        replica: str,
        tick_s: float,
        evidence_route_wide: Callable[[], bool],
        metrics: RampMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._ramps: dict[str, tuple[RampConfig, GuardConfig]] = {
            name: (route.ramp, route.guard)
            for name, route in config.routes.items()
            if route.ramp is not None and route.guard is not None and not route.passthrough
        }
        self._routed = frozenset(n for n, r in config.routes.items() if not r.passthrough)
        self._guard = guard
        self._flags = flags
        self._latch = latch
        self._log = logger
        self._replica = replica
        self._tick_s = tick_s
        self._route_wide = evidence_route_wide
        self.clock = clock
        """Unix seconds; public so that tests can hold the ramp's time still."""
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._failing: dict[str, str] = {}

    def ramped(self, route: str) -> bool:
        return route in self._ramps

    async def start(self) -> None:
        if self._ramps:
            self._task = asyncio.create_task(self._loop(), name="guard-ramp")

    async def stop(self) -> None:
        if self._task is not None and not await cancel_and_wait(self._task):
            self._log.error("ramp.task_did_not_stop")

    # -- looking ---------------------------------------------------------------------------

    def _counts(self, flag: FlagState) -> OutcomeCounts | None:
        return self._guard.rollout_counts(flag.route, flag.rollout_id)

    def look(self, route: str) -> RampMove | None:
        """The ramp's decision for ``route`` now (``None``: no ramp, or no flag known)."""
        ramp = self._ramps.get(route)
        flag = self._flags.flag(route)
        if ramp is None or flag is None:
            return None
        return decide_ramp(
            ramp[0],
            ramp[1],
            flag,
            self._counts(flag),
            self.clock(),
            tripped=self._latch.latched(route) == flag.rollout_id,
        )

    def view(self, route: str) -> dict[str, Any] | None:
        """``GET /admin/routes``'s ``ramp``: ``None`` without a ramp, else ``steps``, ``step``
        (0-based), ``weight``, ``state`` (``ramping``, ``paused``, ``complete``, ``stopped``),
        ``samples`` (candidate outcomes at this step, route-wide), ``min_samples``,
        ``upper_bound`` (of the candidate's failure rate minus the fallback's, or ``None``),
        ``margin``, ``dwell_remaining_s``, ``min_dwell_s`` and ``why``."""
        ramp = self._ramps.get(route)
        if ramp is None:
            return None
        move = self.look(route)
        config, policy = ramp
        if move is None:
            return {
                "steps": list(config.steps),
                "step": 0,
                "weight": 0,
                "state": "stopped",
                "samples": 0,
                "min_samples": config.min_samples,
                "upper_bound": None,
                "margin": policy.margin,
                "dwell_remaining_s": config.min_dwell_s,
                "min_dwell_s": config.min_dwell_s,
                "why": "no flag state yet",
            }
        return {
            "steps": list(config.steps),
            "step": move.step,
            "weight": move.weight,
            "state": move.state,
            "samples": move.samples,
            "min_samples": config.min_samples,
            "upper_bound": move.upper_bound,
            "margin": policy.margin,
            "dwell_remaining_s": move.dwell_remaining_s,
            "min_dwell_s": config.min_dwell_s,
            "why": move.why,
        }

    # -- the guard's writes ------------------------------------------------------------------

    async def step(self) -> list[FlagState]:
        """One look at every ramped route; write each ``start`` and ``advance``. Returns the
        flags written by this replica (a lost compare-and-set or an unreachable store writes
        nothing: the next look decides again)."""
        written = []
        for route in self._ramps:
            state = await self._act(route)
            if state is not None:
                written.append(state)
        return written

    async def _act(self, route: str) -> FlagState | None:
        move = self.look(route)
        flag = self._flags.flag(route)
        if self._metrics is not None:
            if move is None:
                self._metrics.unknown(route)  # no flag known (yet): no state
            else:
                self._metrics.show(route, move.step, move.state)
        if move is None or flag is None or move.action not in ("advance", "start"):
            return None
        if move.action == "advance" and not self._route_wide():
            return None
        config, policy = self._ramps[route]
        counts = self._counts(flag) or OutcomeCounts()
        now = self.clock()
        if move.action == "start":
            action: Action = "ramp_start"
            evidence = self._evidence(config, policy, flag, move, counts, now)

            def change(s: FlagState) -> FlagState:
                return ramp_changes.start_step(s, ramp=config, baseline=counts.cand_n, now=now)
        else:
            action = "ramp_advance"
            evidence = self._evidence(config, policy, flag, move, counts, now)
            reason = (
                f"ramp: {ramp_changes.step_label(config.steps, move.step)} -> "
                f"{ramp_changes.step_label(config.steps, move.step + 1)}: {move.samples} "
                f"candidate outcomes at the step (min {config.min_samples}), "
                f"{evidence['dwell_s']:.0f} s (min {config.min_dwell_s:g} s), upper bound of "
                f"the candidate's failure rate minus the fallback's {move.upper_bound:.4f} < "
                f"margin {policy.margin:g}"
            )

            def change(s: FlagState) -> FlagState:
                return ramp_changes.advance(
                    s, ramp=config, baseline=counts.cand_n, now=now, reason=reason
                )

        try:
            state = await self._flags.write_change(
                route,
                change,
                action=action,
                actor="guard",
                trigger="guard",
                evidence=evidence,
                expected_version=flag.version,
            )
        except ConflictError:
            return None  # another replica (or a person) wrote first: decide again next look
        except StoreUnavailableError as exc:
            if self._failing.get(route) != exc.message:  # once per outage, not every look
                self._log.warning("ramp.write_failed", route=route, error=exc.message)
            self._failing[route] = exc.message
            return None
        self._failing.pop(route, None)
        self._log.info(
            "ramp.advanced" if action == "ramp_advance" else "ramp.step_started",
            route=route,
            step=state.ramp_step,
            weight=state.weight,
            version=state.version,
            replica=self._replica,
            evidence=evidence,
        )
        after = self.look(route)
        if self._metrics is not None and after is not None:
            self._metrics.show(route, after.step, after.state)
        return state

    def _evidence(
        self,
        config: RampConfig,
        policy: GuardConfig,
        flag: FlagState,
        move: RampMove,
        counts: OutcomeCounts,
        now: float,
    ) -> dict[str, Any]:
        started = flag.ramp_step_started_at
        to = move.step + 1 if move.action == "advance" else move.step
        return {
            "steps": list(config.steps),
            "from_step": move.step,
            "to_step": to,
            "from_weight": flag.weight,
            "to_weight": config.steps[to],
            "samples": move.samples,
            "min_samples": config.min_samples,
            "dwell_s": 0.0 if started is None else round(now - started, 3),
            "min_dwell_s": config.min_dwell_s,
            "upper_bound": move.upper_bound,
            "margin": policy.margin,
            "alpha": split_alpha(policy.alpha)[0],
            "outcomes": counts._asdict(),
            "baseline": counts.cand_n,
            "rollout_id": flag.rollout_id,
            "replica": self._replica,
            "evidence": "route_wide" if self._route_wide() else "this_replica",
        }

    async def _loop(self) -> None:
        while True:
            await self._sleep(self._tick_s)
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the ramp for good
                self._log.error("ramp.step_failed", error=type(exc).__name__, detail=str(exc))

    # -- a person's ---------------------------------------------------------------------------

    async def pause(
        self, route: str, *, actor: str, reason: str | None, expected_version: int | None
    ) -> FlagState:
        """Pause the route's ramp (audited ``ramp_pause``); unchanged when paused already.

        Raises:
            NotFoundError: unknown route. UnprocessableError: ``no_ramp``, no reason.
            ConflictError: ``ramp_stopped``, or a stale ``expected_version``.
            StoreUnavailableError: the store cannot be written.
        """
        config = self._require(route)
        now = self.clock()
        return await self._flags.write_change(
            route,
            lambda s: ramp_changes.pause(s, ramp=config, actor=actor, reason=reason, now=now),
            action="ramp_pause",
            actor=actor,
            trigger="manual",
            expected_version=expected_version,
        )

    async def resume(
        self, route: str, *, actor: str, reason: str | None, expected_version: int | None
    ) -> FlagState:
        """Resume the route's ramp at its step's weight (audited ``ramp_resume``; the step's
        dwell and samples count from now); unchanged when it runs already.

        Raises:
            NotFoundError: unknown route. UnprocessableError: ``no_ramp``, no reason.
            ConflictError: ``rolled_back`` (release first), or a stale ``expected_version``.
            StoreUnavailableError: the store cannot be written.
        """
        config = self._require(route)
        now = self.clock()

        def change(s: FlagState) -> FlagState:
            counts = self._guard.rollout_counts(route, s.rollout_id) or OutcomeCounts()
            return ramp_changes.resume(
                s, ramp=config, actor=actor, reason=reason, now=now, baseline=counts.cand_n
            )

        return await self._flags.write_change(
            route,
            change,
            action="ramp_resume",
            actor=actor,
            trigger="manual",
            expected_version=expected_version,
        )

    def _require(self, route: str) -> RampConfig:
        """The route's ramp. Raises NotFoundError (unknown route), UnprocessableError
        (``no_ramp``)."""
        if route not in self._routed:
            raise NotFoundError(
                f"No route '{route}' (routes: {', '.join(sorted(self._routed)) or 'none'}).",
                code="route_not_found",
            )
        ramp = self._ramps.get(route)
        return ramp_changes.require_ramp(route, None if ramp is None else ramp[0])
