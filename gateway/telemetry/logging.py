"""structlog configured for one JSON object per line on stdout, for our events and for the
libraries' (uvicorn, httpx) standard-library log records alike.

Configured by the process entry point (``create_app`` or the CLI), never at import time. Our
events are rendered with msgspec and written by structlog's bytes logger; stdlib records go
through structlog's ``ProcessorFormatter`` to the same JSON shape. httpx's per-request INFO line
is silenced: the gateway logs one ``request.completed`` event per request itself.

That per-request event goes through :func:`get_line_logger`: a structlog bound logger made
once, with one processor (level, a timestamp formatted once per second, msgspec encoding)
instead of the five of the general chain: 11 µs per line down to about 3
(bench/results/profile-inprocess.md). Same JSON shape and keys as every other event.

With tracing on (:mod:`gateway.telemetry.tracing`), both add ``trace_id`` and ``span_id`` (W3C
hex, 32 and 16 digits) to every line written while a span is recording
(:func:`add_trace_ids`): a request's lines carry its server span's ids. With tracing off the
processor is not installed at all.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, BinaryIO

import msgspec
import structlog
from opentelemetry import trace

__all__ = ["add_trace_ids", "configure_logging", "get_line_logger", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _encode(obj: Any, **_: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=str)


def _encode_text(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


def add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, if it is
    recording (an unsampled or ended span adds nothing)."""
    span = trace.get_current_span()
    if span.is_recording():
        ids = span.get_span_context()
        event_dict["trace_id"] = format(ids.trace_id, "032x")
        event_dict["span_id"] = format(ids.span_id, "016x")
    return event_dict


class _LineOutput:
    """Where :func:`get_line_logger` writes, as :func:`configure_logging` last set it."""

    file: BinaryIO | None = None
    level: int = logging.INFO
    trace_ids: bool = False


def configure_logging(level: str = "info", *, trace_ids: bool = False) -> None:
    """Send structlog events and stdlib records as JSON lines to stdout at ``level`` and up;
    with ``trace_ids`` (tracing on), each line with the current span's ids."""
    _LineOutput.file = sys.stdout.buffer
    _LineOutput.level = _LEVELS[level]
    _LineOutput.trace_ids = trace_ids
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if trace_ids:
        shared.append(add_trace_ids)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_encode),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_encode_text),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    for name in ("uvicorn", "uvicorn.error"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    # One request.completed event per request replaces the access log.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


_line_encoder = msgspec.json.Encoder(enc_hook=str)
_second = -1
_second_text = ""


def _timestamp() -> str:
    """Now in UTC as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it (always with
    microseconds); the date and time of day formatted once per second."""
    global _second, _second_text  # noqa: PLW0603 -- a one-entry cache
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1e6):06d}Z"


def _render_line(_: Any, method_name: str, event_dict: dict[str, Any]) -> bytes:
    event_dict["level"] = "warning" if method_name == "warn" else method_name
    event_dict["timestamp"] = _timestamp()
    return _line_encoder.encode(event_dict)


class _Emit:
    """:meth:`emit` for the line logger (mixed into structlog's filtering bound logger)."""

    _context: dict[str, Any]
    _processors: list[Any]
    _logger: Any
    _min_level: int

    def emit(self, method_name: str, event: str, fields: dict[str, Any]) -> None:
        """``self.<method_name>(event, **fields)`` taking ``fields`` as the dict it already is:
        the same level filter, processors, output and key order, without structlog packing
        and unpacking some twenty keyword arguments three times on the way (a
        ``request.completed`` line 6.5 -> 3.7 µs; bench/RESULTS.md, "Data plane v2")."""
        if _LEVELS[method_name] < self._min_level:
            return
        event_dict = self._context.copy()
        event_dict.update(fields)
        event_dict["event"] = event
        logger = self._logger
        for processor in self._processors:
            event_dict = processor(logger, method_name, event_dict)
        logger.msg(event_dict)


def get_line_logger(name: str) -> Any:
    """A structlog logger bound with ``logger=name`` for the one event per request: level
    filtered as :func:`configure_logging` said, rendered by a single processor, written by
    structlog's ``BytesLogger`` to stdout. No context variables are merged; the current span's
    ids are added (:func:`add_trace_ids`) when :func:`configure_logging` said ``trace_ids``.
    Besides structlog's methods it has ``emit(method_name, event, fields)`` (see
    :meth:`_Emit.emit`)."""
    wrapper: Any = structlog.make_filtering_bound_logger(_LineOutput.level)
    line_logger: Any = type("LineLogger", (_Emit, wrapper), {"_min_level": _LineOutput.level})
    output = structlog.BytesLogger(_LineOutput.file or sys.stdout.buffer)
    processors: list[Any] = [add_trace_ids] if _LineOutput.trace_ids else []
    return line_logger(output, [*processors, _render_line], {"logger": name})


def get_logger(name: str) -> Any:
    """A structlog logger bound with ``logger=name``."""
    return structlog.get_logger().bind(logger=name)
