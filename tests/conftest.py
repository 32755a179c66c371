"""Shared fixtures: a simulator per test session, gateways started per module or test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import SimulatorProcess, start_simulator


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
