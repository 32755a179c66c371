"""The per-request flag decision (DESIGN.md section 5): order of rules, edges, random draws."""

from __future__ import annotations

import hashlib
import math
import random

import msgspec
import pytest

from gateway.routing.decision import Decision, FlagState, Role, Targeting, decide

ROUTE = "support-triage"
SUBJECTS = [f"subject-{i}" for i in range(2_000)]


def flag(**changes: object) -> FlagState:
    """An active flag of ROUTE at 50%, with ``changes`` applied."""
    return msgspec.structs.replace(FlagState(route=ROUTE, weight=50_000), **changes)


def reference_bucket(route: str, salt: str, subject: str) -> int:
    """DESIGN.md s5, written independently of gateway.routing.bucketing."""
    head = hashlib.sha256(f"{route}.{salt}.{subject}".encode()).hexdigest()[:16]
    return int(head, 16) * 100_000 // 2**64


EVERYTHING_TARGETED = Targeting(
    candidate_subjects=frozenset({"s"}),
    fallback_subjects=frozenset({"s"}),
    candidate_keys=frozenset({"k"}),
    fallback_keys=frozenset({"k"}),
)


@pytest.mark.parametrize("role", ["candidate", "fallback"])
@pytest.mark.parametrize(
    "state",
    [
        None,
        flag(status="rolled_back"),
        flag(enabled=False),
        flag(targeting=EVERYTHING_TARGETED),
        flag(weight=0),
        flag(weight=100_000),
    ],
    ids=["no-flag", "rolled-back", "disabled", "targeted", "weight-0", "weight-100000"],
)
def test_override_wins_over_every_other_rule(state: FlagState | None, role: Role) -> None:
    """A privileged forced variant beats no flag, rollback, kill switch, targeting and weight."""
    assert decide(state, "s", "k", override=role) == Decision(role, "override")


def test_rolled_back_serves_fallback_even_when_targeted_to_candidate() -> None:
    """A rolled-back flag sends a subject and key targeted to the candidate to the fallback."""
    targeting = Targeting(candidate_subjects=frozenset({"s"}), candidate_keys=frozenset({"k"}))
    state = flag(status="rolled_back", weight=100_000, targeting=targeting)
    assert decide(state, "s", "k") == Decision("fallback", "rolled_back")


def test_disabled_serves_fallback_even_when_targeted_to_candidate() -> None:
    """A disabled flag (kill switch) beats candidate targeting and a full weight."""
    targeting = Targeting(candidate_subjects=frozenset({"s"}), candidate_keys=frozenset({"k"}))
    state = flag(enabled=False, weight=100_000, targeting=targeting)
    assert decide(state, "s", "k") == Decision("fallback", "disabled")


def test_candidate_subject_targeting_wins_over_weight_zero() -> None:
    """A subject on the candidate list gets the candidate at weight 0 (reason targeted)."""
    state = flag(weight=0, targeting=Targeting(candidate_subjects=frozenset({"tester"})))
    assert decide(state, "tester", None) == Decision("candidate", "targeted")
    assert decide(state, "someone-else", None) == Decision("fallback", "rollout")


def test_fallback_subject_targeting_wins_over_full_weight() -> None:
    """A subject on the fallback list gets the fallback at weight 100000."""
    state = flag(weight=100_000, targeting=Targeting(fallback_subjects=frozenset({"vip"})))
    assert decide(state, "vip", None) == Decision("fallback", "targeted")
    assert decide(state, "someone-else", None) == Decision("candidate", "rollout")


def test_key_targeting_applies_with_and_without_a_subject() -> None:
    """Client key names on a list are targeted whether or not the request has a subject."""
    targeting = Targeting(candidate_keys=frozenset({"eval"}), fallback_keys=frozenset({"bank"}))
    low, high = flag(weight=0, targeting=targeting), flag(weight=100_000, targeting=targeting)
    assert decide(low, None, "eval") == Decision("candidate", "targeted")
    assert decide(low, "any-subject", "eval") == Decision("candidate", "targeted")
    assert decide(high, None, "bank") == Decision("fallback", "targeted")
    assert decide(high, "any-subject", "bank") == Decision("fallback", "targeted")
    assert decide(low, None, "web-app", rng=random.Random(0)) == Decision("fallback", "rollout")


def test_subject_on_both_lists_gets_the_fallback() -> None:
    """When a subject is on the candidate and the fallback list, the (safe) fallback wins."""
    both = Targeting(candidate_subjects=frozenset({"s"}), fallback_subjects=frozenset({"s"}))
    assert decide(flag(weight=100_000, targeting=both), "s", None) == Decision(
        "fallback", "targeted"
    )


def test_key_on_both_lists_gets_the_fallback() -> None:
    """When a key name is on the candidate and the fallback list, the fallback wins."""
    both = Targeting(candidate_keys=frozenset({"k"}), fallback_keys=frozenset({"k"}))
    assert decide(flag(weight=100_000, targeting=both), None, "k") == Decision(
        "fallback", "targeted"
    )


@pytest.mark.parametrize(
    "targeting",
    [
        Targeting(candidate_subjects=frozenset({"s"}), fallback_keys=frozenset({"k"})),
        Targeting(candidate_keys=frozenset({"k"}), fallback_subjects=frozenset({"s"})),
    ],
    ids=["candidate-subject-fallback-key", "candidate-key-fallback-subject"],
)
def test_a_fallback_list_wins_over_a_candidate_list_of_the_other_kind(
    targeting: Targeting,
) -> None:
    """Subject on one side, key on the other: the fallback wins whichever kind names it."""
    assert decide(flag(weight=100_000, targeting=targeting), "s", "k") == Decision(
        "fallback", "targeted"
    )


def test_weight_zero_serves_everyone_the_fallback() -> None:
    """At weight 0 no subject and no subject-less request gets the candidate."""
    state = flag(weight=0)
    rng = random.Random(7)
    assert {decide(state, s, None) for s in SUBJECTS} == {Decision("fallback", "rollout")}
    assert {decide(state, None, None, rng=rng) for _ in range(1_000)} == {
        Decision("fallback", "rollout")
    }


def test_weight_full_serves_everyone_the_candidate() -> None:
    """At weight 100000 every subject and every subject-less request gets the candidate."""
    state = flag(weight=100_000)
    rng = random.Random(7)
    assert {decide(state, s, None) for s in SUBJECTS} == {Decision("candidate", "rollout")}
    assert {decide(state, None, None, rng=rng) for _ in range(1_000)} == {
        Decision("candidate", "rollout")
    }


@pytest.mark.parametrize(("salt", "expected_salt"), [("", ROUTE), ("rollout-7", "rollout-7")])
def test_subject_decision_is_the_sticky_bucket_with_route_as_default_salt(
    salt: str, expected_salt: str
) -> None:
    """With a subject, candidate iff sha256 bucket of route.salt.subject < weight; no salt set
    means the route name is the salt."""
    state = flag(weight=30_000, salt=salt)
    for s in SUBJECTS:
        expected: Role = (
            "candidate" if reference_bucket(ROUTE, expected_salt, s) < 30_000 else "fallback"
        )
        assert decide(state, s, None) == Decision(expected, "rollout"), s


def test_subject_decision_is_sticky_across_calls_and_rngs() -> None:
    """A subject's decision does not depend on the rng: it comes from its bucket."""
    state = flag(weight=50_000)
    first = [decide(state, s, None, rng=random.Random(1)) for s in SUBJECTS]
    second = [decide(state, s, None, rng=random.Random(2)) for s in SUBJECTS]
    assert first == second
    assert {d.role for d in first} == {"candidate", "fallback"}


@pytest.mark.parametrize("weight", [10_000, 30_000, 50_000])
def test_no_subject_draws_at_random_with_share_near_the_weight(weight: int) -> None:
    """Without a subject each request is a fresh draw from the given rng; over 10k draws the
    candidate share is the weight within 5 sigma of Binomial(10000, p)."""
    state = flag(weight=weight)
    rng = random.Random(20240601)
    n = 10_000
    hits = sum(decide(state, None, None, rng=rng).role == "candidate" for _ in range(n))
    p = weight / 100_000
    assert abs(hits - n * p) < 5 * math.sqrt(n * p * (1 - p)), hits


def test_no_subject_draws_are_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same sequence of decisions (the draw uses only the given rng)."""
    state = flag(weight=50_000)
    a, b = random.Random(99), random.Random(99)
    first = [decide(state, None, None, rng=a).role for _ in range(200)]
    second = [decide(state, None, None, rng=b).role for _ in range(200)]
    assert first == second
    assert set(first) == {"candidate", "fallback"}


def test_unknown_flag_serves_the_fallback_as_no_flag() -> None:
    """flag None (store cold and down) serves the fallback with reason no_flag."""
    assert decide(None, "s", "k") == Decision("fallback", "no_flag")
    assert decide(None, None, None) == Decision("fallback", "no_flag")
