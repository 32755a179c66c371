"""The flag service: each replica's in-memory snapshot of every route's flag, kept in sync with
the store, and the only way flags are written (by people through the admin API, by the guard).

The request path reads :meth:`FlagService.flag` (a dict lookup). A background task follows the
store's ``watch()`` and re-syncs the snapshot on every change notice. When the store cannot be
reached the replica keeps serving its last-known snapshot, reports ``degraded`` in ``/readyz``,
refuses writes with 503, and retries with backoff until the store answers again. A replica that
never loaded a snapshot (cold start with the store down) serves every route's fallback.

The store never silently forgets (:mod:`gateway.flags.restore`): a replica that finds the store
empty, behind its own snapshot or under another generation re-seeds it from its snapshot,
audits each restored flag (``action: restore``, ``trigger: replica``), logs
``flags.store_restored`` at error level and counts ``gateway_flag_store_restores_total``. A
write answers only once the store holds it and this replica serves it: its version is above
the stored one, this replica's, and every live replica's heartbeat. Every audit entry written
through this service is also logged as one ``flag.audit`` event with the whole entry.

Each replica heartbeats (:class:`~gateway.flags.store.ReplicaBeat`) its id, generation, served
versions and sources every ``heartbeat_s`` seconds (and soon after a served version changes);
heartbeats expire after three intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from gateway.config import GatewayConfig, RampConfig
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
from gateway.flags.restore import plan_sync, restore_entry
from gateway.flags.store import (
    FlagStore,
    GenerationMismatch,
    ReplicaBeat,
    ServingSource,
    VersionConflict,
    new_generation,
)
from gateway.routing import FlagState
from gateway.tasks import cancel_and_wait
from gateway.telemetry import Metrics

__all__ = ["SOURCES", "FlagService", "replica_id"]

Listener = Callable[[FlagState | None, FlagState], None]
Change = Callable[[FlagState], FlagState]
Evidence = dict[str, Any] | Callable[[FlagState, FlagState], dict[str, Any] | None] | None

SOURCES: tuple[ServingSource, ...] = ("store", "snapshot", "routes_file", "none")
"""Every value of ``gateway_flag_source{source}`` and of ``/readyz``'s ``source``."""

_SYNC_ATTEMPTS = 5


def replica_id(configured: str | None, *, workers: int = 1) -> str:
    """This process's replica id: ``GATEWAY_REPLICA_ID`` if set (with ``-<pid>`` appended when
    several workers share it), else ``<hostname>-<pid>-<6 hex digits>``."""
    if configured:
        return f"{configured}-{os.getpid()}" if workers > 1 else configured
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class FlagService:
    """Snapshot + writes for every routed (non pass-through) route.

    Args:
        replica: this replica's id (see :func:`replica_id`), in heartbeats and restore audits.
        heartbeat_s: seconds between heartbeats; they expire after three intervals.
        clock: Unix seconds (tests pass a fake one).
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: FlagStore,
        metrics: Metrics,
        logger: Any,
        *,
        replica: str | None = None,
        heartbeat_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._routes = {name: r for name, r in config.routes.items() if not r.passthrough}
        self._initial = {name: initial_flag(r) for name, r in self._routes.items()}
        self._store = store
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        self.replica = replica or replica_id(None)
        self._heartbeat_s = heartbeat_s
        self._snapshot: dict[str, FlagState] = {}
        self._sources: dict[str, ServingSource] = {}
        self._generation: str | None = None
        self._max_seq = 0
        self._loaded = False
        self._state: Literal["ok", "degraded", "starting"] = "starting"
        self._reason = "not started"
        self._last_sync: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._beat_soon = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._published: dict[str, ServingSource] = {}

    @property
    def store_kind(self) -> str:
        return self._store.kind

    @property
    def generation(self) -> str | None:
        """The store generation this replica last synced with (``None`` before that)."""
        return self._generation

    def flag(self, route: str) -> FlagState | None:
        """The route's flag in this replica's snapshot (``None`` before any load)."""
        return self._snapshot.get(route)

    def all(self) -> dict[str, FlagState]:
        return dict(self._snapshot)

    def source(self, route: str) -> ServingSource:
        """Where the route's served flag comes from (see :data:`ServingSource`)."""
        if route not in self._snapshot:
            return "none"
        if self._state != "ok":
            return "snapshot"
        return self._sources.get(route, "snapshot")

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` whenever a route's flag changes in the snapshot."""
        self._listeners.append(listener)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the snapshot (if the store answers) and start following changes."""
        try:
            await self._store.open()
            if self._store.persistence == "none":
                self._log.warning(
                    "flags.store_not_persistent",
                    kind=self._store.kind,
                    detail="Redis runs without appendonly: a restart loses the audit history "
                    "and recent flag writes (replicas restore the flags they serve). Set "
                    "appendonly yes and appendfsync everysec.",
                )
            await self._sync()
        except StoreUnavailableError as exc:
            self._degrade(exc.message)
        self._publish_sources()
        self._task = asyncio.create_task(self._follow(), name="flag-sync")
        self._beat_task = asyncio.create_task(self._beat_loop(), name="flag-heartbeat")

    async def stop(self) -> None:
        for task in (self._beat_task, self._task):
            if task is not None and not await cancel_and_wait(task):
                self._log.error("flags.task_did_not_stop", task=task.get_name())
        await self._store.aclose()

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: store kind and persistence, ok or degraded and why, what the request
        path serves.

        ``source`` is the weakest of the routes' sources (``snapshot`` if any route is served
        from this replica's snapshot rather than the store, else ``routes_file`` if any route
        has never been written, else ``store``; ``none`` before any load); ``routes`` gives each
        route's served ``version`` and ``source``.
        """
        serving = "live" if self._state == "ok" else "last_known" if self._loaded else "fallback"
        sources = {name: self.source(name) for name in self._routes}
        return {
            "kind": self._store.kind,
            "persistence": self._store.persistence,
            "state": self._state,
            "reason": None if self._state == "ok" else self._reason,
            "serving": serving,
            "source": _weakest(sources.values()),
            "replica": self.replica,
            "generation": self._generation,
            "routes": {
                name: {
                    "version": None if name not in self._snapshot else self._snapshot[name].version,
                    "source": sources[name],
                }
                for name in self._routes
            },
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
                    await self._sync()
                async for _ in self._store.watch():
                    await self._sync()
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
        self._publish_sources()

    # -- sync and restore --------------------------------------------------------------------

    async def _sync(self) -> None:
        """Read the store and adopt, restore or start from the routes file, route by route
        (:func:`~gateway.flags.restore.plan_sync`). Raises StoreUnavailableError."""
        async with self._sync_lock:
            for _ in range(_SYNC_ATTEMPTS):
                if await self._sync_once():
                    break
            else:
                raise StoreUnavailableError(
                    "The flag store kept changing while this replica synced with it; retrying."
                )
        self._loaded = True
        self._last_sync = self._clock()
        if self._state == "degraded":
            self._log.info("flags.store_recovered", kind=self._store.kind)
        self._state = "ok"
        self._metrics.flag_store_up.set(1)
        self._publish_sources()

    async def _sync_once(self) -> bool:
        """One read-plan-act pass; False when the store changed under it (read again)."""
        stored = await self._store.load()
        # Numbers handed out before the store forgot them must not be handed out again.
        self._max_seq = max(self._max_seq, stored.audit_seq)
        plan = plan_sync(self._initial, self._snapshot, self._generation, stored)
        generation = stored.generation
        if generation is None:
            generation = await self._store.claim_generation(new_generation())
            if self._generation is not None or plan.restore:
                self._log.error(
                    "flags.store_generation_lost",
                    kind=self._store.kind,
                    known=self._generation,
                    claimed=generation,
                )
        elif plan.generation_changed:
            self._log.warning(
                "flags.store_generation_changed", known=self._generation, found=generation
            )
        for route, state in plan.restore.items():
            before = stored.flags.get(route)
            entry = restore_entry(
                state,
                before,
                replica=self.replica,
                now=self._clock(),
                generation_seen=stored.generation,
                generation_known=self._generation,
                generation=generation,
            )
            try:
                written = await self._store.write(
                    state,
                    0 if before is None else before.version,
                    entry,
                    generation=generation,
                    seq_floor=self._max_seq,
                )
            except (VersionConflict, GenerationMismatch):
                return False  # another replica restored or wrote first: plan again
            self._audited(written)
            self._metrics.flag_store_restores.labels(route).inc()
            self._log.error(
                "flags.store_restored",
                route=route,
                replica=self.replica,
                store_version=None if before is None else before.version,
                restored_version=state.version,
                generation_seen=stored.generation,
                generation_known=self._generation,
                generation=generation,
                seq=written.seq,
            )
            self._sources[route] = "store"
        self._generation = generation
        for route, state in plan.adopt.items():
            self._install(route, state, "store", allow_equal=True)
        for route, state in plan.initial.items():
            self._install(route, state, "routes_file")
        return True

    def _install(
        self, route: str, state: FlagState, source: ServingSource, *, allow_equal: bool = False
    ) -> bool:
        """Serve ``state`` unless it is older than what is served (versions never go back;
        ``allow_equal`` takes a different state at the same version, the store winning ties).
        Returns whether ``state`` is what is served now."""
        old = self._snapshot.get(route)
        self._sources[route] = source
        if old is not None and (
            old.version > state.version or (old.version == state.version and not allow_equal)
        ):
            return old == state
        if old == state:
            return True
        self._snapshot[route] = state
        self._metrics.flag_weight.labels(route).set(
            0 if state.status == "rolled_back" or not state.enabled else state.weight
        )
        if old is None or old.version != state.version:
            self._beat_soon.set()
        for listener in self._listeners:
            listener(old, state)
        return True

    def _publish_sources(self) -> None:
        """``gateway_flag_source{route, source}``: 1 for the route's source, 0 for the others."""
        for route in self._routes:
            now = self.source(route)
            if self._published.get(route) == now:
                continue
            for source in SOURCES:
                self._metrics.flag_source.labels(route, source).set(1 if source == now else 0)
            self._published[route] = now

    def _audited(self, entry: AuditEntry) -> None:
        """Log a stored audit entry whole (``flag.audit``), for a durable copy in the logs."""
        self._max_seq = max(self._max_seq, entry.seq)
        self._log.info(
            "flag.audit",
            route=entry.route,
            seq=entry.seq,
            generation=entry.generation,
            entry=msgspec.to_builtins(entry),
        )

    # -- heartbeats --------------------------------------------------------------------------

    def beat(self) -> ReplicaBeat:
        """This replica's heartbeat as of now."""
        now = self._clock()
        return ReplicaBeat(
            replica=self.replica,
            at=now,
            expires_at=now + 3 * self._heartbeat_s,
            generation=self._generation,
            versions={name: state.version for name, state in self._snapshot.items()},
            sources={name: self.source(name) for name in self._routes},
        )

    async def _beat_loop(self) -> None:
        while True:
            self._beat_soon.clear()
            if self._state == "ok":
                try:
                    await self._store.beat(self.beat())
                except StoreUnavailableError:
                    pass  # the sync task reports the outage
                except Exception as exc:  # a bug must not stop heartbeats for good
                    self._log.error("flags.heartbeat_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_s):
                    await self._beat_soon.wait()

    async def replicas(self) -> list[ReplicaBeat]:
        """Every live replica's heartbeat (this one's as of now), by replica id; only this
        replica's when the store cannot be reached."""
        own = self.beat()
        try:
            beats = await self._store.replicas(self._clock())
        except StoreUnavailableError:
            beats = []
        others = [b for b in beats if b.replica != own.replica]
        return sorted([own, *others], key=lambda b: b.replica)

    async def _served_floor(self, route: str) -> int:
        """The highest version of ``route`` any live replica reported serving (0 if unknown)."""
        try:
            beats = await self._store.replicas(self._clock())
        except StoreUnavailableError:
            return 0
        return max((b.versions.get(route, 0) for b in beats), default=0)

    # -- reads and writes --------------------------------------------------------------------

    async def current(self, route: str) -> FlagState:
        """The route's flag as stored now (for reads that must not be stale).

        Raises:
            NotFoundError: not a routed route.
            StoreUnavailableError: the store cannot be reached.
        """
        state, _ = await self.current_with_source(route)
        return state

    async def current_with_source(self, route: str) -> tuple[FlagState, ServingSource]:
        """The route's flag as stored now, and where it comes from: ``store``; ``snapshot``
        when the store lacks or is behind what this replica serves (a restore is due);
        ``routes_file`` when it was never written.

        Raises:
            NotFoundError: not a routed route.
            StoreUnavailableError: the store cannot be reached.
        """
        stored = await self._stored(route)
        known = self._snapshot.get(route)
        if stored is not None and (known is None or stored.version >= known.version):
            return stored, "store"
        if known is not None and known.version > 0:
            return known, "snapshot"
        return self._initial[route], "routes_file"

    async def _stored(self, route: str) -> FlagState | None:
        if route not in self._routes:
            raise NotFoundError(
                f"No route '{route}' (routes: {', '.join(sorted(self._routes)) or 'none'}).",
                code="route_not_found",
            )
        return await self._store.get(route)

    async def update(
        self,
        route: str,
        patch: FlagPatch,
        *,
        actor: str,
        reason: str | None,
        expected_version: int | None = None,
    ) -> FlagState:
        """A person's change (weight, kill switch, targeting). See :func:`apply_patch`; a weight
        change that pauses the route's ramp says so in the audit entry's evidence."""
        return await self._write(
            route,
            lambda s: apply_patch(s, patch, actor=actor, reason=reason, now=self._clock()),
            action="set",
            actor=actor,
            trigger="manual",
            expected_version=expected_version,
            evidence=_ramp_paused_by_weight,
        )

    async def write_change(
        self,
        route: str,
        change: Change,
        *,
        action: Action,
        actor: str,
        trigger: Trigger,
        evidence: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> FlagState:
        """Write any pure change (a function of :mod:`gateway.flags.ramp_changes`, say) the way
        every write goes: compare-and-set, audited, propagated. ``change`` returning its input
        writes nothing.

        Raises:
            NotFoundError, ConflictError, UnprocessableError, StoreUnavailableError: as
                :meth:`update`.
        """
        return await self._write(
            route,
            change,
            action=action,
            actor=actor,
            trigger=trigger,
            evidence=evidence,
            expected_version=expected_version,
        )

    def ramp_of(self, route: str) -> RampConfig | None:
        """The route's ``ramp:`` (``None``: none, or not a routed route)."""
        found = self._routes.get(route)
        return None if found is None else found.ramp

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
            lambda s: release(
                s,
                actor=actor,
                reason=reason,
                now=self._clock(),
                weight=weight,
                ramp=self.ramp_of(route),
            ),
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
                s,
                model=model,
                actor=actor,
                reason=reason,
                now=self._clock(),
                ramp=self.ramp_of(route),
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
        evidence: Evidence = None,
    ) -> FlagState:
        if route not in self._routes:
            await self._stored(route)  # raises NotFoundError
        if self._generation is None:
            await self._sync()
        for _ in range(_SYNC_ATTEMPTS):
            stored = await self._stored(route)
            known = self._snapshot.get(route)
            if (known is not None and known.version > 0) and (
                stored is None or stored.version < known.version
            ):
                await self._sync()  # the store forgot what this replica serves: restore first
                continue
            current = stored if stored is not None else known or self._initial[route]
            if expected_version is not None and expected_version != current.version:
                raise ConflictError(
                    f"Flag '{route}' is at version {current.version}, not {expected_version}: "
                    "someone changed it; read it again and retry.",
                    current=current,
                )
            new = change(current)
            if new is current:
                return current  # nothing changes: no version, no audit entry
            # Above every version served anywhere, so that no replica keeps an older state and
            # no replica's restore can overwrite this write.
            floor = max(current.version, await self._served_floor(route))
            if new.version <= floor:
                new = msgspec.structs.replace(new, version=floor + 1)
            entry = AuditEntry(
                route=route,
                at=new.updated_at,
                actor=actor,
                trigger=trigger,
                action=action,
                reason=new.reason,
                before=current,
                after=new,
                evidence=evidence(current, new) if callable(evidence) else evidence,
            )
            assert self._generation is not None
            try:
                written = await self._store.write(
                    new,
                    0 if stored is None else stored.version,
                    entry,
                    generation=self._generation,
                    seq_floor=self._max_seq,
                )
            except GenerationMismatch:
                await self._sync()  # the store was emptied or replaced: re-seed, then retry
                continue
            except VersionConflict as exc:
                if exc.current == new:
                    # Our own write, sent again after its reply was lost: it is stored.
                    written = msgspec.structs.replace(entry, generation=self._generation)
                    self._audited(written)
                    self._install(route, new, "store")
                    return new
                now = exc.current or known or self._initial[route]
                raise ConflictError(
                    f"Flag '{route}' changed while this change was written (now version "
                    f"{now.version}); read it again and retry.",
                    current=now,
                ) from None
            self._audited(written)
            if not self._install(route, new, "store"):
                raise ConflictError(  # cannot happen: new.version is above the snapshot's
                    f"Flag '{route}' was written at version {new.version} but this replica "
                    "serves a newer one; read it again.",
                    current=self._snapshot.get(route),
                )
            self._publish_sources()
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
        raise StoreUnavailableError(
            "The flag store kept changing while this change was written; nothing was written "
            "by this request. Retry."
        )


def _ramp_paused_by_weight(before: FlagState, after: FlagState) -> dict[str, Any] | None:
    """The evidence of a person's change that paused the ramp (``None`` for any other)."""
    if after.ramp_paused and not before.ramp_paused:
        return {"ramp": "paused", "why": "a person changed the weight", "step": after.ramp_step}
    return None


def _brief(state: FlagState) -> dict[str, Any]:
    return {
        "candidate_model": state.candidate_model,
        "enabled": state.enabled,
        "weight": state.weight,
        "status": state.status,
        "rollout_id": state.rollout_id,
        "version": state.version,
        "ramp_step": state.ramp_step,
        "ramp_paused": state.ramp_paused,
    }


_STRENGTH: dict[ServingSource, int] = {"store": 0, "routes_file": 1, "snapshot": 2, "none": 3}


def _weakest(sources: Any) -> ServingSource:
    """The least trustworthy of ``sources`` (``store`` for none)."""
    worst: ServingSource = "store"
    for source in sources:
        if _STRENGTH[source] > _STRENGTH[worst]:
            worst = source
    return worst
