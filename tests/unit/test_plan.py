"""The request plan and the rules that hand a request to the fallback (pure: no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import FlagConfig, Price, Route, ShadowConfig, Variant
from gateway.errors import InvalidRequestError, PermissionDeniedError
from gateway.routing import Decision, FlagState, Targeting
from gateway.routing.plan import (
    FAILOVER,
    VIOLATION,
    CandidateModels,
    failover_to,
    plan_request,
    retry_on_violation,
)

ALL_REASONS = frozenset({"connect", "timeout", "5xx", "429", "invalid_response", "pool_exhausted"})


def variant(name: str, model: str, upstream: str = "up", route: str = "triage") -> Variant:
    return Variant(name, route, upstream, model, None, (), {}, 1e-6, 2e-6, True)


def route(
    *,
    fallback_upstream: str = "up",
    shadow: bool = False,
    passthrough: bool = False,
    failover_on: frozenset[str] = ALL_REASONS,
    on_violation: Any = "record",
) -> Route:
    return Route(
        name="triage",
        variants={
            "cand": variant("cand", "cand-model"),
            "fall": variant("fall", "fall-model", fallback_upstream),
        },
        candidate="cand",
        fallback="fall",
        flag=FlagConfig(),
        failover_on=failover_on,
        system_prompt_mode="replace",
        passthrough=passthrough,
        on_violation=on_violation,
        shadow=ShadowConfig(share=1.0) if shadow else None,
    )


def flag(**fields: Any) -> FlagState:
    return FlagState(route="triage", rollout_id="ro-1", **fields)


def plan(r: Route, f: FlagState | None, **kwargs: Any) -> Any:
    kwargs.setdefault("subject", None)
    kwargs.setdefault("key_name", None)
    return plan_request(r, f, CandidateModels({}), **kwargs)


def test_the_flag_decides_and_its_rollout_is_planned() -> None:
    """Full weight: the candidate, reason rollout, the flag's rollout id kept for the guard."""
    p = plan(route(), flag(weight=100_000))
    assert (p.variant.name, p.decision, p.rollout_id) == (
        "cand",
        Decision("candidate", "rollout"),
        "ro-1",
    )
    p = plan(route(), flag(weight=0))
    assert (p.variant.name, p.decision.reason, p.rollout_id) == ("fall", "rollout", "ro-1")


def test_unknown_flag_state_serves_the_fallback_without_a_rollout() -> None:
    p = plan(route(), None)
    assert (p.variant.name, p.decision.reason, p.rollout_id) == ("fall", "no_flag", None)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"status": "rolled_back", "weight": 100_000}, "rolled_back"),
        ({"enabled": False}, "disabled"),
    ],
)
def test_a_rolled_back_or_disabled_flag_serves_the_fallback(
    state: dict[str, Any], reason: str
) -> None:
    p = plan(route(), flag(**state))
    assert (p.variant.name, p.decision.reason) == ("fall", reason)


def test_targeting_uses_the_subject_and_the_key_name() -> None:
    targeting = Targeting(candidate_subjects=frozenset({"u1"}), fallback_keys=frozenset({"k"}))
    f = flag(weight=0, targeting=targeting)
    assert plan(route(), f, subject="u1").decision == Decision("candidate", "targeted")
    assert plan(route(), f, subject="u1", key_name="k").decision == Decision("fallback", "targeted")


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"weight": 100_000}, "shadow"),
        ({"weight": 0, "targeting": Targeting(candidate_subjects=frozenset({"u1"}))}, "shadow"),
        ({"weight": 0}, "shadow"),
        ({"enabled": False}, "disabled"),
        ({"status": "rolled_back"}, "rolled_back"),
    ],
)
def test_a_shadow_route_never_lets_the_candidate_answer(state: dict[str, Any], reason: str) -> None:
    """Every rollout or targeted decision on a shadow route becomes ``shadow``: the fallback
    answers (the candidate is asked in the background); a disabled or rolled-back flag says
    so instead."""
    p = plan(route(shadow=True), flag(**state), subject="u1")
    assert (p.variant.name, p.decision.role, p.decision.reason) == ("fall", "fallback", reason)
    assert p.rollout_id == "ro-1"


def test_a_passthrough_model_is_called_as_is_without_reading_the_flag() -> None:
    p = plan(route(passthrough=True), flag(weight=100_000))
    assert (p.variant.name, p.decision.reason, p.rollout_id) == ("fall", "passthrough", None)


@pytest.mark.parametrize(
    ("forced", "name", "role"),
    [
        ("candidate", "cand", "candidate"),
        ("fallback", "fall", "fallback"),
        ("fall", "fall", "fallback"),
    ],
)
def test_an_allowed_key_forces_a_variant_by_role_or_name(forced: str, name: str, role: str) -> None:
    """An override wins over everything (even a rolled-back flag) and counts for no rollout."""
    p = plan(
        route(shadow=True),
        flag(status="rolled_back"),
        forced_variant=forced,
        may_override=True,
    )
    assert (p.variant.name, p.decision, p.rollout_id) == (name, Decision(role, "override"), None)  # type: ignore[arg-type]


def test_forcing_a_variant_without_permission_is_a_403() -> None:
    with pytest.raises(PermissionDeniedError):
        plan(route(), flag(), forced_variant="candidate", may_override=False)


def test_forcing_an_unknown_variant_is_a_400_naming_the_header() -> None:
    with pytest.raises(InvalidRequestError) as info:
        plan(route(), flag(), forced_variant="nope", may_override=True)
    assert info.value.param == "x-gateway-variant"
    assert "cand, fall" in info.value.message


def test_a_registered_candidate_model_is_planned_priced_and_built_once() -> None:
    """``candidate_model`` from the flag replaces the file's model, priced from ``prices``;
    the same variant object serves every later request; an unpriced model is marked so."""
    candidates = CandidateModels({"ft:v2": Price(input=1.0, output=4.0)})
    f = flag(weight=100_000, candidate_model="ft:v2")
    first = plan_request(route(), f, candidates, subject=None, key_name=None).variant
    again = plan_request(route(), f, candidates, subject="x", key_name=None).variant
    assert first is again
    assert (first.name, first.model, first.priced) == ("cand", "ft:v2", True)
    assert first.cost_usd(1_000_000, 1_000_000) == pytest.approx(5.0)
    unpriced = candidates.candidate(route(), flag(candidate_model="ft:v3"))
    assert (unpriced.model, unpriced.priced, unpriced.cost_usd(10, 10)) == ("ft:v3", False, 0.0)
    r = route()
    assert candidates.candidate(r, flag(candidate_model="cand-model")) is r.variants["cand"]
    assert candidates.candidate(r, None) is r.variants["cand"]


def test_the_random_draw_without_a_subject_splits_by_weight() -> None:
    """No subject: a draw per request; about the weight's share goes to the candidate (25%;
    the bounds are over 7 standard deviations of 4,000 draws away)."""
    picks = [plan(route(), flag(weight=25_000)).decision.role for _ in range(4000)]
    assert 0.2 < picks.count("candidate") / len(picks) < 0.3


R = route()
CAND, FALL = R.variants["cand"], R.variants["fall"]
ROLLOUT = Decision("candidate", "rollout")


@pytest.mark.parametrize("reason", sorted(ALL_REASONS - {"pool_exhausted"}))
def test_the_candidate_fails_over_on_every_listed_reason(reason: str) -> None:
    assert failover_to(R, CAND, ROLLOUT, reason) is FALL


@pytest.mark.parametrize(
    ("r", "v", "decision", "reason"),
    [
        (R, CAND, ROLLOUT, None),  # not a failure the route fails over on
        (route(failover_on=frozenset({"timeout"})), CAND, ROLLOUT, "5xx"),  # not listed
        (R, FALL, Decision("fallback", "rollout"), "5xx"),  # the fallback itself failed
        (R, CAND, Decision("candidate", "override"), "5xx"),  # an evaluation asked for it
        (R, FALL, FAILOVER, "5xx"),  # already failed over
        (R, CAND, ROLLOUT, "pool_exhausted"),  # the same pool would keep it waiting again
    ],
)
def test_no_failover(r: Route, v: Variant, decision: Decision, reason: str | None) -> None:
    assert failover_to(r, v, decision, reason) is None


def test_an_exhausted_pool_fails_over_to_a_fallback_on_another_upstream() -> None:
    r = route(fallback_upstream="other")
    assert failover_to(r, r.variants["cand"], ROLLOUT, "pool_exhausted") is r.variants["fall"]


def test_a_failed_check_retries_on_the_fallback_only_when_the_route_says_so() -> None:
    strict = route(on_violation="fallback")
    cand, fall = strict.variants["cand"], strict.variants["fall"]
    assert retry_on_violation(strict, cand, ROLLOUT, ["labels"]) is fall
    assert retry_on_violation(strict, cand, ROLLOUT, []) is None
    assert retry_on_violation(strict, cand, Decision("candidate", "override"), ["labels"]) is None
    assert retry_on_violation(strict, fall, VIOLATION, ["labels"]) is None
    assert retry_on_violation(R, CAND, ROLLOUT, ["labels"]) is None  # on_violation: record
