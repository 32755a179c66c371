"""Flag changes as pure functions: a current state in, the next state out.

Every change bumps ``version`` by one (the compare-and-set token), stamps ``updated_by``,
``updated_at`` and ``reason``, and is recorded as an :class:`AuditEntry` by the store in the same
transaction. A change that would change nothing returns the state it was given (the very same
object): the service then writes nothing, bumps no version and records no audit entry.

The latch is absolute (DESIGN.md section 5): a rollback latches ``status="rolled_back"`` and
only :func:`release` re-arms it, with a new ``rollout_id`` so that the guard starts from clean
counters. While a flag is rolled back, a change that could later send traffic to the candidate
(a new weight, enabling, a subject or key added to a candidate list) is refused with 409
``rolled_back``; registering a candidate records the model at weight 0 and leaves the flag
rolled back. Disabling, fallback lists and removals from candidate lists stay allowed.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from gateway.config import MAX_WEIGHT, RampConfig
from gateway.errors import ConflictError, UnprocessableError
from gateway.flags.ramp_changes import registration_fields, release_fields
from gateway.routing import FlagState, Targeting

__all__ = [
    "AuditEntry",
    "FlagPatch",
    "apply_patch",
    "candidate_exposure",
    "new_rollout_id",
    "register_candidate",
    "release",
    "rollback",
]

Trigger = Literal["manual", "guard", "replica"]
Action = Literal[
    "set",
    "rollback",
    "release",
    "register",
    "restore",
    "ramp_start",
    "ramp_advance",
    "ramp_pause",
    "ramp_resume",
]


class FlagPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields a person may change; ``None`` leaves a field as it is. Lists replace lists."""

    enabled: bool | None = None
    weight: int | None = None
    candidate_subjects: list[str] | None = None
    fallback_subjects: list[str] | None = None
    candidate_keys: list[str] | None = None
    fallback_keys: list[str] | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    """One flag change, append-only. ``at`` is Unix time in seconds.

    ``id`` (a stream id or row id), ``seq`` (1, 2, 3, ... per store; a gap or a restart shows
    lost entries) and ``generation`` (the store's generation when written) are set by the store.
    ``trigger`` ``replica`` with ``action`` ``restore`` is a replica re-seeding a store that had
    forgotten a flag (``evidence`` says what was stored, what was restored, from where).
    """

    route: str
    at: float
    actor: str
    trigger: Trigger
    action: Action
    reason: str
    before: FlagState | None
    after: FlagState
    evidence: dict[str, Any] | None = None
    id: str = ""
    seq: int = 0
    generation: str = ""


def new_rollout_id() -> str:
    """A fresh rollout id (the guard counts per rollout id)."""
    return "ro_" + uuid.uuid4().hex[:12]


def _next(state: FlagState, actor: str, reason: str, now: float, **fields: Any) -> FlagState:
    return msgspec.structs.replace(
        state,
        version=state.version + 1,
        updated_by=actor,
        updated_at=now,
        reason=reason,
        **fields,
    )


def _check_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise UnprocessableError("A reason is required for every flag change.", param="reason")
    return reason.strip()


def apply_patch(
    state: FlagState, patch: FlagPatch, *, actor: str, reason: str | None, now: float
) -> FlagState:
    """Apply a person's change; ``state`` itself when every given field already has its value.

    Raises:
        UnprocessableError: missing reason, weight outside 0..100000, nothing to change.
        ConflictError: ``rolled_back``: the flag is rolled back and the change could send
            traffic to the candidate (see the module docstring); release it first.
    """
    why = _check_reason(reason)
    fields: dict[str, Any] = {}
    if patch.weight is not None:
        if not 0 <= patch.weight <= MAX_WEIGHT:
            raise UnprocessableError(
                f"weight must be 0..{MAX_WEIGHT} (thousandths of a percent), got {patch.weight}",
                param="weight",
            )
        fields["weight"] = patch.weight
    if patch.enabled is not None:
        fields["enabled"] = patch.enabled
    lists = {
        name: getattr(patch, name)
        for name in ("candidate_subjects", "fallback_subjects", "candidate_keys", "fallback_keys")
        if getattr(patch, name) is not None
    }
    if lists:
        current = state.targeting
        fields["targeting"] = Targeting(
            **{
                name: frozenset(lists[name]) if name in lists else getattr(current, name)
                for name in (
                    "candidate_subjects",
                    "fallback_subjects",
                    "candidate_keys",
                    "fallback_keys",
                )
            }
        )
    if not fields:
        raise UnprocessableError(
            "Nothing to change: give enabled, weight or a targeting list.", param=None
        )
    changed = {name: value for name, value in fields.items() if getattr(state, name) != value}
    if not changed:
        return state
    if state.status == "rolled_back":
        exposing = candidate_exposure(state, changed)
        if exposing:
            raise ConflictError(
                f"Route '{state.route}' is rolled back; {' and '.join(exposing)} could send "
                f"traffic to the candidate. Release it first: gateway flags release "
                f"{state.route} --reason ...",
                current=state,
                code="rolled_back",
            )
    if "weight" in changed and state.ramp_step is not None and not state.ramp_paused:
        changed["ramp_paused"] = True  # a person's weight change pauses the ramp
    return _next(state, actor, why, now, **changed)


def candidate_exposure(state: FlagState, changed: dict[str, Any]) -> list[str]:
    """What in ``changed`` (field -> new value) could route traffic to the candidate once
    ``state`` is released: a new weight, enabling, a subject or key added to a candidate list.
    Empty when the change only narrows exposure (disabling, fallback lists, removals)."""
    exposing: list[str] = []
    if "weight" in changed:
        exposing.append(f"weight {state.weight} -> {changed['weight']}")
    if changed.get("enabled") is True:
        exposing.append("enabling")
    targeting = changed.get("targeting")
    if isinstance(targeting, Targeting):
        for name in ("candidate_subjects", "candidate_keys"):
            added = getattr(targeting, name) - getattr(state.targeting, name)
            if added:
                exposing.append(f"adding {', '.join(sorted(added))} to {name}")
    return exposing


def register_candidate(
    state: FlagState,
    *,
    model: str,
    actor: str,
    reason: str | None,
    now: float,
    ramp: RampConfig | None = None,
) -> FlagState:
    """Make ``model`` the candidate's model, at weight 0.

    A new model starts unexposed: weight 0. On an active flag it starts a new rollout (clean
    guard counters). On a rolled-back flag it is recorded, at weight 0, and the flag stays rolled
    back: only :func:`release` re-arms it (with a new rollout id). Registering the model that
    already is the candidate's changes nothing and returns ``state`` itself. On a route with a
    ``ramp`` the new rollout's ramp waits, paused at its first step, for ``ramp resume``.

    Raises:
        UnprocessableError: missing reason or empty model name.
    """
    why = _check_reason(reason)
    if not model.strip():
        raise UnprocessableError("model must be a non-empty model name", param="model")
    if state.candidate_model == model.strip():
        return state
    if state.status == "rolled_back":
        return _next(state, actor, why, now, candidate_model=model.strip(), weight=0)
    return _next(
        state,
        actor,
        why,
        now,
        candidate_model=model.strip(),
        weight=0,
        status="active",
        rollout_id=new_rollout_id(),
        **(registration_fields() if ramp is not None else {}),
    )


def rollback(state: FlagState, *, actor: str, reason: str | None, now: float) -> FlagState:
    """Latch the flag on the fallback. Raises ConflictError if it is already rolled back."""
    why = _check_reason(reason)
    if state.status == "rolled_back":
        raise ConflictError(
            f"Route '{state.route}' is already rolled back (since version {state.version}).",
            current=state,
            code="already_rolled_back",
        )
    return _next(state, actor, why, now, status="rolled_back")


def release(
    state: FlagState,
    *,
    actor: str,
    reason: str | None,
    now: float,
    weight: int | None = None,
    rollout_id: str | None = None,
    ramp: RampConfig | None = None,
) -> FlagState:
    """Re-arm a rolled-back flag with a new rollout id (clean guard counters).

    ``weight``, when given, is the weight to resume at (e.g. 0 to restart the ramp). On a route
    with a ``ramp`` the ramp restarts at its first step: at that step's weight, or paused at
    ``weight`` when one is given (:func:`gateway.flags.ramp_changes.release_fields`).

    Raises:
        ConflictError: the flag is not rolled back.
        UnprocessableError: missing reason or weight out of range.
    """
    why = _check_reason(reason)
    if state.status != "rolled_back":
        raise ConflictError(
            f"Route '{state.route}' is not rolled back; there is nothing to release.",
            current=state,
            code="not_rolled_back",
        )
    fields: dict[str, Any] = {"status": "active", "rollout_id": rollout_id or new_rollout_id()}
    if weight is not None:
        if not 0 <= weight <= MAX_WEIGHT:
            raise UnprocessableError(f"weight must be 0..{MAX_WEIGHT}", param="weight")
        fields["weight"] = weight
    if ramp is not None:
        fields.update(release_fields(ramp, weight=weight, now=now))
    return _next(state, actor, why, now, **fields)
