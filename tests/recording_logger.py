"""A stand-in for the structlog logger that keeps what was logged, for unit tests."""

from __future__ import annotations

from typing import Any

__all__ = ["RecordingLogger"]


class RecordingLogger:
    """Keeps every (level, event, fields) logged through it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.events.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, fields)

    def named(self, event: str) -> list[tuple[str, str, dict[str, Any]]]:
        """The records of one event name, in order."""
        return [item for item in self.events if item[1] == event]
