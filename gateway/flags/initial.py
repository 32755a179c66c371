"""Flags as the routes file sets them: the state every store starts from."""

from __future__ import annotations

from gateway.config import Route
from gateway.routing import FlagState

__all__ = ["initial_flag"]


def initial_flag(route: Route) -> FlagState:
    """The flag a route starts with: ``flag:`` from the routes file, version 0. A route with a
    ``ramp`` starts at its first step (its clock is stamped by the guard's first ramp write)."""
    ramp = route.ramp
    return FlagState(
        route=route.name,
        enabled=route.flag.enabled,
        weight=route.flag.weight if ramp is None else ramp.steps[0],
        salt=route.flag.salt or route.name,
        rollout_id="initial",
        version=0,
        ramp_step=None if ramp is None else 0,
    )
