"""Flags as the routes file sets them: the state every store starts from."""

from __future__ import annotations

from gateway.config import GatewayConfig, Route
from gateway.routing import FlagState

__all__ = ["ConfigFlags", "initial_flag"]


def initial_flag(route: Route) -> FlagState:
    """The flag a route starts with: ``flag:`` from the routes file, version 0."""
    return FlagState(
        route=route.name,
        enabled=route.flag.enabled,
        weight=route.flag.weight,
        salt=route.flag.salt or route.name,
        rollout_id="initial",
        version=0,
    )


class ConfigFlags:
    """A :class:`~gateway.routing.FlagSource` that serves the routes file's flags unchanged."""

    def __init__(self, config: GatewayConfig) -> None:
        self._flags = {
            name: initial_flag(route)
            for name, route in config.routes.items()
            if not route.passthrough
        }

    def flag(self, route: str) -> FlagState | None:
        return self._flags.get(route)

    def all(self) -> dict[str, FlagState]:
        """Every route's flag, by route name."""
        return dict(self._flags)
