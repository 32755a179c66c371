"""The file-wide checks of a fine-tuning dataset, fed one line at a time (pure, no I/O).

:class:`DatasetChecker` takes :class:`~gateway.tools.evaluation.jsonl.RawLine` objects in file order
and keeps only bounded state: two :class:`~gateway.tools.evaluation.compact_index.CompactIndex`
(exact examples; normalised inputs with the first line and answer hash), a label counter of at
most ``Limits.max_labels`` answers, a table of short answers for messages, token totals and a
:class:`~gateway.tools.evaluation.problems.ProblemLog`. Per line it reports:

* format problems (:func:`~gateway.tools.evaluation.chat_example.parse_line`), errors;
* ``duplicate_example`` (the same example again) and ``near_duplicate`` (the same input up to
  case, whitespace and punctuation, same answer): warnings;
* ``inconsistent_answer``: the same input (and system prompt) as an earlier line with a
  different answer, an error naming both lines;
* with a route: ``label_outside_contract`` / ``contract_violation`` (the answer fails the
  route's contract), ``wrong_system_prompt`` / ``missing_system_prompt`` (the candidate is
  served with another prompt), errors;
* with a held-out index: ``holdout_overlap``, an error naming the held-out line;
* ``example_too_long`` above ``Limits.max_example_tokens`` (approximate), a warning.

At the end: ``too_few_examples`` (OpenAI requires 10), and ``index_full`` when the bounded
indexes stopped growing (checks then cover the first ``capacity`` distinct examples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.quality.contract import Contract
from gateway.tools.evaluation.chat_example import COUNTING_METHOD, Digest, parse_line
from gateway.tools.evaluation.compact_index import CompactIndex
from gateway.tools.evaluation.dataset_result import (
    HoldoutIndex,
    Limits,
    RouteExpectations,
    TokenStats,
    ValidationResult,
)
from gateway.tools.evaluation.jsonl import RawLine
from gateway.tools.evaluation.problems import Problem, ProblemLog

__all__ = ["DatasetChecker"]

_MASK32 = 0xFFFF_FFFF


@dataclass(slots=True)
class _Tokens:
    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0
    max_line: int | None = None


@dataclass(slots=True)
class DatasetChecker:
    """Feed lines in order with :meth:`feed`, then call :meth:`finish` once."""

    file: str
    expectations: RouteExpectations | None = None
    holdout: HoldoutIndex | None = None
    limits: Limits = field(default_factory=Limits)
    lines: int = 0
    examples: int = 0
    _log: ProblemLog = field(init=False)
    _exact: CompactIndex = field(init=False)
    _inputs: CompactIndex = field(init=False)
    _contract: Contract | None = field(init=False)
    _labels: dict[str, int] = field(default_factory=dict)
    _other_answers: int = 0
    _answers: dict[int, str] = field(default_factory=dict)
    _tokens: _Tokens = field(default_factory=_Tokens)

    def __post_init__(self) -> None:
        self._log = ProblemLog(self.limits.per_code)
        self._exact = CompactIndex(self.limits.index_capacity)
        self._inputs = CompactIndex(self.limits.index_capacity)
        contract = self.expectations.contract if self.expectations else None
        self._contract = Contract(contract) if contract is not None else None

    def feed(self, raw: RawLine) -> None:
        """Check one line (lines must come in file order)."""
        self.lines = raw.number
        digest, problems = parse_line(raw, self.file)
        self._log.extend(problems)
        if digest is None:
            return
        if not any(p.severity == "error" for p in problems):
            self.examples += 1
        self._count(raw.number, digest)
        self._repeats(raw.number, digest)
        if self.expectations is not None:
            self._route(raw.number, digest, self.expectations)
        if self.holdout is not None:
            seen = self.holdout.index.get(digest.input_key)
            if seen is not None:
                self._error(
                    raw.number,
                    "holdout_overlap",
                    f"the same input (ignoring case, whitespace and punctuation) is line {seen} "
                    f"of the held-out file {self.holdout.file}; drop it from one of them, or "
                    "the evaluation will flatter the fine-tune",
                )

    def add(self, problems: list[Problem]) -> None:
        """Record problems found elsewhere (e.g. in the held-out file) with this file's."""
        self._log.extend(problems)

    def finish(self) -> ValidationResult:
        """The result: problems in line order, counts, labels and token totals."""
        limits = self.limits
        if self.examples < limits.min_examples:
            self._log.add(
                Problem(
                    None,
                    "error",
                    "too_few_examples",
                    f"{self.examples} valid example(s); OpenAI requires at least "
                    f"{limits.min_examples} (and recommends 50 to 100)",
                    self.file,
                )
            )
        if self._exact.full or self._inputs.full:
            message = (
                f"more than {limits.index_capacity} distinct examples: duplicate and "
                f"consistency checks covered the first {limits.index_capacity} only"
            )
            self._log.add(Problem(None, "warning", "index_full", message, self.file))
        tokens = self._tokens
        labels = sorted(self._labels.items(), key=lambda item: (-item[1], item[0]))
        return ValidationResult(
            file=self.file,
            lines=self.lines,
            examples=self.examples,
            problems=self._log.problems,
            counts=self._log.counts,
            omitted=self._log.omitted,
            errors=self._log.total("error"),
            warnings=self._log.total("warning"),
            labels=labels,
            other_answers=self._other_answers,
            tokens=TokenStats(
                COUNTING_METHOD,
                tokens.total,
                tokens.count,
                tokens.min,
                tokens.max,
                tokens.max_line,
            ),
            route=self.expectations.route if self.expectations else None,
            holdout=self.holdout.file if self.holdout else None,
        )

    def _error(self, line: int, code: str, message: str) -> None:
        self._log.add(Problem(line, "error", code, message, self.file))

    def _warn(self, line: int, code: str, message: str) -> None:
        self._log.add(Problem(line, "warning", code, message, self.file))

    def _count(self, line: int, digest: Digest) -> None:
        limits, tokens = self.limits, self._tokens
        tokens.count += 1
        tokens.total += digest.tokens
        if tokens.max_line is None or digest.tokens > tokens.max:
            tokens.max, tokens.max_line = digest.tokens, line
        tokens.min = digest.tokens if tokens.count == 1 else min(tokens.min, digest.tokens)
        if digest.tokens > limits.max_example_tokens:
            self._warn(
                line,
                "example_too_long",
                f"about {digest.tokens} tokens, above the {limits.max_example_tokens} a "
                "training example may have; it will be truncated",
            )
        answer = digest.answer
        short = len(answer) <= limits.max_label_chars
        if short and (answer in self._labels or len(self._labels) < limits.max_labels):
            self._labels[answer] = self._labels.get(answer, 0) + 1
        else:
            self._other_answers += 1
        if short and len(self._answers) < 4 * limits.max_labels:
            self._answers.setdefault(digest.answer_hash, answer)

    def _repeats(self, line: int, digest: Digest) -> None:
        first = self._exact.setdefault(digest.exact, line)
        if first is not None:
            self._warn(line, "duplicate_example", f"the same example as line {first}")
            return
        earlier = self._inputs.setdefault(digest.conflict_key, line << 32 | digest.answer_hash)
        if earlier is None:
            return
        first_line, first_answer = earlier >> 32, earlier & _MASK32
        if first_answer == digest.answer_hash:
            self._warn(
                line,
                "near_duplicate",
                f"the same input as line {first_line} up to case, whitespace and punctuation, "
                "with the same answer",
            )
            return
        theirs = self._answers.get(first_answer)
        there = f"{_quote(theirs)} on line {first_line}" if theirs else f"line {first_line}'s"
        self._error(
            line,
            "inconsistent_answer",
            f"the same input as line {first_line} (ignoring case, whitespace and punctuation) "
            f"with a different answer: {_quote(digest.answer)} here, {there}; keep one answer",
        )

    def _route(self, line: int, digest: Digest, expect: RouteExpectations) -> None:
        if self._contract is not None and digest.answer:  # empty: reported as empty_content
            failed = [r.check for r in self._contract.check(digest.answer) if not r.passed]
            contract = expect.contract
            for check in failed:
                if check == "labels" and contract is not None and contract.labels:
                    self._error(
                        line,
                        "label_outside_contract",
                        f"answer {_quote(digest.answer)} is not a label of route "
                        f"{expect.route} ({', '.join(contract.labels)})",
                    )
                else:
                    self._error(
                        line,
                        "contract_violation",
                        f"answer {_quote(digest.answer)} fails the {check} check of route "
                        f"{expect.route}'s contract",
                    )
        wanted = expect.system_prompt
        if wanted is None:
            return
        where = f"route {expect.route}'s candidate (variant {expect.candidate})"
        if digest.system_prompt is None:
            self._error(
                line,
                "missing_system_prompt",
                f"no system message, but {where} is served with the system prompt "
                f"{_quote(wanted)}; train with that prompt",
            )
        elif digest.system_prompt != wanted:
            self._error(
                line,
                "wrong_system_prompt",
                f"the system prompt is not the one {where} is served with: "
                f"{_difference(digest.system_prompt, wanted)}; train on the served prompt",
            )


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _difference(got: str, wanted: str) -> str:
    """Where two prompts first differ, e.g. ``at character 12: 'label.' vs 'label:'``."""
    if got.strip() == wanted:
        return "only in leading or trailing whitespace"
    at = next(
        (i for i, (a, b) in enumerate(zip(got, wanted, strict=False)) if a != b),
        min(len(got), len(wanted)),
    )
    start = max(0, at - 10)
    return (
        f"from character {at + 1} it reads {_quote(got[start : at + 30])} "
        f"instead of {_quote(wanted[start : at + 30])}"
    )
