"""Route flags: their initial state from the routes file, and (later) the runtime stores."""

from __future__ import annotations

from gateway.flags.initial import ConfigFlags, initial_flag

__all__ = ["ConfigFlags", "initial_flag"]
