"""The embedded flag store: one SQLite file in WAL mode, shared by every worker on a machine.

Tables: ``flags`` (one row per written route: its state as JSON and its version) and ``audit``
(append-only: triggers refuse UPDATE and DELETE). A write is one ``BEGIN IMMEDIATE``
transaction that checks the version, upserts the flag and appends the audit entry.

Workers notice each other's writes by polling ``PRAGMA data_version`` (SQLite changes it for a
connection when *another* connection commits), every ``poll_interval_s``; the default 0.25 s
keeps propagation between workers well under a second. Calls run in a worker thread
(``asyncio.to_thread``), one at a time per store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import msgspec

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.store import VersionConflict
from gateway.routing import FlagState

__all__ = ["SQLiteFlagStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flags (
    route TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    at REAL NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_route ON audit (route, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""

_state_decoder = msgspec.json.Decoder(FlagState)
_entry_decoder = msgspec.json.Decoder(AuditEntry)


async def _finish_in_thread(fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn`` in a worker thread; if the caller is cancelled, still wait for the thread.

    Cancelling ``asyncio.to_thread`` does not stop the thread: without the wait, the lock would
    be released (and the connection possibly closed by ``aclose``) while the thread still uses
    the connection, which can crash SQLite.
    """
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


class SQLiteFlagStore:
    """Flags and audit in a SQLite file (``GATEWAY_FLAG_STORE=sqlite:///PATH``)."""

    kind = "sqlite"

    def __init__(self, path: str, *, poll_interval_s: float = 0.25) -> None:
        self.path = Path(path)
        self.poll_interval_s = poll_interval_s
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            try:
                conn = self._conn
                if conn is None:
                    conn = self._conn = await _finish_in_thread(self._connect)
                return await _finish_in_thread(fn, conn)
            except sqlite3.Error as exc:
                raise StoreUnavailableError(
                    f"The flag store (SQLite file {self.path}) is unavailable: {exc}"
                ) from None

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot create {self.path.parent}: {exc}") from None
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        return conn

    async def open(self) -> None:
        await self._run(lambda conn: None)

    async def load(self) -> dict[str, FlagState]:
        rows = await self._run(lambda c: c.execute("SELECT state FROM flags").fetchall())
        states = (_state_decoder.decode(row[0]) for row in rows)
        return {state.route: state for state in states}

    async def get(self, route: str) -> FlagState | None:
        row = await self._run(
            lambda c: c.execute("SELECT state FROM flags WHERE route = ?", (route,)).fetchone()
        )
        return _state_decoder.decode(row[0]) if row else None

    async def write(self, state: FlagState, expected_version: int, entry: AuditEntry) -> None:
        def transaction(conn: sqlite3.Connection) -> FlagState | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT version, state FROM flags WHERE route = ?", (state.route,)
                ).fetchone()
                stored_version = row[0] if row else 0
                if stored_version != expected_version:
                    conn.execute("ROLLBACK")
                    return _state_decoder.decode(row[1]) if row else None
                conn.execute(
                    "INSERT INTO flags (route, version, state) VALUES (?, ?, ?) "
                    "ON CONFLICT (route) DO UPDATE SET version = excluded.version, "
                    "state = excluded.state",
                    (state.route, state.version, msgspec.json.encode(state).decode()),
                )
                conn.execute(
                    "INSERT INTO audit (route, at, entry) VALUES (?, ?, ?)",
                    (entry.route, entry.at, msgspec.json.encode(entry).decode()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return state

        result = await self._run(transaction)
        if result is not state:
            raise VersionConflict(result)

    async def history(self, route: str | None, limit: int) -> list[AuditEntry]:
        def query(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            if route is None:
                sql, args = "SELECT id, entry FROM audit ORDER BY id DESC LIMIT ?", (limit,)
                return conn.execute(sql, args).fetchall()
            return conn.execute(
                "SELECT id, entry FROM audit WHERE route = ? ORDER BY id DESC LIMIT ?",
                (route, limit),
            ).fetchall()

        rows = await self._run(query)
        out = []
        for row_id, text in rows:
            entry = _entry_decoder.decode(text)
            entry.id = str(row_id)
            out.append(entry)
        return out

    async def watch(self) -> AsyncIterator[None]:
        last = await self._run(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
        while True:
            await asyncio.sleep(self.poll_interval_s)
            current = await self._run(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
            if current != last:
                last = current
                yield

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
