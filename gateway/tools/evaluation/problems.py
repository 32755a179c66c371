"""Problems found in a dataset, and the bounded log that collects them (pure, no I/O).

A :class:`Problem` names its file, its 1-based line (``None`` for the whole file), whether it is
an ``error`` (the fine-tune should not run: ``gateway dataset validate`` exits 1) or a
``warning`` (worth a look; exit 0), a stable ``code`` for scripts and a message for people.

:class:`ProblemLog` keeps at most ``per_code`` problems of each code and counts the rest, so a
file whose million lines all share one mistake stays within bounded memory; the counts stay
exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_PER_CODE", "Problem", "ProblemLog", "Severity"]

Severity = Literal["error", "warning"]

DEFAULT_PER_CODE = 1000
"""Problems of one code kept with their line; further ones are only counted."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        line: 1-based line number, or ``None`` when the problem is about the whole file.
        severity: ``error`` or ``warning``.
        code: stable machine-readable kind, e.g. ``invalid_json``, ``duplicate_example``.
        message: what is wrong and what to do, for a person.
        file: the file the line belongs to (the training file or the held-out file).
    """

    line: int | None
    severity: Severity
    code: str
    message: str
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        """``{"file", "line", "severity", "code", "message"}``."""
        return {
            "file": self.file,
            "line": self.line,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


class ProblemLog:
    """Problems in the order found, at most ``per_code`` kept per code, all of them counted."""

    __slots__ = ("_counts", "_kept", "_severity", "per_code")

    def __init__(self, per_code: int = DEFAULT_PER_CODE) -> None:
        self.per_code = per_code
        self._kept: list[Problem] = []
        self._counts: Counter[str] = Counter()
        self._severity: dict[str, Severity] = {}

    def add(self, problem: Problem) -> None:
        """Record ``problem`` (kept in full while its code has fewer than ``per_code``)."""
        self._counts[problem.code] += 1
        self._severity.setdefault(problem.code, problem.severity)
        if self._counts[problem.code] <= self.per_code:
            self._kept.append(problem)

    def extend(self, problems: list[Problem]) -> None:
        """``add`` each of ``problems``."""
        for problem in problems:
            self.add(problem)

    @property
    def problems(self) -> list[Problem]:
        """Kept problems sorted by file order of appearance, then line (file-level first)."""
        files: dict[str, int] = {}
        for problem in self._kept:
            files.setdefault(problem.file, len(files))
        return sorted(
            self._kept,
            key=lambda p: (files[p.file], -1 if p.line is None else p.line),
        )

    @property
    def counts(self) -> dict[str, int]:
        """Every code with how many problems it had (kept or not)."""
        return dict(self._counts)

    @property
    def omitted(self) -> dict[str, int]:
        """Codes with more problems than ``per_code``: how many were counted but not kept."""
        return {
            code: count - self.per_code
            for code, count in self._counts.items()
            if count > self.per_code
        }

    def total(self, severity: Severity) -> int:
        """How many problems of ``severity`` were found (kept or not)."""
        return sum(n for code, n in self._counts.items() if self._severity[code] == severity)
