"""The values of a dataset validation: its bounds, its inputs and its result (pure data).

* :class:`Limits`: memory, output and OpenAI-rule bounds of one validation;
* :class:`RouteExpectations`: what the route's candidate is served with (``--route``);
* :class:`HoldoutIndex`: the held-out file's normalised inputs (``--holdout``);
* :class:`ValidationResult` with its :class:`TokenStats`: what ``gateway dataset validate``
  prints, as a table or (``to_json``) for scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import ContractConfig
from gateway.tools.evaluation.compact_index import DEFAULT_CAPACITY, CompactIndex
from gateway.tools.evaluation.problems import DEFAULT_PER_CODE, Problem

__all__ = ["HoldoutIndex", "Limits", "RouteExpectations", "TokenStats", "ValidationResult"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one validation (memory, output and OpenAI's rules).

    ``max_example_tokens``: OpenAI's per-example training limit for gpt-4o-mini (65,536).
    """

    per_code: int = DEFAULT_PER_CODE
    index_capacity: int = DEFAULT_CAPACITY
    max_example_tokens: int = 65_536
    min_examples: int = 10
    max_labels: int = 50
    max_label_chars: int = 64


@dataclass(frozen=True, slots=True)
class RouteExpectations:
    """What a route's candidate will be served with: its system prompt and its contract."""

    route: str
    candidate: str
    system_prompt: str | None
    contract: ContractConfig | None


@dataclass(frozen=True, slots=True)
class HoldoutIndex:
    """Normalised inputs of a held-out file (``Digest.input_key`` -> its line number)."""

    file: str
    index: CompactIndex
    examples: int


@dataclass(frozen=True, slots=True)
class TokenStats:
    """Approximate token counts (see ``method``) per example and in total.

    ``examples`` counts the lines whose messages could be counted (valid or with lesser errors).
    """

    method: str
    total: int = 0
    examples: int = 0
    min: int = 0
    max: int = 0
    max_line: int | None = None

    @property
    def mean(self) -> float:
        """Mean tokens per example (0 without examples)."""
        return self.total / self.examples if self.examples else 0.0


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Everything ``gateway dataset validate`` reports about one file."""

    file: str
    lines: int
    examples: int
    problems: list[Problem]
    counts: dict[str, int]
    omitted: dict[str, int]
    errors: int
    warnings: int
    labels: list[tuple[str, int]]
    other_answers: int
    tokens: TokenStats
    route: str | None = None
    holdout: str | None = None

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return self.errors == 0

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON types (``gateway dataset validate --json``)."""
        return {
            "file": self.file,
            "ok": self.ok,
            "lines": self.lines,
            "examples": self.examples,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [p.to_json() for p in self.problems],
            "counts": self.counts,
            "omitted": self.omitted,
            "labels": [{"label": label, "count": n} for label, n in self.labels],
            "other_answers": self.other_answers,
            "tokens": {
                "method": self.tokens.method,
                "total": self.tokens.total,
                "min": self.tokens.min,
                "max": self.tokens.max,
                "max_line": self.tokens.max_line,
                "mean": round(self.tokens.mean, 1),
            },
            "route": self.route,
            "holdout": self.holdout,
        }
