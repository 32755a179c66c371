"""The ramp's Prometheus gauges (defined in :class:`gateway.telemetry.Metrics`), kept current.

``gateway_ramp_step{route}`` is the ramp's current step (0-based index into the route's
``ramp.steps``) and ``gateway_ramp_state{route,state}`` is 1 for its state (``ramping``,
``paused``, ``complete``, ``stopped``) and 0 for the others, as this replica's flag says. Until
the replica knows the route's flag (before its first look at a loaded flag, or for as long as
its store has been unreachable since it started: flag source ``none``) every state is 0 and the
step 0: no state, rather than a ``stopped`` an alert could take for a rollback. Only routes with
``ramp:`` have series; their label values come from the routes file and a closed set.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Gauge

__all__ = ["RAMP_STATES", "RampMetrics"]

RAMP_STATES = ("ramping", "paused", "complete", "stopped")


class RampMetrics:
    """Sets the ramp's gauges (``step`` and ``state``, made by
    :class:`gateway.telemetry.Metrics`) for ``routes``, the routes with a ramp."""

    def __init__(self, step: Gauge, state: Gauge, routes: Iterable[str]) -> None:
        self.step = step
        self.state = state
        self._shown: dict[str, tuple[int, str | None]] = {}
        for route in routes:
            self.unknown(route)

    def unknown(self, route: str) -> None:
        """No flag known for the route: step 0 and every state 0."""
        self.show(route, 0, None)

    def show(self, route: str, step: int, state: str | None) -> None:
        """Set the route's gauges (nothing to do when they already say so); ``state`` ``None``:
        no state is 1."""
        if self._shown.get(route) == (step, state):
            return
        self.step.labels(route).set(step)
        for name in RAMP_STATES:
            self.state.labels(route, name).set(1 if name == state else 0)
        self._shown[route] = (step, state)
