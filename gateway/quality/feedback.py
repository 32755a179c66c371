"""Attributing late feedback to the request it judges: a bounded map of recent request ids.

The app (or a reviewer) may post ``POST /v1/feedback`` minutes after the answer. The gateway
keeps the last ``GATEWAY_FEEDBACK_MAX_REQUESTS`` request ids (oldest dropped first) for at most
``GATEWAY_FEEDBACK_TTL_S`` seconds, each with its route, variant, role and rollout id, so a
verdict lands on the right side of the right rollout. Memory is bounded: about 200 bytes per id.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ConflictError, NotFoundError

__all__ = ["Attribution", "RecentRequests"]


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
    """request id -> :class:`Attribution`, bounded by count and age."""

    def __init__(
        self, max_requests: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._items: OrderedDict[str, Attribution] = OrderedDict()
        self._max = max_requests
        self._ttl = ttl_s
        self._clock = clock

    def now(self) -> float:
        """The clock attributions are stamped and expired with."""
        return self._clock()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, attribution: Attribution) -> None:
        items = self._items
        items[request_id] = attribution
        items.move_to_end(request_id)
        while len(items) > self._max:
            items.popitem(last=False)

    def claim(self, request_id: str) -> Attribution:
        """The attribution of a request id, marked as having received feedback.

        Raises:
            NotFoundError: unknown or expired id (404, code ``request_not_found``).
            ConflictError: feedback was already recorded for it (409).
        """
        item = self._items.get(request_id)
        if item is None or self._clock() - item.at > self._ttl:
            raise NotFoundError(
                f"No recent request '{request_id}': feedback must name the x-request-id of a "
                f"request answered by this gateway replica within {self._ttl:g} s.",
                param="request_id",
                code="request_not_found",
            )
        if item.feedback:
            raise ConflictError(
                f"Feedback for '{request_id}' was already recorded.",
                code="feedback_already_recorded",
            )
        item.feedback = True
        return item
