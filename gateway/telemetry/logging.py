"""structlog configured for one JSON object per line on stdout, for our events and for the
libraries' (uvicorn, httpx) standard-library log records alike.

Configured by the process entry point (``create_app`` or the CLI), never at import time. Our
events are rendered with msgspec and written by structlog's bytes logger; stdlib records go
through structlog's ``ProcessorFormatter`` to the same JSON shape. httpx's per-request INFO line
is silenced: the gateway logs one ``request.completed`` event per request itself.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

__all__ = ["configure_logging", "get_logger"]

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


def configure_logging(level: str = "info") -> None:
    """Send structlog events and stdlib records as JSON lines to stdout at ``level`` and up."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
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


def get_logger(name: str) -> Any:
    """A structlog logger bound with ``logger=name``."""
    return structlog.get_logger().bind(logger=name)
