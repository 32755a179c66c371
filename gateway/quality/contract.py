"""A route's contract, compiled once: the checks every answer is held to (pure, no I/O).

Checks, in order, each named as in ``gateway_quality_checks_total{check}``:

* ``non_empty``: the answer has visible text or at least one tool call;
* ``max_length``: the text has at most ``max_length`` characters;
* ``labels``: the text, trimmed (``strip``) and case-folded (``case_insensitive``) when the
  route says so, is one of ``labels``;
* ``json_schema``: the text is JSON valid against ``json_schema`` (jsonschema's validator for
  the schema's ``$schema`` draft, Draft 2020-12 by default), as a ``response_format`` answer;
* ``regex``: the whole text matches ``regex`` (``re.fullmatch``);
* ``tool_call_name``: every tool call names a function in ``tool_calls.allowed``;
* ``tool_call_arguments``: every tool call's arguments are a JSON object, valid against the
  schema ``tool_calls.allowed`` gives its function (any object when it gives ``null``).

Which checks judge an answer (an :class:`~gateway.quality.answer.Answer`, or a text):

* the text checks (``max_length``, ``labels``, ``json_schema``, ``regex``) judge the text. An
  answer made only of tool calls has no text to judge: they are skipped (neither passed nor
  failed). A route that must not call tools says so with ``tool_calls: {allowed: {}}``;
* the tool call checks judge answers that have tool calls and are skipped for the others;
* an answer with neither text nor tool calls (no content, or only a refusal) fails
  ``non_empty`` and every text check.

:meth:`Contract.agree` compares two answers the way the contract sees them (same label, equal
JSON, the same text; the same functions called with equal arguments), for shadow comparisons
and evaluation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from gateway.config import ContractConfig, ToolCallsConfig
from gateway.quality.answer import Answer, ToolCall

__all__ = ["CheckResult", "Contract"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one answer."""

    check: str
    passed: bool


def _validator(schema: dict[str, Any]) -> Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


class _ToolCallRules:
    """``tool_calls.allowed`` compiled: a validator per function that has a schema."""

    __slots__ = ("_allowed",)

    def __init__(self, config: ToolCallsConfig) -> None:
        self._allowed: dict[str, Validator | None] = {
            name: None if schema is None else _validator(schema)
            for name, schema in config.allowed.items()
        }

    def names_allowed(self, calls: tuple[ToolCall, ...]) -> bool:
        return all(call.name in self._allowed for call in calls)

    def arguments_valid(self, calls: tuple[ToolCall, ...]) -> bool:
        for call in calls:
            try:
                value = json.loads(call.arguments)
            except ValueError:
                return False
            if not isinstance(value, dict):
                return False
            validator = self._allowed.get(call.name)
            if validator is not None and not validator.is_valid(value):
                return False
        return True


class Contract:
    """The compiled checks of one route (``None`` config: no checks at all)."""

    __slots__ = (
        "_fold",
        "_labels",
        "_non_empty",
        "_strip",
        "_text_checks",
        "_tool_checks",
        "_validator",
        "names",
    )

    def __init__(self, config: ContractConfig | None) -> None:
        self._non_empty = bool(config and config.non_empty)
        self._text_checks: list[tuple[str, Callable[[str], bool]]] = []
        self._tool_checks: list[tuple[str, Callable[[tuple[ToolCall, ...]], bool]]] = []
        self._labels: frozenset[str] | None = None
        self._validator: Validator | None = None
        self._fold = bool(config and config.case_insensitive)
        self._strip = bool(config is None or config.strip)
        if config is not None:
            self._compile(config)
        self.names = (
            *(("non_empty",) if self._non_empty else ()),
            *(name for name, _ in self._text_checks),
            *(name for name, _ in self._tool_checks),
        )

    def _compile(self, config: ContractConfig) -> None:
        if config.max_length is not None:
            limit = config.max_length
            self._text_checks.append(("max_length", lambda text: len(text) <= limit))
        if config.labels is not None:
            self._labels = frozenset(self._norm(label) for label in config.labels)
            labels = self._labels
            self._text_checks.append(("labels", lambda text: self._norm(text) in labels))
        if config.json_schema is not None:
            self._validator = _validator(config.json_schema)
            self._text_checks.append(("json_schema", self._valid_json))
        if config.regex is not None:
            pattern = re.compile(config.regex)
            self._text_checks.append(("regex", lambda text: pattern.fullmatch(text) is not None))
        if config.tool_calls is not None:
            rules = _ToolCallRules(config.tool_calls)
            self._tool_checks.append(("tool_call_name", rules.names_allowed))
            self._tool_checks.append(("tool_call_arguments", rules.arguments_valid))

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

    def check(self, answer: Answer | str | None) -> list[CheckResult]:
        """Run the checks that apply to an answer (see the module's docstring), in order.

        ``answer`` is an :class:`Answer`, a plain text, or ``None`` (no answer: every check
        fails)."""
        if answer is None:
            return [CheckResult(name, False) for name in self.names]
        if isinstance(answer, str):
            text: str | None = answer
            calls: tuple[ToolCall, ...] = ()
            visible = not answer.isspace() and answer != ""
        else:
            text, calls = answer.text, answer.tool_calls
            visible = answer.has_text
        results = []
        if self._non_empty:
            results.append(CheckResult("non_empty", visible or bool(calls)))
        if self._text_checks and (visible or not calls):
            for name, fn in self._text_checks:
                results.append(CheckResult(name, text is not None and fn(text)))
        if calls:
            for name, tool_fn in self._tool_checks:
                results.append(CheckResult(name, tool_fn(calls)))
        return results

    def _canonical_text(self, text: str) -> Any:
        if self._validator is not None:
            try:
                return json.loads(text)
            except ValueError:
                return text
        if self._labels is not None:
            return self._norm(text)
        return text

    def canonical(self, answer: Answer | str | None) -> Any:
        """The answer as the contract compares it: normalised label, parsed JSON, or text;
        for an answer with tool calls, that and the calls (name and parsed arguments, in
        order); ``None`` for no answer."""
        if answer is None:
            return None
        if isinstance(answer, str):
            return self._canonical_text(answer)
        if not answer.tool_calls:
            return None if answer.text is None else self._canonical_text(answer.text)
        text = answer.text
        return (
            self._canonical_text(text) if text is not None and answer.has_text else None,
            tuple((call.name, _json_or_text(call.arguments)) for call in answer.tool_calls),
        )

    def agree(self, a: Answer | str | None, b: Answer | str | None) -> bool:
        """Whether two answers are the same by this contract (never for a missing one)."""
        if _missing(a) or _missing(b):
            return False
        return bool(self.canonical(a) == self.canonical(b))


def _missing(answer: Answer | str | None) -> bool:
    return answer is None or (
        isinstance(answer, Answer) and answer.text is None and not answer.tool_calls
    )


def _json_or_text(arguments: str) -> Any:
    """Arguments compared as canonical JSON (key order and spacing do not matter)."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments
