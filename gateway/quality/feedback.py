"""Attributing late feedback to the request it judges: a compact, bounded map of recent ids.

The app (or a reviewer) may post ``POST /v1/feedback`` minutes after the answer. The gateway
keeps the last ``GATEWAY_FEEDBACK_MAX_REQUESTS`` request ids (oldest dropped first) for at most
``GATEWAY_FEEDBACK_TTL_S`` seconds, each with its route, variant, role and rollout id, so a
verdict lands on the right side of the right rollout.

Memory is allocated once, at start-up, and never grows: about 31 bytes per id (3.1 MB for the
default 100,000), against about 250 bytes per id for a dict of objects, which made a gateway's
RSS grow by a third over its first 100,000 requests. The layout:

* a ring of ``max_requests`` slots in flat arrays: each id's 64-bit hash, its time, the index of
  its (route, variant, role, rollout id) in a small table of distinct values, and a byte of
  flags;
* an open-addressing index (linear probing, at most half full, backward-shift deletion) from
  the hash to the slot.

Ids are told apart by Python's string hash (SipHash, keyed at random per process, so clients
cannot aim for collisions): with 100,000 ids kept, the chance that an id is taken for another
is below 1e-14 per look-up. Strings hash once and cache it, so this costs the request nothing
beyond the look-up.

Writing a slot that is in use evicts its id, so ids leave in the order they came. An id
remembered again (a client reusing its ``x-request-id``) takes a new slot and leaves its old one
empty until the ring comes round, so with reused ids slightly fewer than ``max_requests`` are
kept.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ConflictError, NotFoundError

__all__ = ["Attribution", "RecentRequests"]

_USED = 1
_FAILED = 2
_GUARDED = 4
_FEEDBACK = 8
_BITS64 = (1 << 64) - 1


@dataclass(slots=True)
class Attribution:
    """What a request id stands for."""

    route: str
    variant: str
    role: str | None
    rollout_id: str | None
    failed: bool
    guarded: bool
    at: float
    feedback: bool = False


class RecentRequests:
    """request id -> :class:`Attribution`, bounded by count (oldest out first) and age.

    Args:
        max_requests: ids kept at most (``GATEWAY_FEEDBACK_MAX_REQUESTS``), >= 1; the memory
            for all of them is taken here.
        ttl_s: seconds an id can be claimed after it was remembered.
        clock: seconds, monotonic (a fake one in tests).
    """

    def __init__(
        self, max_requests: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self._cap = max_requests
        self._ttl = ttl_s
        self._clock = clock
        size = 1 << max(3, (2 * max_requests - 1).bit_length())  # at most half full
        self._mask = size - 1
        self._index = array("i", bytes(4 * size))  # slot + 1; 0 is an empty place
        self._hashes = array("Q", bytes(8 * max_requests))
        self._at = array("d", bytes(8 * max_requests))
        self._kind = array("I", bytes(4 * max_requests))
        self._flags = bytearray(max_requests)
        self._kinds: list[tuple[str, str, str | None, str | None]] = []
        self._kind_ids: dict[tuple[str, str, str | None, str | None], int] = {}
        self._next = 0
        self._count = 0

    def now(self) -> float:
        """The clock attributions are stamped and expired with."""
        return self._clock()

    def __len__(self) -> int:
        return self._count

    def remember(self, request_id: str, attribution: Attribution) -> None:
        """Keep ``request_id``; an id remembered again is replaced and becomes the newest."""
        hashed = hash(request_id) & _BITS64
        index, mask, hashes, flags = self._index, self._mask, self._hashes, self._flags
        place = hashed & mask
        while held := index[place]:  # the same id again: drop the old one
            if hashes[held - 1] == hashed:
                flags[held - 1] = 0
                self._unlink(place)
                break
            place = (place + 1) & mask
        slot = self._next
        if flags[slot] & _USED:  # the oldest id leaves
            place = hashes[slot] & mask
            while index[place] != slot + 1:
                place = (place + 1) & mask
            self._unlink(place)
        self._next = slot + 1 if slot + 1 < self._cap else 0
        kind = (attribution.route, attribution.variant, attribution.role, attribution.rollout_id)
        kind_id = self._kind_ids.get(kind)
        if kind_id is None:
            kind_id = self._kind_ids[kind] = len(self._kinds)
            self._kinds.append(kind)
        hashes[slot] = hashed
        self._at[slot] = attribution.at
        self._kind[slot] = kind_id
        flags[slot] = (
            _USED
            | (_FAILED if attribution.failed else 0)
            | (_GUARDED if attribution.guarded else 0)
            | (_FEEDBACK if attribution.feedback else 0)
        )
        place = hashed & mask
        while index[place]:
            place = (place + 1) & mask
        index[place] = slot + 1
        self._count += 1

    def claim(self, request_id: str) -> Attribution:
        """The attribution of a request id, marked as having received feedback.

        Raises:
            NotFoundError: unknown or expired id (404, code ``request_not_found``).
            ConflictError: feedback was already recorded for it (409).
        """
        place = self._find(hash(request_id) & _BITS64)
        slot = self._index[place] - 1 if place >= 0 else -1
        if slot < 0 or self._clock() - self._at[slot] > self._ttl:
            raise NotFoundError(
                f"No recent request '{request_id}': feedback must name the x-request-id of a "
                f"request answered by this gateway replica within {self._ttl:g} s.",
                param="request_id",
                code="request_not_found",
            )
        flags = self._flags[slot]
        if flags & _FEEDBACK:
            raise ConflictError(
                f"Feedback for '{request_id}' was already recorded.",
                code="feedback_already_recorded",
            )
        self._flags[slot] = flags | _FEEDBACK
        route, variant, role, rollout_id = self._kinds[self._kind[slot]]
        return Attribution(
            route=route,
            variant=variant,
            role=role,
            rollout_id=rollout_id,
            failed=bool(flags & _FAILED),
            guarded=bool(flags & _GUARDED),
            at=self._at[slot],
            feedback=True,
        )

    # -- the index --------------------------------------------------------------------------

    def _find(self, hashed: int) -> int:
        """The index place holding the slot of the id hashed to ``hashed``, or -1."""
        index, mask, hashes = self._index, self._mask, self._hashes
        place = hashed & mask
        while True:
            held = index[place]
            if not held:
                return -1
            if hashes[held - 1] == hashed:
                return place
            place = (place + 1) & mask

    def _unlink(self, place: int) -> None:
        """Empty an index place, shifting later entries of its probe run back into the gap."""
        index, mask, hashes = self._index, self._mask, self._hashes
        self._count -= 1
        gap = place
        index[gap] = 0
        place = gap
        while True:
            place = (place + 1) & mask
            held = index[place]
            if not held:
                return
            home = hashes[held - 1] & mask
            # The entry may fill the gap unless its home lies cyclically in (gap, place].
            if (place - home) & mask >= (place - gap) & mask:
                index[gap] = held
                index[place] = 0
                gap = place
