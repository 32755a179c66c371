"""What ``gateway eval`` reads before sending anything: the route, the examples, the state.

Each loader raises a :class:`~gateway.tools.exit_codes.CliError` when the input cannot be used
(exit 1 for invalid content, 2 for a bad option), so that the command itself only orders the
steps. Imported when ``gateway eval`` runs, never by ``gateway --help``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from gateway.config import GatewayConfig, Route
from gateway.tools.cli.common import load_routes
from gateway.tools.evaluation.heldout_examples import DatasetError, Example, read_examples
from gateway.tools.evaluation.heldout_state import Plan, plan_run, read_state
from gateway.tools.exit_codes import UsageError

__all__ = ["load_examples", "load_route", "resume", "sha256"]

_MOST_PROBLEMS = 20
"""Problems of a held-out file listed at most (then how many more there are)."""


def load_route(config_path: Path, route_name: str) -> tuple[GatewayConfig, Route]:
    """The routes file and the route to evaluate (one with variants).

    Raises:
        RejectedError: the routes file is invalid (exit 1; every problem listed).
        UsageError: it cannot be read, or has no such route (exit 2).
    """
    config = load_routes(config_path)
    route = config.routes.get(route_name)
    if route is None or route.passthrough:
        known = ", ".join(name for name, r in config.routes.items() if not r.passthrough)
        raise UsageError(
            f"{config_path}: no route '{route_name}' with variants",
            f"routes: {known or 'none'}; set --route, or --config (GATEWAY_CONFIG)",
        )
    return config, route


def load_examples(data: Path, limit: int | None) -> list[Example]:
    """The held-out examples (the first ``limit`` of them, when given).

    Raises:
        DatasetError: invalid lines (exit 1; the first 20 listed, then how many more).
        UnreadableFileError: the file cannot be read (exit 2).
    """
    try:
        examples = read_examples(data)
    except DatasetError as exc:
        if len(exc.problems) > _MOST_PROBLEMS:
            more = len(exc.problems) - _MOST_PROBLEMS
            exc.problems = [*exc.problems[:_MOST_PROBLEMS], f"... and {more} more"]
        raise
    return examples if limit is None else examples[:limit]


def resume(
    state_path: Path,
    examples: Sequence[Example],
    variants: Sequence[str],
    *,
    route: str,
    fresh: bool,
    retry_errors: bool,
) -> Plan:
    """What is done and what is left, from the state file (deleted first when ``fresh``).

    Says on stderr how many results are resumed, and how many unreadable lines were skipped.
    """
    if fresh:
        state_path.unlink(missing_ok=True)
    records, unreadable = read_state(state_path)
    plan = plan_run(examples, variants, records, route=route, retry_errors=retry_errors)
    err = Console(stderr=True, highlight=False)
    if plan.done:
        err.print(
            Text(
                f"resuming from {state_path}: {len(plan.done)} of "
                f"{len(examples) * len(variants)} results done, {len(plan.todo)} to send"
                + (f" ({plan.stale} stale records ignored)" if plan.stale else "")
            )
        )
    if unreadable:
        err.print(Text(f"note: {unreadable} unreadable line(s) in {state_path} were skipped"))
    return plan


def sha256(path: Path) -> str:
    """The file's SHA-256 as hex digits, read in 64 KiB blocks (the report names its data)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()
