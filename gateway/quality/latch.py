"""The local latch: a replica whose guard condemned a rollout stops serving its candidate at once.

The guard's rollback is a flag write, and a write can fail (the store is down) or take a while
to reach the store. The latch does not wait for it: the moment this replica's guard trips, the
request path sees the route as ``rolled_back`` for the condemned rollout id, whatever the flag
snapshot says, until a new rollout id replaces it (a person's ``release``). The runner keeps
retrying the store write; once it lands every replica serves ``rolled_back`` from the store.

:class:`LatchedFlags` is the :class:`~gateway.routing.FlagSource` the request path reads: with
no latch set (the normal case) it costs one empty-dict test per request.
"""

from __future__ import annotations

import msgspec

from gateway.routing import FlagSource, FlagState

__all__ = ["LatchedFlags"]


class LatchedFlags:
    """A flag source that overlays this replica's guard latches on the flag snapshot."""

    def __init__(self, flags: FlagSource) -> None:
        self._flags = flags
        self._latched: dict[str, str] = {}
        self._served: dict[str, tuple[FlagState, FlagState]] = {}

    def flag(self, route: str) -> FlagState | None:
        """The route's flag as the request path must see it (see the module docstring)."""
        state = self._flags.flag(route)
        if not self._latched or state is None:
            return state
        rollout_id = self._latched.get(route)
        if rollout_id is None or state.rollout_id != rollout_id or state.status == "rolled_back":
            return state
        served = self._served.get(route)
        if served is None or served[0] is not state:
            latched = msgspec.structs.replace(
                state, status="rolled_back", reason="rolled back by this replica's guard"
            )
            served = self._served[route] = (state, latched)
        return served[1]

    def latch(self, route: str, rollout_id: str) -> bool:
        """Serve ``route``'s fallback for ``rollout_id`` from now on. False if already latched."""
        if self._latched.get(route) == rollout_id:
            return False
        self._latched[route] = rollout_id
        self._served.pop(route, None)
        return True

    def forget(self, route: str, rollout_id: str) -> None:
        """Drop the latch of ``rollout_id`` (a new rollout replaced it)."""
        if self._latched.get(route) == rollout_id:
            del self._latched[route]
            self._served.pop(route, None)

    def latched(self, route: str) -> str | None:
        """The rollout id latched for ``route``, if any."""
        return self._latched.get(route)
