"""The flag store interface, shared by the SQLite and Redis stores.

A store persists each route's current :class:`~gateway.routing.FlagState`, an append-only audit
log, a **generation** marker and the replicas' heartbeats:

* the generation is a random id written once, when a replica first finds the store without one
  (:meth:`FlagStore.claim_generation`). A store that loses its data (Redis restarted empty, a
  SQLite file deleted) loses its generation too, so replicas can tell "never written" from
  "forgotten" and re-seed it from their snapshots (:mod:`gateway.flags.restore`);
* writes are compare-and-set on ``version`` *and* on the generation, and record their audit
  entry in the same transaction, numbered by a per-store sequence (``seq``: 1, 2, 3, ...; a gap
  or a restart at 1 shows that entries were lost);
* heartbeats (:class:`ReplicaBeat`) say which replica serves which flag versions; each expires
  after its ``expires_at`` and is dropped when read after that.

``watch()`` yields whenever another process may have changed a flag or the generation, so that
each replica refreshes its in-memory snapshot; the request path never calls the store.

Every failure to reach the store leaves a store as :class:`~gateway.errors.StoreUnavailableError`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Literal, Protocol

import msgspec

from gateway.errors import GatewayError
from gateway.flags.changes import AuditEntry
from gateway.routing import FlagState

__all__ = [
    "FlagStore",
    "GenerationMismatch",
    "ReplicaBeat",
    "ServingSource",
    "StoredFlags",
    "VersionConflict",
    "new_generation",
    "open_store",
]

ServingSource = Literal["store", "snapshot", "routes_file", "none"]
"""Where a replica's served flag comes from: the store (it matches what is stored), the replica's
own snapshot (the store is unreachable, or behind and being restored), the routes file's
initial flag (nobody ever wrote the flag), or nothing (cold start with the store down: the
fallback is served)."""


class VersionConflict(GatewayError):
    """Internal: the stored version is not the expected one. ``current`` is what is stored."""

    def __init__(self, current: FlagState | None) -> None:
        super().__init__("version conflict")
        self.current = current


class GenerationMismatch(GatewayError):
    """Internal: the store's generation is not the writer's (``current``; ``None``: the store
    has none, i.e. it is empty or was replaced). The writer must re-sync before writing."""

    def __init__(self, current: str | None) -> None:
        super().__init__("generation mismatch")
        self.current = current


class StoredFlags(msgspec.Struct, frozen=True):
    """One consistent read of the store: its generation (``None``: never seeded or forgotten),
    every stored flag by route, and the last audit ``seq`` handed out (0: none)."""

    generation: str | None
    flags: dict[str, FlagState]
    audit_seq: int = 0


class ReplicaBeat(msgspec.Struct, kw_only=True, frozen=True):
    """A replica's heartbeat: what it serves, written every few seconds.

    ``at`` and ``expires_at`` are Unix seconds (the replica's clock); ``versions`` maps each
    route to the flag version the replica serves; ``sources`` maps each route to its
    :data:`ServingSource`.
    """

    replica: str
    at: float
    expires_at: float
    generation: str | None
    versions: dict[str, int]
    sources: dict[str, str]


def new_generation() -> str:
    """A fresh generation id (``gen_`` and 16 hex digits)."""
    return "gen_" + uuid.uuid4().hex[:16]


class FlagStore(Protocol):
    """What the flag service needs from a store."""

    kind: str
    persistence: str
    """What survives a restart of the store, as :meth:`open` found it: ``fsync`` (SQLite,
    synchronous=FULL), ``appendonly`` (Redis with its append-only file on), ``none`` (Redis
    without it: a restart may lose recent writes), ``unknown`` (not found out)."""

    async def open(self) -> None:
        """Connect and create the schema if needed. Raises StoreUnavailableError."""
        ...

    async def load(self) -> StoredFlags:
        """The generation and every stored flag, read together."""
        ...

    async def get(self, route: str) -> FlagState | None:
        """One stored flag, or ``None`` if the route was never written."""
        ...

    async def claim_generation(self, candidate: str) -> str:
        """Set the generation to ``candidate`` if the store has none; return the store's
        generation (``candidate`` or the one another replica set first)."""
        ...

    async def write(
        self,
        state: FlagState,
        expected_version: int,
        entry: AuditEntry,
        *,
        generation: str,
        seq_floor: int = 0,
    ) -> AuditEntry:
        """Store ``state`` iff the stored version is ``expected_version`` (0: never written)
        and the store's generation is ``generation``; append ``entry``.

        The audit sequence continues above ``seq_floor`` (a restore passes the highest ``seq``
        its replica has seen, so that numbers are not reused after the store forgot them).

        Returns:
            ``entry`` as stored: with its ``seq``, ``generation`` and store-assigned ``id``.

        Raises:
            GenerationMismatch: the store's generation is another (or none).
            VersionConflict: someone else wrote first; carries the stored state.
            StoreUnavailableError: the store cannot be reached.
        """
        ...

    async def history(self, route: str | None, limit: int) -> list[AuditEntry]:
        """Audit entries, newest first, for one route or all."""
        ...

    async def beat(self, beat: ReplicaBeat) -> None:
        """Record a replica's heartbeat (replacing its previous one)."""
        ...

    async def replicas(self, now: float) -> list[ReplicaBeat]:
        """Heartbeats not expired at ``now`` (Unix seconds), by replica id; expired ones are
        deleted."""
        ...

    def watch(self) -> AsyncIterator[None]:
        """Yield after each possible change by another process; raise when the store is lost."""
        ...

    async def aclose(self) -> None: ...


def open_store(url: str, *, namespace: str, poll_interval_s: float) -> FlagStore:
    """A store for ``GATEWAY_FLAG_STORE``: ``sqlite:///PATH`` or ``redis://...``.

    Raises:
        ConfigError: an unknown scheme.
    """
    from gateway.errors import ConfigError  # noqa: PLC0415

    if url.startswith("sqlite:///"):
        from gateway.flags.sqlite import SQLiteFlagStore  # noqa: PLC0415

        return SQLiteFlagStore(url.removeprefix("sqlite:///"), poll_interval_s=poll_interval_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.flags.redis import RedisFlagStore  # noqa: PLC0415

        return RedisFlagStore(url, namespace=namespace, poll_interval_s=poll_interval_s)
    scheme = url.split(":", 1)[0] if ":" in url else url[:10]
    raise ConfigError(
        [
            f"GATEWAY_FLAG_STORE: unknown scheme {scheme!r}; use sqlite:///PATH or redis://HOST:PORT/DB"
        ]
    )
