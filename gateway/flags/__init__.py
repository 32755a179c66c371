"""Route flags: the model of a change, the stores (SQLite, Redis) and the per-replica service."""

from __future__ import annotations

from gateway.flags.changes import AuditEntry, FlagPatch
from gateway.flags.initial import initial_flag
from gateway.flags.service import FlagService
from gateway.flags.store import FlagStore, open_store

__all__ = ["AuditEntry", "FlagPatch", "FlagService", "FlagStore", "initial_flag", "open_store"]
