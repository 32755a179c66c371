"""Route flags: the model of a change, the stores (SQLite, Redis), the restore decision and the
per-replica service."""

from __future__ import annotations

from gateway.flags.changes import AuditEntry, FlagPatch
from gateway.flags.initial import initial_flag
from gateway.flags.restore import SyncPlan, plan_sync
from gateway.flags.service import FlagService, replica_id
from gateway.flags.store import FlagStore, ReplicaBeat, StoredFlags, open_store

__all__ = [
    "AuditEntry",
    "FlagPatch",
    "FlagService",
    "FlagStore",
    "ReplicaBeat",
    "StoredFlags",
    "SyncPlan",
    "initial_flag",
    "open_store",
    "plan_sync",
    "replica_id",
]
