"""The restore decision (gateway.flags.restore), pure: snapshot, stored state and generations in,
adopt / restore / routes file out, route by route. No store, no network."""

from __future__ import annotations

import pytest

from gateway.flags.restore import plan_sync, restore_entry
from gateway.flags.store import StoredFlags
from gateway.routing import FlagState

A, B = "support-triage", "refund-policy"


def flag(route: str = A, version: int = 0, **fields: object) -> FlagState:
    return FlagState(route=route, version=version, rollout_id=f"ro_{version}", **fields)  # type: ignore[arg-type]


INITIAL = {A: flag(A, 0, weight=10_000), B: flag(B, 0, weight=0)}


def test_fresh_replica_on_a_fresh_store_serves_the_routes_file_and_claims_a_generation() -> None:
    """Nothing anywhere: every route from the routes file; the generation is to be claimed."""
    plan = plan_sync(INITIAL, {}, None, StoredFlags(None, {}))
    assert plan.initial == INITIAL
    assert (plan.adopt, plan.restore) == ({}, {})
    assert plan.claim_generation
    assert not plan.generation_changed
    assert not plan.store_forgot


def test_fresh_replica_adopts_whatever_the_store_holds() -> None:
    """A replica with no snapshot adopts stored flags and the routes file for the others."""
    stored = StoredFlags("gen_1", {A: flag(A, 4)})
    plan = plan_sync(INITIAL, {}, None, stored)
    assert plan.adopt == {A: flag(A, 4)}
    assert plan.initial == {B: INITIAL[B]}
    assert not plan.claim_generation
    assert not plan.generation_changed


@pytest.mark.parametrize("stored_version", [5, 6, 9])
def test_store_at_or_above_the_snapshot_is_adopted(stored_version: int) -> None:
    """Stored version >= the replica's: adopt (the store wins ties)."""
    plan = plan_sync(
        INITIAL, {A: flag(A, 5)}, "gen_1", StoredFlags("gen_1", {A: flag(A, stored_version)})
    )
    assert plan.adopt[A].version == stored_version
    assert plan.restore == {}


def test_store_restarted_empty_is_re_seeded_from_the_snapshot() -> None:
    """No generation, no flags, the replica served version 5 of A and the routes file's B:
    restore A, claim a generation, B stays from the routes file."""
    snapshot = {A: flag(A, 5, status="rolled_back"), B: INITIAL[B]}
    plan = plan_sync(INITIAL, snapshot, "gen_1", StoredFlags(None, {}))
    assert plan.restore == {A: snapshot[A]}
    assert plan.initial == {B: INITIAL[B]}
    assert plan.claim_generation
    assert plan.generation_changed
    assert plan.store_forgot


def test_store_restored_from_an_older_snapshot_is_re_seeded_where_behind() -> None:
    """Same generation, A stored at 3 while the replica served 5: restore A; B (equal) adopted."""
    snapshot = {A: flag(A, 5), B: flag(B, 2)}
    stored = StoredFlags("gen_1", {A: flag(A, 3), B: flag(B, 2)})
    plan = plan_sync(INITIAL, snapshot, "gen_1", stored)
    assert plan.restore == {A: snapshot[A]}
    assert plan.adopt == {B: flag(B, 2)}
    assert not plan.claim_generation
    assert not plan.generation_changed


def test_a_missing_flag_in_a_store_that_kept_its_generation_is_restored() -> None:
    """One flag gone (deleted by hand) under the same generation: restore that one."""
    plan = plan_sync(
        INITIAL, {A: flag(A, 2), B: flag(B, 7)}, "gen_1", StoredFlags("gen_1", {A: flag(A, 2)})
    )
    assert plan.restore == {B: flag(B, 7)}


def test_another_generation_ahead_of_the_replica_is_adopted_and_reported() -> None:
    """Another generation (a store re-seeded by another replica) at higher versions: adopt,
    with generation_changed set so that the replica logs it."""
    plan = plan_sync(INITIAL, {A: flag(A, 5)}, "gen_1", StoredFlags("gen_2", {A: flag(A, 6)}))
    assert plan.adopt == {A: flag(A, 6)}
    assert plan.generation_changed
    assert not plan.store_forgot


def test_another_generation_behind_the_replica_is_re_seeded() -> None:
    """A store re-seeded from the routes file (or an older replica) behind this replica's
    versions: the highest version wins, this replica restores its own."""
    plan = plan_sync(INITIAL, {A: flag(A, 5)}, "gen_1", StoredFlags("gen_2", {A: flag(A, 1)}))
    assert plan.restore == {A: flag(A, 5)}
    assert plan.generation_changed


def test_routes_file_state_in_the_snapshot_is_never_restored() -> None:
    """A replica serving only routes-file flags (version 0) restores nothing: a store without
    those flags is not behind it."""
    plan = plan_sync(INITIAL, dict(INITIAL), "gen_1", StoredFlags(None, {}))
    assert plan.restore == {}
    assert plan.initial == INITIAL


def test_restore_entry_says_what_was_restored_from_where() -> None:
    """The audit entry of a restore: action restore, trigger replica, the replica as actor,
    before = what the store had, after = the snapshot's state, both generations and versions."""
    entry = restore_entry(
        flag(A, 5),
        flag(A, 3),
        replica="host-1-99-abcd",
        now=1_700_000_000.0,
        generation_seen="gen_1",
        generation_known="gen_1",
        generation="gen_1",
    )
    assert (entry.action, entry.trigger, entry.actor) == ("restore", "replica", "host-1-99-abcd")
    assert (entry.before, entry.after) == (flag(A, 3), flag(A, 5))
    assert entry.evidence == {
        "replica": "host-1-99-abcd",
        "source": "snapshot",
        "generation_seen": "gen_1",
        "generation_known": "gen_1",
        "generation": "gen_1",
        "store_version": 3,
        "restored_version": 5,
    }
    assert "version 3" in entry.reason
    assert "restored version 5" in entry.reason
    missing = restore_entry(
        flag(A, 5),
        None,
        replica="r",
        now=1.0,
        generation_seen=None,
        generation_known="gen_1",
        generation="gen_2",
    )
    assert missing.before is None
    assert "no flag" in missing.reason
    assert missing.evidence is not None
    assert missing.evidence["store_version"] is None
