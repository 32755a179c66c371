"""The flag service: each replica's in-memory snapshot of every route's flag, kept in sync with
the store, and the only way flags are written (by people through the admin API, by the guard).

The request path reads :meth:`FlagService.flag` (a dict lookup). A background task follows the
store's ``watch()`` and reloads the snapshot on every change notice. When the store cannot be
reached the replica keeps serving its last-known snapshot, reports ``degraded`` in ``/readyz``,
refuses writes with 503, and retries with backoff until the store answers again. A replica that
never loaded a snapshot (cold start with the store down) serves every route's fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Literal

from gateway.config import GatewayConfig
from gateway.errors import ConflictError, NotFoundError, StoreUnavailableError
from gateway.flags.changes import (
    Action,
    AuditEntry,
    FlagPatch,
    Trigger,
    apply_patch,
    register_candidate,
    release,
    rollback,
)
from gateway.flags.initial import initial_flag
from gateway.flags.store import FlagStore, VersionConflict
from gateway.routing import FlagState
from gateway.telemetry import Metrics

__all__ = ["FlagService"]

Listener = Callable[[FlagState | None, FlagState], None]


class FlagService:
    """Snapshot + writes for every routed (non pass-through) route."""

    def __init__(
        self,
        config: GatewayConfig,
        store: FlagStore,
        metrics: Metrics,
        logger: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._routes = {name: r for name, r in config.routes.items() if not r.passthrough}
        self._store = store
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        self._snapshot: dict[str, FlagState] = {}
        self._loaded = False
        self._state: Literal["ok", "degraded", "starting"] = "starting"
        self._reason = "not started"
        self._last_sync: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []

    @property
    def store_kind(self) -> str:
        return self._store.kind

    def flag(self, route: str) -> FlagState | None:
        """The route's flag in this replica's snapshot (``None`` before any load)."""
        return self._snapshot.get(route)

    def all(self) -> dict[str, FlagState]:
        return dict(self._snapshot)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` whenever a route's flag changes in the snapshot."""
        self._listeners.append(listener)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot (if the store answers) and start following changes."""
        try:
            await self._store.open()
            await self._reload()
        except StoreUnavailableError as exc:
            self._degrade(exc.message)
        self._task = asyncio.create_task(self._follow(), name="flag-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._store.aclose()

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: store kind, ok or degraded and why, what the request path serves."""
        serving = "live" if self._state == "ok" else "last_known" if self._loaded else "fallback"
        return {
            "kind": self._store.kind,
            "state": self._state,
            "reason": None if self._state == "ok" else self._reason,
            "serving": serving,
            "last_sync_age_s": (
                None if self._last_sync is None else round(self._clock() - self._last_sync, 3)
            ),
        }

    async def _follow(self) -> None:
        backoff = 0.2
        while True:
            try:
                if self._state != "ok":
                    await self._store.open()
                    await self._reload()
                async for _ in self._store.watch():
                    await self._reload()
                    backoff = 0.2
            except StoreUnavailableError as exc:
                self._degrade(exc.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop flag sync for good
                self._log.error("flags.sync_failed", error=type(exc).__name__, detail=str(exc))
                self._degrade(f"flag sync failed: {type(exc).__name__}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _degrade(self, reason: str) -> None:
        if self._state != "degraded" or self._reason != reason:
            self._log.warning(
                "flags.store_degraded", reason=reason, serving=self.status()["serving"]
            )
        self._state = "degraded"
        self._reason = reason
        self._metrics.flag_store_up.set(0)

    async def _reload(self) -> None:
        stored = await self._store.load()
        for name, route in self._routes.items():
            state = stored.get(name)
            if state is None:
                known = self._snapshot.get(name)
                if known is not None and known.version > 0:
                    # The store lost a flag it had (e.g. Redis restarted without persistence):
                    # keep what this replica knows rather than fall back to the routes file.
                    self._log.warning("flags.store_lost_state", route=name, version=known.version)
                    continue
                state = initial_flag(route)
            self._install(name, state)
        self._loaded = True
        self._last_sync = self._clock()
        if self._state == "degraded":
            self._log.info("flags.store_recovered", kind=self._store.kind)
        self._state = "ok"
        self._metrics.flag_store_up.set(1)

    def _install(self, route: str, state: FlagState) -> None:
        old = self._snapshot.get(route)
        if old is not None and old.version >= state.version:
            return
        self._snapshot[route] = state
        self._metrics.flag_weight.labels(route).set(
            0 if state.status == "rolled_back" or not state.enabled else state.weight
        )
        for listener in self._listeners:
            listener(old, state)

    # -- writes ----------------------------------------------------------------------------

    async def current(self, route: str) -> FlagState:
        """The route's flag as stored now (for reads that must not be stale).

        Raises:
            NotFoundError: not a routed route.
            StoreUnavailableError: the store cannot be reached.
        """
        return self._base(route, await self._stored(route))

    async def _stored(self, route: str) -> FlagState | None:
        if route not in self._routes:
            raise NotFoundError(
                f"No route '{route}' (routes: {', '.join(sorted(self._routes)) or 'none'}).",
                code="route_not_found",
            )
        return await self._store.get(route)

    def _base(self, route: str, stored: FlagState | None) -> FlagState:
        """The state a change builds on: the stored one; if the store lost a flag this replica
        knows (see ``_reload``), the known one, so that reads and writes match what is served;
        else the routes file's."""
        if stored is not None:
            return stored
        known = self._snapshot.get(route)
        if known is not None and known.version > 0:
            return known
        return initial_flag(self._routes[route])

    async def update(
        self,
        route: str,
        patch: FlagPatch,
        *,
        actor: str,
        reason: str | None,
        expected_version: int | None = None,
    ) -> FlagState:
        """A person's change (weight, kill switch, targeting). See :func:`apply_patch`."""
        return await self._write(
            route,
            lambda s: apply_patch(s, patch, actor=actor, reason=reason, now=self._clock()),
            action="set",
            actor=actor,
            trigger="manual",
            expected_version=expected_version,
        )

    async def rollback(
        self,
        route: str,
        *,
        actor: str,
        reason: str | None,
        trigger: Trigger = "manual",
        evidence: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> FlagState:
        """Latch the route on its fallback (by a person or by the guard)."""
        return await self._write(
            route,
            lambda s: rollback(s, actor=actor, reason=reason, now=self._clock()),
            action="rollback",
            actor=actor,
            trigger=trigger,
            evidence=evidence,
            expected_version=expected_version,
        )

    async def release(
        self,
        route: str,
        *,
        actor: str,
        reason: str | None,
        weight: int | None = None,
        expected_version: int | None = None,
    ) -> FlagState:
        """Re-arm a rolled-back route with a new rollout id."""
        return await self._write(
            route,
            lambda s: release(s, actor=actor, reason=reason, now=self._clock(), weight=weight),
            action="release",
            actor=actor,
            trigger="manual",
            expected_version=expected_version,
        )

    async def register_candidate(
        self,
        route: str,
        *,
        model: str,
        actor: str,
        reason: str | None,
        evidence: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> FlagState:
        """Serve ``model`` as the route's candidate, at weight 0, with a new rollout id."""
        return await self._write(
            route,
            lambda s: register_candidate(
                s, model=model, actor=actor, reason=reason, now=self._clock()
            ),
            action="register",
            actor=actor,
            trigger="manual",
            evidence=evidence,
            expected_version=expected_version,
        )

    async def history(self, route: str | None, limit: int = 50) -> list[AuditEntry]:
        if route is not None and route not in self._routes:
            raise NotFoundError(f"No route '{route}'.", code="route_not_found")
        return await self._store.history(route, limit)

    async def _write(
        self,
        route: str,
        change: Callable[[FlagState], FlagState],
        *,
        action: Action,
        actor: str,
        trigger: Trigger,
        expected_version: int | None,
        evidence: dict[str, Any] | None = None,
    ) -> FlagState:
        stored = await self._stored(route)
        current = self._base(route, stored)
        if expected_version is not None and expected_version != current.version:
            raise ConflictError(
                f"Flag '{route}' is at version {current.version}, not {expected_version}: "
                "someone changed it; read it again and retry.",
                current=current,
            )
        new = change(current)
        entry = AuditEntry(
            route=route,
            at=new.updated_at,
            actor=actor,
            trigger=trigger,
            action=action,
            reason=new.reason,
            before=current,
            after=new,
            evidence=evidence,
        )
        try:
            # CAS on the version in the store (0 if it lost the flag), not the base's.
            await self._store.write(new, stored.version if stored else 0, entry)
        except VersionConflict as exc:
            now = self._base(route, exc.current)
            raise ConflictError(
                f"Flag '{route}' changed while this change was written (now version "
                f"{now.version}); read it again and retry.",
                current=now,
            ) from None
        self._install(route, new)
        if action == "rollback":
            self._metrics.rollbacks.labels(route, trigger).inc()
        self._log.info(
            "flag.changed",
            route=route,
            action=action,
            trigger=trigger,
            actor=actor,
            reason=new.reason,
            version=new.version,
            old=_brief(current),
            new=_brief(new),
        )
        return new


def _brief(state: FlagState) -> dict[str, Any]:
    return {
        "candidate_model": state.candidate_model,
        "enabled": state.enabled,
        "weight": state.weight,
        "status": state.status,
        "rollout_id": state.rollout_id,
        "version": state.version,
    }
