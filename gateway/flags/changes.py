"""Flag changes as pure functions: a current state in, the next state out.

Every change bumps ``version`` by one (the compare-and-set token), stamps ``updated_by``,
``updated_at`` and ``reason``, and is recorded as an :class:`AuditEntry` by the store in the same
transaction. A rollback latches ``status="rolled_back"``; only :func:`release` re-arms it, with
a new ``rollout_id`` so that the guard starts from clean counters.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from gateway.config import MAX_WEIGHT
from gateway.errors import ConflictError, UnprocessableError
from gateway.routing import FlagState, Targeting

__all__ = [
    "AuditEntry",
    "FlagPatch",
    "apply_patch",
    "new_rollout_id",
    "register_candidate",
    "release",
    "rollback",
]

Trigger = Literal["manual", "guard"]
Action = Literal["set", "rollback", "release", "register"]


class FlagPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields a person may change; ``None`` leaves a field as it is. Lists replace lists."""

    enabled: bool | None = None
    weight: int | None = None
    candidate_subjects: list[str] | None = None
    fallback_subjects: list[str] | None = None
    candidate_keys: list[str] | None = None
    fallback_keys: list[str] | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    """One flag change, append-only. ``at`` is Unix time in seconds; ``id`` is store-assigned."""

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
    """Apply a person's change.

    Raises:
        UnprocessableError: missing reason, weight outside 0..100000, nothing to change.
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
    return _next(state, actor, why, now, **fields)


def register_candidate(
    state: FlagState, *, model: str, actor: str, reason: str | None, now: float
) -> FlagState:
    """Make ``model`` the candidate's model, at weight 0 with a new rollout id.

    A new model starts unexposed: weight 0, active, clean guard counters; ops ramp it up when
    the held-out evaluation says go.

    Raises:
        UnprocessableError: missing reason or empty model name.
    """
    why = _check_reason(reason)
    if not model.strip():
        raise UnprocessableError("model must be a non-empty model name", param="model")
    return _next(
        state,
        actor,
        why,
        now,
        candidate_model=model.strip(),
        weight=0,
        status="active",
        rollout_id=new_rollout_id(),
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
) -> FlagState:
    """Re-arm a rolled-back flag with a new rollout id (clean guard counters).

    ``weight``, when given, is the weight to resume at (e.g. 0 to restart the ramp).

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
    return _next(state, actor, why, now, **fields)
