"""Logging (structlog JSON on stdout) and Prometheus metrics."""

from __future__ import annotations

from gateway.telemetry.logging import configure_logging, get_line_logger, get_logger
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.record import RequestRecord, Telemetry

__all__ = [
    "Metrics",
    "RequestRecord",
    "Telemetry",
    "configure_logging",
    "get_line_logger",
    "get_logger",
]
