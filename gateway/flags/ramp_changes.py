"""The ramp's flag changes, pure like :mod:`gateway.flags.changes`: a state in, the next out.

A route's ramp (``ramp: {steps, min_samples, min_dwell_s}`` in the routes file) lives in its
flag, so that every replica sees the same step and a restart loses nothing:
``ramp_step`` (0-based index into ``steps``), ``ramp_paused``, ``ramp_step_started_at`` (Unix
seconds; the step's dwell counts from it) and ``ramp_step_baseline`` (the rollout's route-wide
candidate outcomes when the step began, so that *samples at this step* is the count minus it).
All steps of a ramp share one rollout id: the guard's evidence, and its bound on false
rollbacks, cover the whole ramp.

* :func:`start_step` stamps the clock and the baseline of a step that has none (the routes
  file's first step, which no replica can stamp alone) and :func:`advance` moves to the next
  step: the guard's writes (:mod:`gateway.quality.ramper`).
* :func:`pause` and :func:`resume`: a person's. A weight change by a person pauses the ramp too
  (:func:`gateway.flags.changes.apply_patch`). ``resume`` goes back to the weight of the step the
  ramp is at and starts that step's dwell and samples again; on a flag whose ramp never started
  (``ramp_step`` is ``None``: the ramp was added to the routes file later), it starts at the
  first step.
* A rollback ends the ramp (the flag keeps the step it stopped at); a release restarts it at
  the first step, paused if the release names a weight (:func:`release_fields`).

Errors: 422 ``no_ramp`` for a route without ``ramp:``; 409 ``ramp_stopped`` to pause a ramp a
rollback ended; 409 ``rolled_back`` to resume it (release first).
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.config import RampConfig
from gateway.errors import ConflictError, UnprocessableError
from gateway.routing import FlagState

__all__ = [
    "advance",
    "pause",
    "registration_fields",
    "release_fields",
    "require_ramp",
    "resume",
    "start_step",
    "step_label",
]


def step_label(steps: list[int], index: int) -> str:
    """``step 2 of 3 (50%)`` for people (audit reasons, the CLI)."""
    weight = steps[min(index, len(steps) - 1)]
    return f"step {index + 1} of {len(steps)} ({weight / 1000:g}%)"


def require_ramp(route: str, ramp: RampConfig | None) -> RampConfig:
    """The route's ramp. Raises UnprocessableError ``no_ramp`` when it has none."""
    if ramp is None:
        raise UnprocessableError(
            f"Route '{route}' has no ramp; declare ramp: {{steps: [...]}} in the routes file.",
            param="route",
            code="no_ramp",
        )
    return ramp


def _reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise UnprocessableError("A reason is required for every flag change.", param="reason")
    return reason.strip()


def _next(state: FlagState, actor: str, reason: str, now: float, **fields: Any) -> FlagState:
    return msgspec.structs.replace(
        state,
        version=state.version + 1,
        updated_by=actor,
        updated_at=now,
        reason=reason,
        **fields,
    )


def start_step(state: FlagState, *, ramp: RampConfig, baseline: int, now: float) -> FlagState:
    """The guard stamps the current step's start (clock and baseline); ``state`` itself when
    it is stamped already or no ramp runs."""
    if state.ramp_step is None or state.ramp_step_started_at is not None or state.ramp_paused:
        return state
    label = step_label(ramp.steps, state.ramp_step)
    return _next(
        state,
        "guard",
        f"ramp: {label} began",
        now,
        ramp_step_started_at=now,
        ramp_step_baseline=baseline,
    )


def advance(
    state: FlagState, *, ramp: RampConfig, baseline: int, now: float, reason: str
) -> FlagState:
    """The guard moves the ramp to its next step: the next weight, a fresh clock and baseline.

    Raises:
        ConflictError: ``ramp_stopped`` when the flag is rolled back, paused, or at its last step
            (the guard read an older state: nothing to do).
    """
    step = state.ramp_step
    if (
        state.status == "rolled_back"
        or state.ramp_paused
        or step is None
        or step + 1 >= len(ramp.steps)
    ):
        raise ConflictError(
            f"Route '{state.route}': the ramp cannot advance from this state.",
            current=state,
            code="ramp_stopped",
        )
    return _next(
        state,
        "guard",
        reason,
        now,
        weight=ramp.steps[step + 1],
        ramp_step=step + 1,
        ramp_step_started_at=now,
        ramp_step_baseline=baseline,
    )


def pause(
    state: FlagState, *, ramp: RampConfig, actor: str, reason: str | None, now: float
) -> FlagState:
    """A person pauses the ramp; ``state`` itself when it is paused already.

    Raises:
        UnprocessableError: no reason.
        ConflictError: ``ramp_stopped``: a rollback ended the ramp, or it never started.
    """
    why = _reason(reason)
    if state.status == "rolled_back" or state.ramp_step is None:
        raise ConflictError(
            f"Route '{state.route}': no ramp is running (rolled back, or never started); "
            "nothing to pause.",
            current=state,
            code="ramp_stopped",
        )
    if state.ramp_paused:
        return state
    return _next(state, actor, why, now, ramp_paused=True)


def resume(
    state: FlagState,
    *,
    ramp: RampConfig,
    actor: str,
    reason: str | None,
    now: float,
    baseline: int,
) -> FlagState:
    """A person resumes the ramp at its step's weight, the step's dwell and samples counting
    from now; a ramp that never started starts at the first step. ``state`` itself when the
    ramp is running already.

    Raises:
        UnprocessableError: no reason.
        ConflictError: ``rolled_back``: a rollback ended the ramp; release the flag first.
    """
    why = _reason(reason)
    if state.status == "rolled_back":
        raise ConflictError(
            f"Route '{state.route}' is rolled back, which ended its ramp. Release it first: "
            f"gateway flags release {state.route} --reason ... (the ramp restarts at its first "
            "step)",
            current=state,
            code="rolled_back",
        )
    if state.ramp_step is not None and not state.ramp_paused:
        return state
    step = min(state.ramp_step or 0, len(ramp.steps) - 1)
    return _next(
        state,
        actor,
        why,
        now,
        weight=ramp.steps[step],
        ramp_step=step,
        ramp_paused=False,
        ramp_step_started_at=now,
        ramp_step_baseline=baseline,
    )


def release_fields(ramp: RampConfig, *, weight: int | None, now: float) -> dict[str, Any]:
    """What a release sets on a ramped route: the ramp restarts at its first step (the new
    rollout's counts start at 0). A release that names a weight is a person's choice of weight:
    the ramp restarts paused at the first step, at that weight, until ``ramp resume``."""
    if weight is None:
        return {
            "weight": ramp.steps[0],
            "ramp_step": 0,
            "ramp_paused": False,
            "ramp_step_started_at": now,
            "ramp_step_baseline": 0,
        }
    return {
        "ramp_step": 0,
        "ramp_paused": True,
        "ramp_step_started_at": None,
        "ramp_step_baseline": 0,
    }


def registration_fields() -> dict[str, Any]:
    """What registering a new candidate sets on a ramped route: weight 0 (the change functions
    set it), the ramp paused at its first step until a person resumes it (after an
    evaluation, say)."""
    return {
        "ramp_step": 0,
        "ramp_paused": True,
        "ramp_step_started_at": None,
        "ramp_step_baseline": 0,
    }
