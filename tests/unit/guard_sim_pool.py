"""The replicated guard simulations of a session, started early in a background process.

``test_replicated_requirements_hold_on_the_first_runs`` spends most of the suite's CPU in
``simulate_route_scenario`` (the real guard rules at every look of 12 replicas, 100 runs per
row), while the end-to-end tests that run before it mostly wait on sockets and subprocesses. So
once the tests are collected, the rows they will need are computed in one worker process (the
machine's other core), from the same seeds: the results are the same as computed inline, and a
test takes its row from here (:func:`route_results`), or computes it itself when none was
started (e.g. the module run on its own).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from tests.unit.guard_sim import ROUTE_SCENARIOS, RouteResult, simulate_route_scenario

__all__ = ["route_results", "shutdown", "start"]

RESULT_TIMEOUT_S = 1800.0
"""Bound on waiting for one row (a hang detector; a row takes well under a minute)."""

_pool: ProcessPoolExecutor | None = None
_futures: dict[str, Future[list[RouteResult]]] = {}


def _compute(name: str) -> list[RouteResult]:
    scenario = {s.name: s for s in ROUTE_SCENARIOS}[name]
    return simulate_route_scenario(scenario, scenario.test_runs)


def start(names: list[str]) -> None:
    """Start computing these rows (``ROUTE_SCENARIOS`` names) in one worker process."""
    global _pool  # noqa: PLW0603 -- one pool per session
    if not names or _pool is not None:
        return
    _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    for name in names:
        _futures[name] = _pool.submit(_compute, name)


def route_results(name: str) -> list[RouteResult]:
    """The row's results: from the worker when it was started, else computed here."""
    future = _futures.pop(name, None)
    if future is None:
        return _compute(name)
    return future.result(timeout=RESULT_TIMEOUT_S)


def shutdown() -> None:
    """Stop the worker (rows nobody asked for are dropped)."""
    global _pool  # noqa: PLW0603
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
    _futures.clear()
