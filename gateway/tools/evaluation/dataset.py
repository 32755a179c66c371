"""Validate a fine-tuning dataset file: the I/O edge around the pure checks.

:func:`validate_dataset` streams the file line by line (bytes, decoded per line) through a
:class:`~gateway.tools.evaluation.dataset_checks.DatasetChecker`; memory is bounded by the checker's
indexes and the longest line read, never by the file's size. With a held-out file it first
reads that file's normalised inputs (:func:`load_holdout`); with a route it checks answers and
system prompts against :func:`route_expectations` from the routes file.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import GatewayConfig
from gateway.tools.evaluation.chat_example import parse_line
from gateway.tools.evaluation.compact_index import CompactIndex
from gateway.tools.evaluation.dataset_checks import DatasetChecker
from gateway.tools.evaluation.dataset_result import (
    HoldoutIndex,
    Limits,
    RouteExpectations,
    ValidationResult,
)
from gateway.tools.evaluation.jsonl import DEFAULT_MAX_LINE_BYTES, read_lines
from gateway.tools.evaluation.problems import Problem
from gateway.tools.exit_codes import UsageError

__all__ = ["UnknownRouteError", "load_holdout", "route_expectations", "validate_dataset"]


class UnknownRouteError(UsageError):
    """The routes file has no such route (or it is a pass-through model); exit 2 (usage)."""


def route_expectations(config: GatewayConfig, route: str) -> RouteExpectations:
    """The candidate's system prompt and the contract of ``route``.

    Raises:
        UnknownRouteError: ``route`` is not a route of ``config`` (the message lists them).
    """
    found = config.routes.get(route)
    if found is None or found.passthrough:
        known = ", ".join(sorted(n for n, r in config.routes.items() if not r.passthrough))
        raise UnknownRouteError(f"no route {route!r} in {config.path} (routes: {known or 'none'})")
    candidate = found.variants[found.candidate]
    return RouteExpectations(
        route=route,
        candidate=found.candidate,
        system_prompt=candidate.system_prompt,
        contract=found.contract,
    )


def load_holdout(
    path: Path, limits: Limits | None = None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[HoldoutIndex, list[Problem]]:
    """Index a held-out file's normalised inputs for the overlap check.

    Lines that are not well-formed examples are skipped, each with a ``holdout_line_skipped``
    warning (validate the held-out file itself for the details).

    Raises:
        OSError: the file cannot be opened or read.
    """
    limits = limits or Limits()
    index = CompactIndex(limits.index_capacity)
    problems: list[Problem] = []
    examples = 0
    with path.open("rb") as stream:
        for raw in read_lines(stream, max_line_bytes):
            digest, found = parse_line(raw, str(path))
            errors = [p for p in found if p.severity == "error"]
            if errors and len(problems) < limits.per_code:
                problems.append(
                    Problem(
                        raw.number,
                        "warning",
                        "holdout_line_skipped",
                        f"skipped for the overlap check: {errors[0].message}",
                        str(path),
                    )
                )
            if digest is not None:
                examples += 1
                index.setdefault(digest.input_key, raw.number)
    if index.full:
        problems.append(
            Problem(
                None,
                "warning",
                "index_full",
                f"only the first {limits.index_capacity} distinct held-out inputs were indexed",
                str(path),
            )
        )
    return HoldoutIndex(str(path), index, examples), problems


def validate_dataset(
    path: Path,
    *,
    expectations: RouteExpectations | None = None,
    holdout: Path | None = None,
    limits: Limits | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> ValidationResult:
    """Check every line of a chat fine-tuning JSONL file and the file as a whole.

    Args:
        path: the training (or validation) file.
        expectations: the route's candidate prompt and contract (``--route``), if any.
        holdout: a held-out file that must not share inputs with ``path``.
        limits: memory, output and OpenAI-rule bounds (:class:`Limits`).
        max_line_bytes: longer lines are skipped and reported, never held in memory.

    Returns:
        A :class:`ValidationResult`; ``result.ok`` is False when any error was found.

    Raises:
        OSError: ``path`` or ``holdout`` cannot be opened or read.
    """
    limits = limits or Limits()
    held, held_problems = (
        load_holdout(holdout, limits, max_line_bytes) if holdout is not None else (None, [])
    )
    checker = DatasetChecker(str(path), expectations, held, limits)
    with path.open("rb") as stream:
        for raw in read_lines(stream, max_line_bytes):
            checker.feed(raw)
    checker.add(held_problems)
    return checker.finish()
