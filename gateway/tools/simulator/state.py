"""The mutable state of one simulator app: live behaviours, the random source, counters.

One ``SimulatorState`` is made by ``create_simulator_app`` and kept on ``app.state``; nothing
lives in module globals, so two apps in one process (as in tests) never share counters.
Handlers run on one event loop, so plain attribute updates need no lock.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway.tools.simulator.behaviour import ModelBehaviour, SimulatorConfig, merge_behaviour

__all__ = ["ModelStats", "SimulatorState"]


class ModelStats(msgspec.Struct, kw_only=True):
    """Counters of one model name since start or the last reset.

    Attributes:
        requests: chat completion requests that passed auth and body validation.
        prompt_tokens: sum of ``usage.prompt_tokens`` actually sent to clients (non-streamed
            answers, and streams that asked for ``include_usage`` and got the usage chunk).
        completion_tokens: the same for ``usage.completion_tokens``.
        streams_started: streamed responses whose body began.
        streams_completed: streams that reached ``data: [DONE]``.
        streams_disconnected: streams the client closed before the end.
        streams_cut: streams the simulator aborted on purpose (``cut_stream_after``).
        errors_injected: responses with an injected error status (``error_rate``).
        garbage_injected: responses with an injected non-JSON body or event (``garbage_rate``).
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_disconnected: int = 0
    streams_cut: int = 0
    errors_injected: int = 0
    garbage_injected: int = 0


class SimulatorState:
    """Live behaviours (config plus runtime overrides), the seeded RNG and per-model stats."""

    __slots__ = ("_overrides", "_stats", "config", "rng")

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - simulation, not cryptography
        self._overrides: dict[str, ModelBehaviour] = {}
        self._stats: dict[str, ModelStats] = {}

    def behaviour_for(self, model: str) -> ModelBehaviour:
        """The live behaviour of ``model``: its override, else its config, else the default."""
        override = self._overrides.get(model)
        return override if override is not None else self.config.behaviour_for(model)

    def model_names(self) -> list[str]:
        """Configured model names, then models that only have runtime overrides."""
        names = list(self.config.models)
        names.extend(name for name in self._overrides if name not in self.config.models)
        return names

    def behaviours(self) -> dict[str, Any]:
        """``{"default": {...}, "models": {name: {...}}}`` of live behaviours, JSON-ready."""
        return {
            "default": msgspec.to_builtins(self.config.default),
            "models": {
                name: msgspec.to_builtins(self.behaviour_for(name)) for name in self.model_names()
            },
        }

    def update_behaviour(self, model: str, patch: Mapping[str, Any]) -> ModelBehaviour:
        """Merge a partial behaviour into ``model``'s live one and return the result.

        Raises:
            SimulatorConfigError: the patch has an unknown field or an invalid value.
        """
        behaviour = merge_behaviour(self.behaviour_for(model), patch)
        self._overrides[model] = behaviour
        return behaviour

    def reset_behaviour(self, model: str) -> ModelBehaviour:
        """Drop ``model``'s runtime override; return its configured (or default) behaviour."""
        self._overrides.pop(model, None)
        return self.config.behaviour_for(model)

    def stats_for(self, model: str) -> ModelStats:
        """The counters of ``model``, created at zero on first use."""
        stats = self._stats.get(model)
        if stats is None:
            stats = self._stats[model] = ModelStats()
        return stats

    def stats_snapshot(self) -> dict[str, Any]:
        """``{"models": {name: counters}, "totals": counters}``; see ``ModelStats`` fields."""
        totals = ModelStats()
        models: dict[str, Any] = {}
        for name, stats in self._stats.items():
            models[name] = msgspec.structs.asdict(stats)
            for field in ModelStats.__struct_fields__:
                setattr(totals, field, getattr(totals, field) + getattr(stats, field))
        return {"models": models, "totals": msgspec.structs.asdict(totals)}

    def reset_stats(self) -> None:
        """Forget every counter (behaviours and the RNG are kept)."""
        self._stats.clear()
