"""A local OpenAI-compatible upstream that behaves like a support-ticket classifier.

It is the upstream of the demo, the tests and the benchmarks. Each model name answers
``billing``, ``technical`` or ``account`` for the last user message (or echoes it), with the
latency, accuracy, contract violations, errors, garbage and cut streams its
``ModelBehaviour`` asks for. Behaviours can be changed at runtime and counters read over HTTP
(``/_simulator/...``, see ``gateway.tools.simulator.app``).

Use ``create_simulator_app(config)`` in-process, or ``run_simulator(host, port, path)`` to
serve it; ``config/simulator.example.yaml`` shows the config file.
"""

from __future__ import annotations

from gateway.tools.simulator.app import create_simulator_app
from gateway.tools.simulator.behaviour import (
    ModelBehaviour,
    SimulatorConfig,
    SimulatorConfigError,
    load_simulator_config,
    merge_behaviour,
)
from gateway.tools.simulator.classifier import INVALID_LABELS, LABELS, classify, wrong_label
from gateway.tools.simulator.server import ANNOUNCE_PREFIX, run_simulator
from gateway.tools.simulator.state import ModelStats, SimulatorState

__all__ = [
    "ANNOUNCE_PREFIX",
    "INVALID_LABELS",
    "LABELS",
    "ModelBehaviour",
    "ModelStats",
    "SimulatorConfig",
    "SimulatorConfigError",
    "SimulatorState",
    "classify",
    "create_simulator_app",
    "load_simulator_config",
    "merge_behaviour",
    "run_simulator",
    "wrong_label",
]
