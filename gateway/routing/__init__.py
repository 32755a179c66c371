"""Pure routing decisions: bucketing, flag evaluation, prompt application. No I/O here."""

from __future__ import annotations

from gateway.routing.bucketing import bucket_of, in_rollout
from gateway.routing.decision import (
    Decision,
    DecisionReason,
    FlagSource,
    FlagState,
    Targeting,
    decide,
)
from gateway.routing.prompts import apply_prompt

__all__ = [
    "Decision",
    "DecisionReason",
    "FlagSource",
    "FlagState",
    "Targeting",
    "apply_prompt",
    "bucket_of",
    "decide",
    "in_rollout",
]
