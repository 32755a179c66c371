"""Flag changes as pure functions (gateway.flags.changes): patch, rollback, release, register.

Each change bumps the version by one and stamps who, when and why; a reason is always required;
weights stay within 0..100000; rollback latches until release, which starts a new rollout id,
and nothing else can expose the candidate of a rolled-back flag; a change that changes nothing
returns the very same state (no version, no audit entry).
"""

from __future__ import annotations

import msgspec
import pytest

from gateway.errors import ConflictError, UnprocessableError
from gateway.flags.changes import (
    FlagPatch,
    apply_patch,
    new_rollout_id,
    register_candidate,
    release,
    rollback,
)
from gateway.routing import FlagState, Targeting

ROUTE = "support-triage"
NOW = 1_700_000_000.5


def state(**changes: object) -> FlagState:
    """An active flag of ROUTE at version 3, weight 10%, with ``changes`` applied."""
    base = FlagState(route=ROUTE, weight=10_000, salt="s", rollout_id="ro_first", version=3)
    return msgspec.structs.replace(base, **changes)


# -- apply_patch --------------------------------------------------------------------------------


def test_patch_bumps_version_by_one_and_stamps_actor_time_and_reason() -> None:
    """A patch returns version+1 with updated_by, updated_at and the (stripped) reason."""
    new = apply_patch(
        state(), FlagPatch(weight=20_000), actor="ops (alice)", reason="  ramp  ", now=NOW
    )
    assert new.version == 4
    assert new.weight == 20_000
    assert new.updated_by == "ops (alice)"
    assert new.updated_at == NOW
    assert new.reason == "ramp"


def test_patch_leaves_unmentioned_fields_and_identity_unchanged() -> None:
    """Fields the patch leaves as None, and route, salt, status and rollout id, stay as they are."""
    old = state(enabled=True, weight=10_000)
    new = apply_patch(old, FlagPatch(enabled=False), actor="a", reason="kill", now=NOW)
    assert new.enabled is False
    assert (new.weight, new.route, new.salt, new.status, new.rollout_id) == (
        10_000,
        ROUTE,
        "s",
        "active",
        "ro_first",
    )
    assert new.targeting == old.targeting


def test_patch_does_not_modify_the_state_it_was_given() -> None:
    """The input state is a value: the change builds a new one."""
    old = state()
    apply_patch(old, FlagPatch(weight=0), actor="a", reason="r", now=NOW)
    assert old.weight == 10_000
    assert old.version == 3


@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"])
def test_patch_requires_a_non_blank_reason(reason: str | None) -> None:
    """No reason, or only whitespace, is refused with 422 naming the ``reason`` field."""
    with pytest.raises(UnprocessableError) as caught:
        apply_patch(state(), FlagPatch(weight=1), actor="a", reason=reason, now=NOW)
    assert caught.value.status_code == 422
    assert caught.value.param == "reason"


@pytest.mark.parametrize("weight", [0, 1, 50_000, 99_999, 100_000])
def test_patch_accepts_every_weight_from_0_to_100000(weight: int) -> None:
    """Both ends of the range are valid weights."""
    assert apply_patch(
        state(), FlagPatch(weight=weight), actor="a", reason="r", now=NOW
    ).weight == (weight)


@pytest.mark.parametrize("weight", [-1, 100_001, 10**9])
def test_patch_refuses_weights_outside_0_to_100000(weight: int) -> None:
    """A weight below 0 or above 100000 is 422 naming ``weight`` and the allowed range."""
    with pytest.raises(UnprocessableError) as caught:
        apply_patch(state(), FlagPatch(weight=weight), actor="a", reason="r", now=NOW)
    assert caught.value.param == "weight"
    assert "100000" in caught.value.message


def test_patch_with_nothing_to_change_is_refused() -> None:
    """An empty patch is 422 rather than a version bump that changes nothing."""
    with pytest.raises(UnprocessableError):
        apply_patch(state(), FlagPatch(), actor="a", reason="r", now=NOW)


def test_patch_checks_the_reason_before_the_weight() -> None:
    """A patch missing its reason is refused for the reason even when the weight is also bad."""
    with pytest.raises(UnprocessableError) as caught:
        apply_patch(state(), FlagPatch(weight=-5), actor="a", reason=None, now=NOW)
    assert caught.value.param == "reason"


def test_patch_targeting_list_replaces_the_list_and_keeps_the_others() -> None:
    """A given targeting list replaces the stored one wholesale; lists not given are kept."""
    old = state(
        targeting=Targeting(
            candidate_subjects=frozenset({"a", "b"}),
            fallback_subjects=frozenset({"x"}),
            candidate_keys=frozenset({"k1"}),
        )
    )
    new = apply_patch(
        old, FlagPatch(candidate_subjects=["c"]), actor="a", reason="retarget", now=NOW
    )
    assert new.targeting == Targeting(
        candidate_subjects=frozenset({"c"}),
        fallback_subjects=frozenset({"x"}),
        candidate_keys=frozenset({"k1"}),
    )


def test_patch_empty_targeting_list_clears_that_list() -> None:
    """``[]`` is a change (clear a non-empty list), unlike ``None`` (leave it)."""
    old = state(targeting=Targeting(fallback_keys=frozenset({"k"})))
    new = apply_patch(old, FlagPatch(fallback_keys=[]), actor="a", reason="clear", now=NOW)
    assert new.targeting.fallback_keys == frozenset()
    assert new.version == old.version + 1


def test_patch_targeting_lists_are_deduplicated_sets() -> None:
    """Repeated entries collapse: targeting lists are sets."""
    new = apply_patch(
        state(), FlagPatch(candidate_keys=["eval", "eval"]), actor="a", reason="r", now=NOW
    )
    assert new.targeting.candidate_keys == frozenset({"eval"})


@pytest.mark.parametrize(
    ("patch", "what"),
    [
        (FlagPatch(weight=100_000), "weight 10000 -> 100000"),
        (FlagPatch(weight=0), "weight 10000 -> 0"),
        (FlagPatch(enabled=True, weight=10_000), "enabling"),
        (FlagPatch(candidate_subjects=["alice"]), "adding alice to candidate_subjects"),
        (FlagPatch(candidate_keys=["eval"]), "adding eval to candidate_keys"),
    ],
)
def test_patch_that_could_expose_the_candidate_of_a_rolled_back_flag_is_409(
    patch: FlagPatch, what: str
) -> None:
    """The latch is absolute: a new weight, enabling or adding to a candidate list of a
    rolled-back flag is 409 ``rolled_back``, with the current state and the release command."""
    rolled = state(status="rolled_back", enabled=False)
    with pytest.raises(ConflictError) as caught:
        apply_patch(rolled, patch, actor="a", reason="r", now=NOW)
    assert caught.value.status_code == 409
    assert caught.value.code == "rolled_back"
    assert caught.value.current == rolled
    assert what in caught.value.message
    assert f"gateway flags release {ROUTE} --reason" in caught.value.message


@pytest.mark.parametrize(
    "patch",
    [
        FlagPatch(enabled=False),
        FlagPatch(fallback_subjects=["bob"]),
        FlagPatch(fallback_keys=["web"]),
        FlagPatch(candidate_subjects=[]),
    ],
)
def test_patch_that_narrows_exposure_of_a_rolled_back_flag_is_written_and_stays_latched(
    patch: FlagPatch,
) -> None:
    """Disabling, fallback lists and removals from candidate lists are allowed on a rolled-back
    flag; it stays rolled back with its rollout id."""
    rolled = state(
        status="rolled_back", targeting=Targeting(candidate_subjects=frozenset({"alice"}))
    )
    new = apply_patch(rolled, patch, actor="a", reason="r", now=NOW)
    assert new.version == rolled.version + 1
    assert (new.status, new.rollout_id) == ("rolled_back", "ro_first")


@pytest.mark.parametrize(
    "patch",
    [
        FlagPatch(weight=10_000),
        FlagPatch(enabled=True),
        FlagPatch(weight=10_000, enabled=True, candidate_keys=[]),
    ],
)
@pytest.mark.parametrize("status", ["active", "rolled_back"])
def test_patch_that_changes_nothing_returns_the_same_state(patch: FlagPatch, status: str) -> None:
    """Every given field already has its value: the state itself comes back (no version bump,
    hence no audit entry), also on a rolled-back flag (nothing is exposed)."""
    old = state(status=status)
    assert apply_patch(old, patch, actor="a", reason="r", now=NOW) is old


def test_patch_bumps_only_the_fields_that_change() -> None:
    """A patch repeating the current weight while disabling writes the kill switch only."""
    new = apply_patch(
        state(), FlagPatch(weight=10_000, enabled=False), actor="a", reason="r", now=NOW
    )
    assert (new.weight, new.enabled, new.version) == (10_000, False, 4)


# -- register_candidate -------------------------------------------------------------------------


def test_register_on_an_active_flag_starts_a_new_rollout_at_weight_0() -> None:
    """A new candidate model on an active flag: weight 0, new rollout id, active."""
    new = register_candidate(state(), model=" ft:new ", actor="ci", reason="job done", now=NOW)
    assert (new.candidate_model, new.weight, new.status) == ("ft:new", 0, "active")
    assert new.rollout_id != "ro_first"
    assert new.version == 4


def test_register_on_a_rolled_back_flag_records_the_model_and_stays_rolled_back() -> None:
    """Registration never re-arms: the model is recorded at weight 0, the flag stays rolled
    back with its rollout id; release then re-arms the new model at weight 0."""
    rolled = state(status="rolled_back", weight=50_000)
    new = register_candidate(rolled, model="ft:new", actor="ci", reason="job done", now=NOW)
    assert (new.candidate_model, new.weight, new.status) == ("ft:new", 0, "rolled_back")
    assert new.rollout_id == "ro_first"
    released = release(new, actor="ops", reason="new model", now=NOW)
    assert (released.status, released.weight, released.candidate_model) == ("active", 0, "ft:new")
    assert released.rollout_id not in {"ro_first", ""}


@pytest.mark.parametrize("status", ["active", "rolled_back"])
def test_registering_the_current_candidate_model_changes_nothing(status: str) -> None:
    """The model already is the candidate's: the same state comes back."""
    old = state(status=status, candidate_model="ft:same")
    assert register_candidate(old, model="ft:same", actor="a", reason="r", now=NOW) is old


# -- rollback -----------------------------------------------------------------------------------


def test_rollback_latches_rolled_back_and_keeps_weight_and_rollout_id() -> None:
    """Rollback sets status rolled_back, bumps the version, keeps weight and rollout id."""
    new = rollback(state(), actor="guard", reason="ceiling breached", now=NOW)
    assert new.status == "rolled_back"
    assert new.version == 4
    assert new.weight == 10_000
    assert new.rollout_id == "ro_first"
    assert (new.updated_by, new.updated_at, new.reason) == ("guard", NOW, "ceiling breached")


def test_rollback_of_a_disabled_flag_still_latches() -> None:
    """The kill switch and the rollback latch are independent: a disabled flag can roll back."""
    assert rollback(state(enabled=False), actor="a", reason="r", now=NOW).status == "rolled_back"


def test_rollback_twice_is_a_conflict_carrying_the_current_state() -> None:
    """Rolling back a rolled-back flag is 409 with the current state, not a second version."""
    rolled = rollback(state(), actor="a", reason="r", now=NOW)
    with pytest.raises(ConflictError) as caught:
        rollback(rolled, actor="a", reason="again", now=NOW)
    assert caught.value.status_code == 409
    assert caught.value.code == "already_rolled_back"
    assert caught.value.current == rolled


@pytest.mark.parametrize("reason", [None, " "])
def test_rollback_requires_a_reason(reason: str | None) -> None:
    """Rollback without a reason is 422."""
    with pytest.raises(UnprocessableError):
        rollback(state(), actor="a", reason=reason, now=NOW)


# -- release ------------------------------------------------------------------------------------


def test_release_rearms_with_a_new_rollout_id_and_bumps_version() -> None:
    """Release sets status active and a fresh ``ro_`` rollout id (clean guard counters)."""
    rolled = rollback(state(), actor="a", reason="r", now=NOW)
    new = release(rolled, actor="ops", reason="fixed the prompt", now=NOW + 1)
    assert new.status == "active"
    assert new.version == rolled.version + 1
    assert new.rollout_id != rolled.rollout_id
    assert new.rollout_id.startswith("ro_")
    assert new.weight == rolled.weight
    assert (new.updated_by, new.updated_at, new.reason) == ("ops", NOW + 1, "fixed the prompt")


def test_release_uses_a_given_rollout_id_and_weight() -> None:
    """``rollout_id`` and ``weight`` given to release are used (e.g. restart the ramp at 0)."""
    rolled = state(status="rolled_back")
    new = release(rolled, actor="a", reason="r", now=NOW, weight=0, rollout_id="ro_chosen")
    assert (new.rollout_id, new.weight) == ("ro_chosen", 0)


def test_each_release_starts_a_different_rollout_id() -> None:
    """Two releases never share a rollout id."""
    rolled = state(status="rolled_back")
    ids = {release(rolled, actor="a", reason="r", now=NOW).rollout_id for _ in range(50)}
    assert len(ids) == 50
    assert new_rollout_id() != new_rollout_id()


def test_release_of_an_active_flag_is_a_conflict_carrying_the_current_state() -> None:
    """Release when not rolled back is 409 with the current state."""
    active = state()
    with pytest.raises(ConflictError) as caught:
        release(active, actor="a", reason="r", now=NOW)
    assert caught.value.code == "not_rolled_back"
    assert caught.value.current == active


@pytest.mark.parametrize("weight", [-1, 100_001])
def test_release_refuses_a_weight_out_of_range(weight: int) -> None:
    """A resume weight outside 0..100000 is 422 naming ``weight``."""
    with pytest.raises(UnprocessableError) as caught:
        release(state(status="rolled_back"), actor="a", reason="r", now=NOW, weight=weight)
    assert caught.value.param == "weight"


def test_release_requires_a_reason() -> None:
    """Release without a reason is 422, checked before the latch."""
    with pytest.raises(UnprocessableError):
        release(state(status="rolled_back"), actor="a", reason=None, now=NOW)


def test_rollback_then_release_then_rollback_counts_three_versions() -> None:
    """The latch can be set again after a release; each step is one version."""
    first = rollback(state(), actor="a", reason="r1", now=NOW)
    released = release(first, actor="a", reason="r2", now=NOW)
    second = rollback(released, actor="a", reason="r3", now=NOW)
    assert [first.version, released.version, second.version] == [4, 5, 6]
    assert second.status == "rolled_back"
    assert second.rollout_id == released.rollout_id
