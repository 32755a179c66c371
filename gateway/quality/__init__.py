"""Quality: contract checks, the guard and its statistics, feedback, shadow calls.

The names below load their module on first use (PEP 562): a tool that needs only the contract
(``gateway dataset validate``, ``gateway finetune create``) does not import the guard and,
through the flag stores, redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "CheckResult": "gateway.quality.contract",
    "Contract": "gateway.quality.contract",
    "Guard": "gateway.quality.guard",
    "Verdict": "gateway.quality.guard",
    "decide_rule": "gateway.quality.guard",
    "evaluate": "gateway.quality.guard",
    "confidence_interval": "gateway.quality.stats",
}


def __getattr__(name: str) -> Any:
    """The exported ``name``, imported from its module on first use."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
