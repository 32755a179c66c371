"""HTTP handlers: the OpenAI data plane, operations endpoints (and the admin plane)."""

from __future__ import annotations

__all__: list[str] = []
