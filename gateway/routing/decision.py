"""Flag state and the per-request decision: candidate or fallback, and why.

Order of a decision (DESIGN.md section 5), first match wins:

1. ``override``: a privileged key forced a variant with ``x-gateway-variant``;
2. ``disabled`` / ``rolled_back``: the kill switch is off or the guard (or a person) rolled back;
3. ``targeted``: the subject or the client key name is on a targeting list (a fallback list
   wins over a candidate list);
4. ``rollout``: the weight bucket of the subject (random per request without a subject).

``failover`` and ``shadow`` are set later by the relay, not here. ``passthrough`` marks a model
called as-is (no flag), ``no_flag`` a route whose flag state is unknown (store cold and down):
both serve the fallback or the only variant.
"""

from __future__ import annotations

import random
from typing import Literal, Protocol

import msgspec

from gateway.routing.bucketing import bucket_of, in_rollout

__all__ = [
    "Decision",
    "DecisionReason",
    "FlagSource",
    "FlagState",
    "Role",
    "Targeting",
    "decide",
]

DecisionReason = Literal[
    "rollout",
    "targeted",
    "disabled",
    "rolled_back",
    "override",
    "failover",
    "shadow",
    "passthrough",
    "no_flag",
    "violation",
]
Role = Literal["candidate", "fallback"]


class Targeting(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Subjects and client key names forced to one side, whatever the weight."""

    candidate_subjects: frozenset[str] = frozenset()
    fallback_subjects: frozenset[str] = frozenset()
    candidate_keys: frozenset[str] = frozenset()
    fallback_keys: frozenset[str] = frozenset()


class FlagState(msgspec.Struct, frozen=True, kw_only=True):
    """A route's flag at one version. Weight is in thousandths of a percent (0..100000)."""

    route: str
    enabled: bool = True
    weight: int = 0
    status: Literal["active", "rolled_back"] = "active"
    salt: str = ""
    rollout_id: str = ""
    version: int = 0
    targeting: Targeting = Targeting()
    updated_by: str = "config"
    updated_at: float = 0.0
    reason: str = "initial state from the routes file"
    candidate_model: str | None = None
    """A model registered at run time (``gateway finetune watch --register``) that replaces the
    candidate variant's ``model`` from the routes file; ``None`` keeps the file's."""
    ramp_step: int | None = None
    """The ramp's current step, a 0-based index into the route's ``ramp.steps``; ``None`` when
    no ramp was ever started on this flag (the route has none). A rolled-back flag keeps the
    step it stopped at (the ramp is stopped: only a release restarts it)."""
    ramp_paused: bool = False
    """A person paused the ramp (``ramp pause``, or a weight change): the guard does not move
    the weight until ``ramp resume``."""
    ramp_step_started_at: float | None = None
    """Unix seconds when the current step began (its dwell time counts from here); ``None``:
    not stamped yet (the routes file's first step, or a paused ramp)."""
    ramp_step_baseline: int = 0
    """The rollout's route-wide candidate outcomes when the step began: the samples *at this
    step* are the route-wide count minus this."""


class Decision(msgspec.Struct, frozen=True):
    """Which side answers and why."""

    role: Role
    reason: DecisionReason


class FlagSource(Protocol):
    """Where the request path reads flags from: an in-memory snapshot, never a network call."""

    def flag(self, route: str) -> FlagState | None:
        """The route's current flag, or ``None`` when no state is known."""
        ...


_ROLLED_BACK = Decision("fallback", "rolled_back")
_DISABLED = Decision("fallback", "disabled")
_TARGET_CANDIDATE = Decision("candidate", "targeted")
_TARGET_FALLBACK = Decision("fallback", "targeted")
_ROLLOUT_CANDIDATE = Decision("candidate", "rollout")
_ROLLOUT_FALLBACK = Decision("fallback", "rollout")
_NO_FLAG = Decision("fallback", "no_flag")


def decide(
    flag: FlagState | None,
    subject: str | None,
    key_name: str | None,
    *,
    override: Role | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Decide candidate or fallback for one request (pure but for the random draw).

    Args:
        flag: the route's flag; ``None`` serves the fallback (``no_flag``).
        subject: the sticky bucketing key (``x-gateway-subject`` or the body's ``user``).
        key_name: the client key's configured name, for key targeting.
        override: a role forced by a privileged key.
        rng: source of the per-request draw when there is no subject (tests pass a seeded one).
    """
    if override is not None:
        return Decision(override, "override")
    if flag is None:
        return _NO_FLAG
    if flag.status == "rolled_back":
        return _ROLLED_BACK
    if not flag.enabled:
        return _DISABLED
    t = flag.targeting
    # Being forced to the fallback wins over being forced to the candidate, whichever list
    # (subjects or client keys) says so: keeping someone on the safe side is the safe choice.
    if (subject is not None and subject in t.fallback_subjects) or (
        key_name is not None and key_name in t.fallback_keys
    ):
        return _TARGET_FALLBACK
    if (subject is not None and subject in t.candidate_subjects) or (
        key_name is not None and key_name in t.candidate_keys
    ):
        return _TARGET_CANDIDATE
    if flag.weight <= 0:
        return _ROLLOUT_FALLBACK
    if flag.weight >= 100_000:
        return _ROLLOUT_CANDIDATE
    if subject is None:
        bucket = (rng or random).randrange(100_000)  # not for security
    else:
        bucket = bucket_of(flag.route, flag.salt or flag.route, subject)
    return _ROLLOUT_CANDIDATE if in_rollout(bucket, flag.weight) else _ROLLOUT_FALLBACK
