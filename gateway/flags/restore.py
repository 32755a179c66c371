"""What a replica does with what it reads from the store: adopt it, re-seed it, or start from
the routes file (DESIGN.md section 5: the store never silently forgets). Pure functions.

A replica remembers the store's generation and every flag version it has served. When it reads
the store (:class:`~gateway.flags.store.StoredFlags`), for each route:

* the store holds the flag at a version at least the replica's: **adopt** it (the store wins
  ties; versions never go backwards for a replica);
* the store lacks the flag, or holds an older version, while the replica has served a written
  one (version > 0): **restore** the replica's state into the store (compare-and-set on the
  stored version, so several replicas restoring at once converge on the highest version);
* neither holds a written state: serve the routes file's **initial** flag, the last resort.

A store without a generation (Redis restarted empty, a new SQLite file) gets a new one claimed
before anything is restored; a generation other than the replica's is adopted (and logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.flags.changes import AuditEntry
from gateway.flags.store import StoredFlags
from gateway.routing import FlagState

__all__ = ["SyncPlan", "plan_sync", "restore_entry"]


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """The outcome of :func:`plan_sync`, by route.

    Attributes:
        adopt: routes whose stored state the replica installs.
        restore: routes whose replica state must be written back into the store.
        initial: routes served from the routes file (no state anywhere).
        claim_generation: the store has no generation; claim one before restoring.
        generation_changed: the store's generation is not the one the replica knew (and the
            replica knew one): the store was re-seeded, replaced or restored.
    """

    adopt: dict[str, FlagState] = field(default_factory=dict)
    restore: dict[str, FlagState] = field(default_factory=dict)
    initial: dict[str, FlagState] = field(default_factory=dict)
    claim_generation: bool = False
    generation_changed: bool = False

    @property
    def store_forgot(self) -> bool:
        """True when the store lost (or rolled back) state this replica served."""
        return bool(self.restore)


def plan_sync(
    initial: Mapping[str, FlagState],
    snapshot: Mapping[str, FlagState],
    generation: str | None,
    stored: StoredFlags,
) -> SyncPlan:
    """Decide, route by route, what the replica serves after reading ``stored``.

    Args:
        initial: every routed route's flag from the routes file (version 0).
        snapshot: what the replica serves now (empty before its first load).
        generation: the store generation the replica last saw (``None``: never).
        stored: the store's generation and flags, read together.
    """
    plan = SyncPlan(
        claim_generation=stored.generation is None,
        generation_changed=generation is not None and stored.generation != generation,
    )
    for route, first in initial.items():
        known = snapshot.get(route)
        there = stored.flags.get(route)
        if there is not None and (known is None or there.version >= known.version):
            plan.adopt[route] = there
        elif known is not None and known.version > 0:
            plan.restore[route] = known
        else:
            plan.initial[route] = first
    return plan


def restore_entry(
    state: FlagState,
    stored: FlagState | None,
    *,
    replica: str,
    now: float,
    generation_seen: str | None,
    generation_known: str | None,
    generation: str,
) -> AuditEntry:
    """The audit entry of a replica restoring ``state`` over ``stored`` (``None``: missing).

    ``evidence`` holds the replica id, the generations seen in the store, known by the replica
    and written under, and both versions, so that the audit says what was restored from where.
    """
    had = "no flag" if stored is None else f"version {stored.version}"
    evidence: dict[str, Any] = {
        "replica": replica,
        "source": "snapshot",
        "generation_seen": generation_seen,
        "generation_known": generation_known,
        "generation": generation,
        "store_version": None if stored is None else stored.version,
        "restored_version": state.version,
    }
    return AuditEntry(
        route=state.route,
        at=now,
        actor=replica,
        trigger="replica",
        action="restore",
        reason=(
            f"the flag store had {had} (generation {generation_seen or 'none'}); restored "
            f"version {state.version} from replica {replica}'s snapshot"
        ),
        before=stored,
        after=state,
        evidence=evidence,
    )
