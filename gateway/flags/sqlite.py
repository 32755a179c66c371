"""The embedded flag store: one SQLite file in WAL mode, shared by every worker on a machine.

Tables: ``flags`` (one row per written route: its state as JSON and its version), ``audit``
(append-only: triggers refuse UPDATE and DELETE; the ``AUTOINCREMENT`` id is the entry's
``seq``), ``meta`` (``generation``) and ``replicas`` (heartbeats, pruned when read). A write is
one ``BEGIN IMMEDIATE`` transaction that checks the generation and the version, upserts the flag
and appends the audit entry.

A file removed or replaced under a running gateway is noticed before every call: the store
compares the device and inode of ``path`` with those of the file it opened, and on a difference
closes its connection (after a truncating checkpoint into the old file, so that the old WAL is
not read as the new file's) and opens the path again. The new file has no generation, so the
next write raises :class:`~gateway.flags.store.GenerationMismatch` and ``watch()`` yields: the
replica re-seeds it (:mod:`gateway.flags.restore`). Several workers on one file each notice it
for themselves, within one poll.

Workers notice each other's writes by polling ``PRAGMA data_version`` (SQLite changes it for a
connection when *another* connection commits), every ``poll_interval_s``; the default 0.25 s
keeps propagation between workers well under a second. The same file also holds what is not a
flag: the guard's outcome counts (:class:`~gateway.flags.outcomes.SQLiteOutcomeStore`, written
at every exchange under traffic) and the heartbeats. So when ``data_version`` moved, ``watch()``
reads a cheap flag-side token first (the generation, the audit sequence, and the count and
total of the flags' versions, in one statement) and yields only when that token moved: every
flag write appends an audit entry in its own transaction, so it always moves the sequence,
while outcome counts and heartbeats move nothing in it. The token is read after
``data_version``, so a write landing between the two is seen at once and none is missed. Calls
run in a worker thread (``asyncio.to_thread``), one at a time per store.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import msgspec

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.store import GenerationMismatch, ReplicaBeat, StoredFlags, VersionConflict
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
    replica TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    beat TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
"""

_state_decoder = msgspec.json.Decoder(FlagState)
_entry_decoder = msgspec.json.Decoder(AuditEntry)
_beat_decoder = msgspec.json.Decoder(ReplicaBeat)
_GENERATION = "SELECT value FROM meta WHERE key = 'generation'"
_FLAG_SIDE = (
    "SELECT (SELECT value FROM meta WHERE key = 'generation'), "
    "(SELECT seq FROM sqlite_sequence WHERE name = 'audit'), "
    "(SELECT count(*) FROM flags), (SELECT total(version) FROM flags)"
)
"""What moves with every flag-side change (a flag write, a new generation) and with nothing
else written to the file (outcome counts, heartbeats)."""

_Marks = tuple[int, int, tuple[object, ...]]
"""(connections opened, ``PRAGMA data_version``, the flag-side token)."""


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
    persistence = "fsync"

    def __init__(self, path: str, *, poll_interval_s: float = 0.25) -> None:
        self.path = Path(path)
        self.poll_interval_s = poll_interval_s
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self.connections = 0
        """How many times the file was opened (a new one after it was removed or replaced)."""
        self.token_reads = 0
        """How many times ``watch()`` saw another connection commit and read the flag-side
        token (whether or not that commit changed a flag)."""
        self._lock = asyncio.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._lock:
            try:
                conn = self._conn
                if conn is not None and self._identity != _identity(self.path):
                    # Removed or replaced: this connection writes to a file nobody will read.
                    self._conn = None
                    await _finish_in_thread(_retire, conn)
                    conn = None
                if conn is None:
                    conn = self._conn = await _finish_in_thread(self._connect)
                    self._identity = _identity(self.path)
                    self.connections += 1
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

    async def load(self) -> StoredFlags:
        def read(conn: sqlite3.Connection) -> tuple[str | None, list[tuple[str]], int]:
            conn.execute("BEGIN")
            try:
                row = conn.execute(_GENERATION).fetchone()
                rows = conn.execute("SELECT state FROM flags").fetchall()
                seq = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
                ).fetchone()
            finally:
                conn.execute("COMMIT")
            return (row[0] if row else None), rows, (int(seq[0]) if seq else 0)

        generation, rows, seq = await self._run(read)
        states = (_state_decoder.decode(row[0]) for row in rows)
        return StoredFlags(
            generation=generation, flags={state.route: state for state in states}, audit_seq=seq
        )

    async def get(self, route: str) -> FlagState | None:
        row = await self._run(
            lambda c: c.execute("SELECT state FROM flags WHERE route = ?", (route,)).fetchone()
        )
        return _state_decoder.decode(row[0]) if row else None

    async def claim_generation(self, candidate: str) -> str:
        def claim(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('generation', ?) ON CONFLICT DO NOTHING",
                (candidate,),
            )
            return str(conn.execute(_GENERATION).fetchone()[0])

        return await self._run(claim)

    async def write(
        self,
        state: FlagState,
        expected_version: int,
        entry: AuditEntry,
        *,
        generation: str,
        seq_floor: int = 0,
    ) -> AuditEntry:
        entry = msgspec.structs.replace(entry, generation=generation, seq=0, id="")

        def transaction(
            conn: sqlite3.Connection,
        ) -> AuditEntry | GenerationMismatch | FlagState | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                gen = conn.execute(_GENERATION).fetchone()
                if gen is None or gen[0] != generation:
                    conn.execute("ROLLBACK")
                    return GenerationMismatch(gen[0] if gen else None)
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
                seq: int | None = None
                if seq_floor:
                    last = conn.execute(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
                    ).fetchone()
                    seq = max(last[0] if last else 0, seq_floor) + 1
                cursor = conn.execute(
                    "INSERT INTO audit (id, route, at, entry) VALUES (?, ?, ?, ?)",
                    (seq, entry.route, entry.at, msgspec.json.encode(entry).decode()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            row_id = int(cursor.lastrowid or 0)
            return msgspec.structs.replace(entry, seq=row_id, id=str(row_id))

        result = await self._run(transaction)
        if isinstance(result, AuditEntry):
            return result
        if isinstance(result, GenerationMismatch):
            raise result
        raise VersionConflict(result)

    async def beat(self, beat: ReplicaBeat) -> None:
        await self._run(
            lambda c: c.execute(
                "INSERT INTO replicas (replica, expires_at, beat) VALUES (?, ?, ?) "
                "ON CONFLICT (replica) DO UPDATE SET expires_at = excluded.expires_at, "
                "beat = excluded.beat",
                (beat.replica, beat.expires_at, msgspec.json.encode(beat).decode()),
            )
        )

    async def replicas(self, now: float) -> list[ReplicaBeat]:
        def read(conn: sqlite3.Connection) -> list[tuple[str]]:
            if conn.execute(
                "SELECT 1 FROM replicas WHERE expires_at < ? LIMIT 1", (now,)
            ).fetchone():
                conn.execute("DELETE FROM replicas WHERE expires_at < ?", (now,))
            return conn.execute("SELECT beat FROM replicas ORDER BY replica").fetchall()

        rows = await self._run(read)
        return [_beat_decoder.decode(row[0]) for row in rows]

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
            entry.seq = int(row_id)
            out.append(entry)
        return out

    async def watch(self) -> AsyncIterator[None]:
        last = await self._run(lambda c: self._marks(c, None))
        while True:
            await asyncio.sleep(self.poll_interval_s)
            current = await self._run(partial(self._marks, last=last))
            changed = current[0] != last[0] or current[2] != last[2]
            last = current
            if changed:
                yield

    def _marks(self, conn: sqlite3.Connection, last: _Marks | None) -> _Marks:
        """The watch's marks (see :data:`_Marks`), in the worker thread. The connection count
        moves when the file was removed or replaced (and opened again), ``data_version`` on any
        commit by another connection, the token on a flag-side change only; the token is read
        only when one of the first two moved since ``last``."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        if last is not None and last[0] == self.connections and last[1] == version:
            return last
        self.token_reads += 1
        token = tuple(conn.execute(_FLAG_SIDE).fetchone())
        return self.connections, version, token

    async def aclose(self) -> None:
        async with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _retire(conn: sqlite3.Connection) -> None:
    """Close a connection whose file was removed or replaced.

    SQLite finds the WAL by name (``PATH-wal``): left as it is, the old file's WAL would be
    read as the new file's. A truncating checkpoint empties it first (into the old file).
    """
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``; ``None`` if there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
