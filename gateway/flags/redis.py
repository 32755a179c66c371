"""The multi-replica flag store: flags and audit in Redis, changes announced by pub/sub.

Keys (``NS`` is ``GATEWAY_FLAG_STORE_NAMESPACE``, default ``gateway``):

* ``NS:flags`` hash, route -> the state as JSON;
* ``NS:audit`` stream, one entry per change (append-only by nature; ``XREVRANGE`` reads it);
* ``NS:flags:version`` counter, incremented by every write;
* ``NS:flags:changed`` pub/sub channel, the route name published after every write.

A write is one Lua script (atomic in Redis): check the stored version, set the state, append the
audit entry, bump the counter, publish. Each replica subscribes to the channel and, because
pub/sub drops messages while a subscriber is disconnected, also compares the counter every
``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailableError
from gateway.flags.changes import AuditEntry
from gateway.flags.store import VersionConflict
from gateway.routing import FlagState

__all__ = ["RedisFlagStore"]

_T = TypeVar("_T")

_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if current then version = cjson.decode(current)['version'] end
if version ~= tonumber(ARGV[2]) then
  return {0, current or ''}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'route', ARGV[1], 'entry', ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return {1, ''}
"""

_state_decoder = msgspec.json.Decoder(FlagState)
_entry_decoder = msgspec.json.Decoder(AuditEntry)


class RedisFlagStore:
    """Flags and audit in Redis (``GATEWAY_FLAG_STORE=redis://HOST:PORT/DB``)."""

    kind = "redis"

    def __init__(self, url: str, *, namespace: str = "gateway", poll_interval_s: float = 1.0):
        self.poll_interval_s = poll_interval_s
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=2.0, health_check_interval=10
        )
        self._flags = f"{namespace}:flags"
        self._audit = f"{namespace}:audit"
        self._version = f"{namespace}:flags:version"
        self._channel = f"{namespace}:flags:changed"
        self._cas = self._redis.register_script(_CAS)

    async def _call(self, op: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await op()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(
                f"The flag store (Redis) is unavailable: {type(exc).__name__}"
            ) from None

    async def open(self) -> None:
        await self._call(self._redis.ping)

    async def load(self) -> dict[str, FlagState]:
        raw: dict[Any, Any] = await self._call(lambda: self._redis.hgetall(self._flags))
        states = (_state_decoder.decode(value) for value in raw.values())
        return {state.route: state for state in states}

    async def get(self, route: str) -> FlagState | None:
        raw = await self._call(lambda: self._redis.hget(self._flags, route))
        return _state_decoder.decode(raw) if raw else None

    async def write(self, state: FlagState, expected_version: int, entry: AuditEntry) -> None:
        keys = [self._flags, self._audit, self._version, self._channel]
        args: list[Any] = [
            state.route,
            expected_version,
            msgspec.json.encode(state),
            msgspec.json.encode(entry),
        ]
        result: Any = await self._call(lambda: self._cas(keys=keys, args=args))
        if int(result[0]) != 1:
            current = result[1]
            raise VersionConflict(_state_decoder.decode(current) if current else None)

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
            last = await self._call(lambda: self._redis.get(self._version))
            while True:
                message = await self._call(lambda: pubsub.get_message(timeout=self.poll_interval_s))
                if message is not None:
                    last = await self._call(lambda: self._redis.get(self._version))
                    yield
                    continue
                current = await self._call(lambda: self._redis.get(self._version))
                if current != last:
                    last = current
                    yield
        finally:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(pubsub.aclose(), timeout=1.0)  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await self._redis.aclose()
