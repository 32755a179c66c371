"""Shared fixtures: a simulator per test session, gateways started per module or test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.inprocess_sim import InProcessSimulator, LoopThread, in_process_simulator
from tests.processes import SHARED_REDIS, SimulatorProcess, start_simulator

_REPLICATED = "test_guard_simulation.py::test_replicated_requirements_hold_on_the_first_runs["


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the replicated guard simulations the selected tests need in a background process
    (tests/unit/guard_sim_pool.py), so they run while the tests before them wait on I/O."""
    names = [
        str(item.callspec.params["name"])
        for item in session.items
        if isinstance(item, pytest.Function) and _REPLICATED in item.nodeid
    ]
    if names and not session.config.option.collectonly:
        from tests.unit import guard_sim_pool

        guard_sim_pool.start(names)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.unit import guard_sim_pool

    guard_sim_pool.shutdown()


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorProcess]:
    """One simulator process for the whole run; tests reset its behaviours and stats."""
    with start_simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorProcess) -> Iterator[SimulatorProcess]:
    """The session's simulator, reset to perfect instant models before and after the test."""
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """One event loop in a background thread for the in-process gateways and simulators."""
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def in_sim(loop_thread: LoopThread) -> Iterator[InProcessSimulator]:
    """A fresh simulator app of this test's own, served in-process (``tests.inprocess_sim``)."""
    with in_process_simulator(loop_thread) as simulator:
        yield simulator


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A key namespace of its own on the shared Redis, deleted after the test."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(SHARED_REDIS)
    keys = list(client.scan_iter(match=f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()
