"""Late feedback's memory (gateway.quality.feedback.RecentRequests): bounded by count and age.

The oldest request id is dropped first when the map is full; an id older than the TTL is
unknown; feedback is accepted once per id (409 ``feedback_already_recorded`` the second time)
and an unknown id is 404 ``request_not_found``.
"""

from __future__ import annotations

import random
import tracemalloc

import pytest

from gateway.errors import ConflictError, NotFoundError
from gateway.quality.feedback import Attribution, RecentRequests


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def attribution(at: float, *, role: str = "candidate") -> Attribution:
    return Attribution(
        route="support-triage",
        variant="finetuned",
        role=role,
        rollout_id="ro_1",
        failed=False,
        guarded=True,
        at=at,
    )


def test_claim_returns_the_attribution_and_marks_it() -> None:
    """A remembered id is claimed with its route, variant, role and rollout id."""
    clock = FakeClock()
    recent = RecentRequests(10, 60.0, clock=clock)
    recent.remember("req-1", attribution(clock()))
    item = recent.claim("req-1")
    assert (item.route, item.variant, item.role, item.rollout_id) == (
        "support-triage",
        "finetuned",
        "candidate",
        "ro_1",
    )
    assert item.feedback is True


def test_memory_is_bounded_and_drops_the_oldest_first() -> None:
    """With room for 3, a 4th id evicts the 1st; the others are still there."""
    clock = FakeClock()
    recent = RecentRequests(3, 60.0, clock=clock)
    for index in range(1, 5):
        recent.remember(f"req-{index}", attribution(clock()))
    assert len(recent) == 3
    with pytest.raises(NotFoundError):
        recent.claim("req-1")
    for index in range(2, 5):
        recent.claim(f"req-{index}")


def test_remembering_an_id_again_makes_it_the_newest() -> None:
    """Re-remembering req-1 moves it to the end, so req-2 is the one evicted next."""
    clock = FakeClock()
    recent = RecentRequests(2, 60.0, clock=clock)
    recent.remember("req-1", attribution(clock()))
    recent.remember("req-2", attribution(clock()))
    recent.remember("req-1", attribution(clock(), role="fallback"))
    recent.remember("req-3", attribution(clock()))
    assert recent.claim("req-1").role == "fallback"
    with pytest.raises(NotFoundError):
        recent.claim("req-2")


def test_an_id_expires_after_the_ttl() -> None:
    """Claimable up to exactly ttl_s after it was stamped; unknown a moment later."""
    clock = FakeClock(1000.0)
    recent = RecentRequests(10, 30.0, clock=clock)
    recent.remember("fresh", attribution(clock()))
    recent.remember("stale", attribution(clock()))
    clock.now = 1030.0
    recent.claim("fresh")
    clock.now = 1030.001
    with pytest.raises(NotFoundError) as caught:
        recent.claim("stale")
    assert caught.value.code == "request_not_found"


def test_claiming_twice_is_a_conflict() -> None:
    """The second verdict on one request is refused: 409 feedback_already_recorded."""
    recent = RecentRequests(10, 60.0, clock=FakeClock())
    recent.remember("req-1", attribution(1000.0))
    recent.claim("req-1")
    with pytest.raises(ConflictError) as caught:
        recent.claim("req-1")
    assert caught.value.status_code == 409
    assert caught.value.code == "feedback_already_recorded"


def test_an_unknown_id_is_not_found_and_names_the_field() -> None:
    """404 request_not_found, param request_id, and the message says how long ids are kept."""
    recent = RecentRequests(10, 86_400.0, clock=FakeClock())
    with pytest.raises(NotFoundError) as caught:
        recent.claim("nope")
    assert caught.value.status_code == 404
    assert caught.value.code == "request_not_found"
    assert caught.value.param == "request_id"
    assert "'nope'" in caught.value.message
    assert "86400 s" in caught.value.message


def test_now_is_the_injected_clock() -> None:
    """Attributions are stamped with the same clock that expires them."""
    clock = FakeClock(42.0)
    assert RecentRequests(1, 1.0, clock=clock).now() == 42.0


def test_the_index_agrees_with_a_naive_ring() -> None:
    """5,000 seeded random remembers and claims on a map of 7 against a naive model (a list of
    7 slots written in turn, searched one by one; an id remembered again leaves its old slot
    empty): every claim answers the same. Few places and many ids make probe runs wrap and
    entries shift back after deletions."""
    rng = random.Random(7)
    clock = FakeClock()
    recent = RecentRequests(7, 1e9, clock=clock)
    ring: list[list[object] | None] = [None] * 7
    written = 0
    for step in range(5000):
        request_id = f"req-{rng.randrange(40)}"
        held = next((entry for entry in ring if entry and entry[0] == request_id), None)
        if rng.random() < 0.6:
            role = rng.choice(["candidate", "fallback"])
            recent.remember(request_id, attribution(clock(), role=role))
            if held is not None:
                ring[ring.index(held)] = None
            ring[written % 7] = [request_id, role, False]
            written += 1
        elif held is None:
            with pytest.raises(NotFoundError):
                recent.claim(request_id)
        elif held[2]:
            with pytest.raises(ConflictError):
                recent.claim(request_id)
        else:
            assert recent.claim(request_id).role == held[1], step
            held[2] = True
        assert len(recent) == sum(entry is not None for entry in ring)


def test_memory_is_taken_at_start_and_does_not_grow() -> None:
    """Remembering 20,000 ids in a map of 1,000 allocates no more than a few KiB beyond what
    the constructor took (traced allocations, not RSS)."""
    tracemalloc.start()
    try:
        recent = RecentRequests(1000, 60.0, clock=FakeClock())
        item = attribution(1000.0)
        recent.remember("warm-up", item)
        before, _ = tracemalloc.get_traced_memory()
        for index in range(20_000):
            recent.remember(f"req_{index:032x}", item)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(recent) == 1000
    assert after - before < 4096
