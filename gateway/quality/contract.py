"""A route's contract, compiled once: the checks every answer is held to (pure, no I/O).

Checks, in order, each named as in ``gateway_quality_checks_total{check}``:

* ``non_empty``: the answer has visible text;
* ``max_length``: at most ``max_length`` characters;
* ``labels``: the answer, trimmed (``strip``) and case-folded (``case_insensitive``) when the
  route says so, is one of ``labels``;
* ``json_schema``: the answer is JSON valid against ``json_schema`` (jsonschema's validator for
  the schema's ``$schema`` draft, Draft 2020-12 by default);
* ``regex``: the whole answer matches ``regex`` (``re.fullmatch``).

:meth:`Contract.agree` compares two answers the way the contract sees them (same label, equal
JSON, or the same text), for shadow comparisons and evaluation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from gateway.config import ContractConfig

__all__ = ["CheckResult", "Contract"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one answer."""

    check: str
    passed: bool


class Contract:
    """The compiled checks of one route (``None`` config: no checks at all)."""

    __slots__ = ("_checks", "_fold", "_labels", "_strip", "_validator", "names")

    def __init__(self, config: ContractConfig | None) -> None:
        self._checks: list[tuple[str, Callable[[str], bool]]] = []
        self._labels: frozenset[str] | None = None
        self._validator: Validator | None = None
        self._fold = bool(config and config.case_insensitive)
        self._strip = bool(config is None or config.strip)
        if config is not None:
            self._compile(config)
        self.names = tuple(name for name, _ in self._checks)

    def _compile(self, config: ContractConfig) -> None:
        if config.non_empty:
            self._checks.append(("non_empty", lambda text: bool(text.strip())))
        if config.max_length is not None:
            limit = config.max_length
            self._checks.append(("max_length", lambda text: len(text) <= limit))
        if config.labels is not None:
            self._labels = frozenset(self._norm(label) for label in config.labels)
            labels = self._labels
            self._checks.append(("labels", lambda text: self._norm(text) in labels))
        if config.json_schema is not None:
            cls = jsonschema.validators.validator_for(
                config.json_schema, default=jsonschema.Draft202012Validator
            )
            self._validator = cls(config.json_schema)
            self._checks.append(("json_schema", self._valid_json))
        if config.regex is not None:
            pattern = re.compile(config.regex)
            self._checks.append(("regex", lambda text: pattern.fullmatch(text) is not None))

    def _norm(self, text: str) -> str:
        if self._strip:
            text = text.strip()
        return text.casefold() if self._fold else text

    def _valid_json(self, text: str) -> bool:
        try:
            value = json.loads(text)
        except ValueError:
            return False
        assert self._validator is not None
        return bool(self._validator.is_valid(value))

    def check(self, text: str | None) -> list[CheckResult]:
        """Run every check on an answer (``None``, no content, fails them all)."""
        if text is None:
            return [CheckResult(name, False) for name in self.names]
        return [CheckResult(name, fn(text)) for name, fn in self._checks]

    def canonical(self, text: str | None) -> Any:
        """The answer as the contract compares it: normalised label, parsed JSON, or text."""
        if text is None:
            return None
        if self._validator is not None:
            try:
                return json.loads(text)
            except ValueError:
                return text
        if self._labels is not None:
            return self._norm(text)
        return text

    def agree(self, a: str | None, b: str | None) -> bool:
        """Whether two answers are the same by this contract."""
        return a is not None and b is not None and self.canonical(a) == self.canonical(b)
