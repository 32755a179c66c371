"""The multi-replica flag store: flags and audit in Redis, changes announced by pub/sub.

Keys (``NS`` is ``GATEWAY_FLAG_STORE_NAMESPACE``, default ``gateway``):

* ``NS:flags`` hash, route -> the state as JSON;
* ``NS:generation`` string, the store's generation (written once, by the first replica that
  finds it missing; see :mod:`gateway.flags.store`);
* ``NS:audit`` stream, one entry per change (append-only by nature; ``XREVRANGE`` reads it),
  with fields ``route``, ``seq`` and ``entry`` (JSON);
* ``NS:audit:seq`` counter, the last audit ``seq``;
* ``NS:flags:version`` counter, incremented by every write;
* ``NS:flags:changed`` pub/sub channel, the route name published after every write;
* ``NS:replicas`` hash, replica id -> its heartbeat as JSON (expired ones are deleted when
  read; the hash itself expires when no replica beats any more).

A write is one Lua script (atomic in Redis): check the generation and the stored version, set
the state, bump the audit sequence, append the audit entry, bump the counter, publish. Each
replica subscribes to the channel and, because pub/sub drops messages while a subscriber is
disconnected, also compares the counter and the generation every ``poll_interval_s``: a Redis
restarted empty or restored from an older snapshot changes at least one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.store import GenerationMismatch, ReplicaBeat, StoredFlags, VersionConflict
from gateway.routing import FlagState

__all__ = ["RedisFlagStore"]

_T = TypeVar("_T")

_CAS = """
local generation = redis.call('GET', KEYS[5])
if generation ~= ARGV[5] then
  return {-1, generation or ''}
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if current then version = cjson.decode(current)['version'] end
if version ~= tonumber(ARGV[2]) then
  return {0, current or ''}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local seq = redis.call('INCR', KEYS[6])
local floor = tonumber(ARGV[6])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[6], seq)
end
local id = redis.call('XADD', KEYS[2], '*', 'route', ARGV[1], 'seq', seq, 'entry', ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return {1, seq, id}
"""

_CLAIM = """
local generation = redis.call('GET', KEYS[1])
if generation then return generation end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], '')
return ARGV[1]
"""

_state_decoder = msgspec.json.Decoder(FlagState)
_entry_decoder = msgspec.json.Decoder(AuditEntry)
_beat_decoder = msgspec.json.Decoder(ReplicaBeat)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisFlagStore:
    """Flags and audit in Redis (``GATEWAY_FLAG_STORE=redis://HOST:PORT/DB``)."""

    kind = "redis"
    persistence = "unknown"

    def __init__(self, url: str, *, namespace: str = "gateway", poll_interval_s: float = 1.0):
        self.poll_interval_s = poll_interval_s
        # One retry on a new connection: after Redis restarts, pooled connections are dead and
        # the first command on each would fail. A write whose reply was lost and that is sent
        # again meets its own state and is taken as written (FlagService checks that).
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=2.0,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._flags = f"{namespace}:flags"
        self._audit = f"{namespace}:audit"
        self._version = f"{namespace}:flags:version"
        self._channel = f"{namespace}:flags:changed"
        self._generation = f"{namespace}:generation"
        self._seq = f"{namespace}:audit:seq"
        self._replicas = f"{namespace}:replicas"
        self._cas = self._redis.register_script(_CAS)
        self._claim = self._redis.register_script(_CLAIM)

    async def _call(self, op: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await op()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(
                f"The flag store (Redis) is unavailable: {type(exc).__name__}"
            ) from None

    async def open(self) -> None:
        await self._call(self._redis.ping)
        try:
            info: Any = await self._redis.info("persistence")
        except RedisError:  # INFO may be renamed or refused by a managed Redis
            self.persistence = "unknown"
        else:
            self.persistence = "appendonly" if int(info.get("aof_enabled", 0)) else "none"

    async def load(self) -> StoredFlags:
        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._generation)
                pipe.hgetall(self._flags)
                pipe.get(self._seq)
                result: list[Any] = await pipe.execute()
                return result

        generation, raw, seq = await self._call(read)
        states = (_state_decoder.decode(value) for value in raw.values())
        return StoredFlags(
            generation=_text(generation) if generation else None,
            flags={state.route: state for state in states},
            audit_seq=int(seq or 0),
        )

    async def get(self, route: str) -> FlagState | None:
        raw = await self._call(lambda: self._redis.hget(self._flags, route))
        return _state_decoder.decode(raw) if raw else None

    async def claim_generation(self, candidate: str) -> str:
        keys = [self._generation, self._version, self._channel]
        result = await self._call(lambda: self._claim(keys=keys, args=[candidate]))
        return _text(result)

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
        keys = [
            self._flags,
            self._audit,
            self._version,
            self._channel,
            self._generation,
            self._seq,
        ]
        args: list[Any] = [
            state.route,
            expected_version,
            msgspec.json.encode(state),
            msgspec.json.encode(entry),
            generation,
            seq_floor,
        ]
        result: Any = await self._call(lambda: self._cas(keys=keys, args=args))
        if int(result[0]) == -1:
            raise GenerationMismatch(_text(result[1]) or None)
        if int(result[0]) != 1:
            current = result[1]
            raise VersionConflict(_state_decoder.decode(current) if current else None)
        return msgspec.structs.replace(entry, seq=int(result[1]), id=_text(result[2]))

    async def beat(self, beat: ReplicaBeat) -> None:
        ttl = max(1, int(beat.expires_at - beat.at + 1))

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._replicas, beat.replica, msgspec.json.encode(beat))
                pipe.expire(self._replicas, ttl)
                await pipe.execute()

        await self._call(write)

    async def replicas(self, now: float) -> list[ReplicaBeat]:
        raw: dict[Any, Any] = await self._call(lambda: self._redis.hgetall(self._replicas))
        beats = sorted((_beat_decoder.decode(value) for value in raw.values()), key=_by_id)
        expired = [b.replica for b in beats if b.expires_at < now]
        if expired:
            await self._call(lambda: self._redis.hdel(self._replicas, *expired))
        return [b for b in beats if b.expires_at >= now]

    async def history(self, route: str | None, limit: int) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        last = "+"
        # Read newest first in pages; filter by route client-side (one stream for all routes).
        while len(out) < limit:
            page: Any = await self._call(
                partial(self._redis.xrevrange, self._audit, max=last, count=500)
            )
            if not page:
                break
            for entry_id, fields in page:
                ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                if ident == last:
                    continue
                if route is not None and fields.get(b"route", b"").decode() != route:
                    continue
                entry = _entry_decoder.decode(fields[b"entry"])
                entry.id = ident
                entry.seq = int(fields.get(b"seq", b"0"))
                out.append(entry)
                if len(out) >= limit:
                    break
            last_id = page[-1][0]
            next_last = last_id.decode() if isinstance(last_id, bytes) else str(last_id)
            if next_last == last or len(page) < 500:
                break
            last = next_last
        return out

    async def watch(self) -> AsyncIterator[None]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._call(lambda: pubsub.subscribe(self._channel))
            last = await self._marks()
            while True:
                message = await self._call(lambda: pubsub.get_message(timeout=self.poll_interval_s))
                if message is not None:
                    last = await self._marks()
                    yield
                    continue
                current = await self._marks()
                if current != last:
                    last = current
                    yield
        finally:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), timeout=1.0)  # type: ignore[no-untyped-call]

    async def _marks(self) -> list[Any]:
        """The change counter and the generation: either moves when the store changes."""
        result: list[Any] = await self._call(
            lambda: self._redis.mget([self._version, self._generation])
        )
        return result

    async def aclose(self) -> None:
        await self._redis.aclose()


def _by_id(beat: ReplicaBeat) -> str:
    return beat.replica
