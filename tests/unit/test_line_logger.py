"""The request line logger's ``emit`` writes what its structlog method writes (same bytes but
the timestamp), and filters levels the same way (gateway/telemetry/logging.py)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from gateway.telemetry import logging as gateway_logging
from gateway.telemetry.logging import get_line_logger

FIELDS: dict[str, Any] = {
    "request_id": "req_1",
    "operation": "chat",
    "route": "triage",
    "variant": None,
    "stream": False,
    "status": 200,
    "duration_ms": 1.234,
    "ttft_ms": None,
    "cost_usd": 0.0001,
    "checks_failed": ["json"],
}


def lines(out: io.BytesIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("method", ["info", "warning"])
def test_emit_writes_what_the_structlog_method_writes(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.BytesIO()
    monkeypatch.setattr(gateway_logging._LineOutput, "file", out)
    monkeypatch.setattr(gateway_logging._LineOutput, "level", gateway_logging._LEVELS["info"])
    logger = get_line_logger("gateway")
    getattr(logger, method)("request.completed", **FIELDS)
    logger.emit(method, "request.completed", dict(FIELDS))
    by_kwargs, by_emit = lines(out)
    assert by_kwargs.pop("timestamp")
    assert by_emit.pop("timestamp")
    assert list(by_emit.items()) == list(by_kwargs.items())  # keys in the same order too
    assert by_emit["level"] == method
    assert by_emit["logger"] == "gateway"


def test_emit_filters_levels_as_the_logger_does(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.BytesIO()
    monkeypatch.setattr(gateway_logging._LineOutput, "file", out)
    monkeypatch.setattr(gateway_logging._LineOutput, "level", gateway_logging._LEVELS["warning"])
    logger = get_line_logger("gateway")
    logger.info("request.completed", **FIELDS)
    logger.emit("info", "request.completed", dict(FIELDS))
    assert out.getvalue() == b""
    logger.emit("warning", "request.completed", dict(FIELDS))
    assert [line["level"] for line in lines(out)] == ["warning"]
