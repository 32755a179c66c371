"""Quality: contract checks, the guard and its statistics, feedback, shadow calls."""

from __future__ import annotations

from gateway.quality.contract import CheckResult, Contract
from gateway.quality.guard import Guard, Verdict, decide_rule, evaluate
from gateway.quality.stats import confidence_interval

__all__ = [
    "CheckResult",
    "Contract",
    "Guard",
    "Verdict",
    "confidence_interval",
    "decide_rule",
    "evaluate",
]
