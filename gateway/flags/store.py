"""The flag store interface, shared by the SQLite and Redis stores.

A store persists each route's current :class:`~gateway.routing.FlagState` and an append-only
audit log. Writes are compare-and-set on ``version`` and record their audit entry in the same
transaction. ``watch()`` yields whenever another process may have changed a flag, so that each
replica refreshes its in-memory snapshot; the request path never calls the store.

Every failure to reach the store leaves a store as :class:`~gateway.errors.StoreUnavailableError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gateway.errors import GatewayError
from gateway.flags.changes import AuditEntry
from gateway.routing import FlagState

__all__ = ["FlagStore", "VersionConflict", "open_store"]


class VersionConflict(GatewayError):
    """Internal: the stored version is not the expected one. ``current`` is what is stored."""

    def __init__(self, current: FlagState | None) -> None:
        super().__init__("version conflict")
        self.current = current


class FlagStore(Protocol):
    """What the flag service needs from a store."""

    kind: str

    async def open(self) -> None:
        """Connect and create the schema if needed. Raises StoreUnavailableError."""
        ...

    async def load(self) -> dict[str, FlagState]:
        """Every stored flag, by route."""
        ...

    async def get(self, route: str) -> FlagState | None:
        """One stored flag, or ``None`` if the route was never written."""
        ...

    async def write(self, state: FlagState, expected_version: int, entry: AuditEntry) -> None:
        """Store ``state`` iff the stored version is ``expected_version`` (0: never written).

        Raises:
            VersionConflict: someone else wrote first; carries the stored state.
            StoreUnavailableError: the store cannot be reached.
        """
        ...

    async def history(self, route: str | None, limit: int) -> list[AuditEntry]:
        """Audit entries, newest first, for one route or all."""
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
