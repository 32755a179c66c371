"""Route-wide guard evidence: every replica's outcome counts, shared in the flag store.

The guard must decide on one stream of outcomes per route, whatever the number of replicas
(DESIGN.md section 5): a replica that counted only its own share would need ``replicas x``
as many candidate answers to detect a broken candidate, and the false-rollback bound would
hold per replica instead of per route. So each replica publishes its counts and reads back
the route-wide totals, off the request path, every ``GATEWAY_GUARD_FLUSH_S``.

What is stored is each replica's **cumulative** counts per (route, rollout id), written as
absolute values under the replica's own id, and the totals are the sum over replicas. Unlike
``HINCRBY`` deltas, an absolute write is idempotent: a write retried after a timeout whose
first attempt did land counts nothing twice, and after the store lost its data (Redis
restarted empty, a SQLite file replaced) every live replica's next write restores its share.

* Redis: a hash ``NS:outcomes:ROUTE:ROLLOUT`` per rollout, field = replica id, value
  ``"cand_n,cand_f,fb_n,fb_f"``; one pipeline writes this replica's fields and reads every
  watched hash (``HGETALL``). Each hash expires ``_TTL_S`` after its last write.
* SQLite: a table ``outcomes`` keyed by (route, rollout_id, replica), upserted, summed.

Every failure to reach the store leaves as :class:`~gateway.errors.StoreUnavailableError`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import ConfigError, StoreUnavailableError

__all__ = [
    "ZERO",
    "OutcomeCounts",
    "OutcomeStore",
    "RedisOutcomeStore",
    "RolloutKey",
    "SQLiteOutcomeStore",
    "open_outcome_store",
]

RolloutKey = tuple[str, str]
"""(route, rollout id): the guard counts per rollout."""

_TTL_S = 14 * 86_400
"""Counts of a rollout nobody writes any more expire after two weeks (Redis)."""


class OutcomeCounts(NamedTuple):
    """Outcomes of one rollout: candidate and fallback answers and how many of each failed."""

    cand_n: int = 0
    cand_f: int = 0
    fb_n: int = 0
    fb_f: int = 0

    def plus(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(*(a + b for a, b in zip(self, other, strict=True)))

    def minus(self, other: OutcomeCounts) -> OutcomeCounts:
        return OutcomeCounts(*(a - b for a, b in zip(self, other, strict=True)))

    def at_least(self, other: OutcomeCounts) -> OutcomeCounts:
        """Componentwise maximum: totals never go backwards for a reader."""
        return OutcomeCounts(*(max(a, b) for a, b in zip(self, other, strict=True)))

    def encode(self) -> str:
        return ",".join(map(str, self))

    @classmethod
    def decode(cls, raw: bytes | str) -> OutcomeCounts:
        """Parse ``"cn,cf,fn,ff"``; a malformed value counts as nothing (never crash the sync)."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            return ZERO
        return cls(*values) if len(values) == 4 and min(values) >= 0 else ZERO


ZERO = OutcomeCounts()


class OutcomeStore(Protocol):
    """Where replicas share their outcome counts."""

    async def exchange(
        self,
        replica: str,
        own: Mapping[RolloutKey, OutcomeCounts],
        watch: Iterable[RolloutKey],
    ) -> dict[RolloutKey, OutcomeCounts]:
        """Store ``own`` (this replica's cumulative counts) and return the route-wide totals
        of every key in ``watch`` and ``own`` (the sum over replicas, ``own`` included).

        Raises:
            StoreUnavailableError: the store cannot be reached; nothing is known to be written.
        """
        ...

    async def aclose(self) -> None: ...


class RedisOutcomeStore:
    """Outcome counts in Redis, next to the flags (same URL and namespace)."""

    def __init__(self, url: str, *, namespace: str) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=2.0, health_check_interval=10
        )
        self._prefix = f"{namespace}:outcomes:"

    def _key(self, key: RolloutKey) -> str:
        return f"{self._prefix}{key[0]}:{key[1]}"

    async def exchange(
        self,
        replica: str,
        own: Mapping[RolloutKey, OutcomeCounts],
        watch: Iterable[RolloutKey],
    ) -> dict[RolloutKey, OutcomeCounts]:
        keys = list(dict.fromkeys([*own, *watch]))
        pipe = self._redis.pipeline(transaction=False)
        for key, counts in own.items():
            name = self._key(key)
            pipe.hset(name, replica, counts.encode())
            pipe.expire(name, _TTL_S)
        for key in keys:
            pipe.hgetall(self._key(key))
        try:
            results: list[Any] = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(
                f"The flag store (Redis) is unavailable: {type(exc).__name__}"
            ) from None
        totals: dict[RolloutKey, OutcomeCounts] = {}
        for key, fields in zip(keys, results[2 * len(own) :], strict=True):
            total = ZERO
            for value in fields.values():
                total = total.plus(OutcomeCounts.decode(value))
            totals[key] = total
        return totals

    async def aclose(self) -> None:
        await self._redis.aclose()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    route TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    cand_n INTEGER NOT NULL,
    cand_f INTEGER NOT NULL,
    fb_n INTEGER NOT NULL,
    fb_f INTEGER NOT NULL,
    PRIMARY KEY (route, rollout_id, replica)
);
"""


class SQLiteOutcomeStore:
    """Outcome counts in the SQLite flag file, shared by every worker on the machine.

    One connection, used from a worker thread one call at a time. When the file at ``path``
    is no longer the file the connection has open (removed or replaced under a running
    gateway), the next exchange reconnects, so counts go where the flags are.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._lock = asyncio.Lock()

    def _file_id(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._file_id() == self._inode:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # No fsync per exchange (WAL's commits reach the disk at checkpoints): a power cut can
        # lose the last counts written, which every replica's next write restores (they are
        # absolute values). A third of an exchange's CPU (bench/RESULTS.md, step 8).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn, self._inode = conn, self._file_id()
        return conn

    @staticmethod
    def _write(
        conn: sqlite3.Connection, replica: str, own: list[tuple[RolloutKey, OutcomeCounts]]
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (route, rollout_id, replica) DO UPDATE SET cand_n = excluded.cand_n, "
                "cand_f = excluded.cand_f, fb_n = excluded.fb_n, fb_f = excluded.fb_f",
                [(key[0], key[1], replica, *counts) for key, counts in own],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _exchange(
        self, replica: str, own: list[tuple[RolloutKey, OutcomeCounts]], keys: list[RolloutKey]
    ) -> dict[RolloutKey, OutcomeCounts]:
        conn = self._connection()
        if own:
            self._write(conn, replica, own)
        totals = {}
        for key in keys:
            row = conn.execute(
                "SELECT COALESCE(SUM(cand_n), 0), COALESCE(SUM(cand_f), 0), "
                "COALESCE(SUM(fb_n), 0), COALESCE(SUM(fb_f), 0) FROM outcomes "
                "WHERE route = ? AND rollout_id = ?",
                key,
            ).fetchone()
            totals[key] = OutcomeCounts(*row)
        return totals

    async def exchange(
        self,
        replica: str,
        own: Mapping[RolloutKey, OutcomeCounts],
        watch: Iterable[RolloutKey],
    ) -> dict[RolloutKey, OutcomeCounts]:
        keys = list(dict.fromkeys([*own, *watch]))
        async with self._lock:
            future = asyncio.ensure_future(
                asyncio.to_thread(self._exchange, replica, list(own.items()), keys)
            )
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                await asyncio.wait([future])  # never leave the thread using a closed connection
                raise
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailableError(
                    f"The flag store (SQLite file {self.path}) is unavailable: {exc}"
                ) from None

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_outcome_store(url: str, *, namespace: str) -> OutcomeStore:
    """The outcome store beside the flag store ``url`` (``GATEWAY_FLAG_STORE``).

    Raises:
        ConfigError: an unknown scheme.
    """
    if url.startswith("sqlite:///"):
        return SQLiteOutcomeStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisOutcomeStore(url, namespace=namespace)
    raise ConfigError([f"GATEWAY_FLAG_STORE: unknown scheme in {url.split(':', 1)[0]!r}"])
