"""``run_simulator``: serve the simulator with uvicorn and announce where it listens.

Once the socket is listening (and the app's startup ran) one line goes to stdout, flushed::

    simulator listening on http://HOST:PORT

``PORT`` is the real port, also when ``0`` asked the OS to pick one; tests and benchmarks
start the simulator as a subprocess and read this line to find it.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import uvicorn

from gateway.tools.simulator.app import create_simulator_app
from gateway.tools.simulator.behaviour import SimulatorConfig, load_simulator_config
from gateway.tools.simulator.chat import SimulatedStreamCut

__all__ = ["ANNOUNCE_PREFIX", "listening_url", "run_simulator"]

ANNOUNCE_PREFIX = "simulator listening on "


def listening_url(sockname: tuple[object, ...] | str) -> str:
    """Format a bound socket's ``getsockname()`` as ``http://HOST:PORT`` (IPv6 in brackets)."""
    if isinstance(sockname, str):  # a Unix socket path; not used by run_simulator
        return f"http+unix://{sockname}"
    host, port = str(sockname[0]), sockname[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _caused_by_cut(exc: BaseException | None) -> bool:
    """True when ``exc``, its causes or its exception-group members hold a deliberate cut."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SimulatedStreamCut):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend((current.__cause__, current.__context__))
    return False


class _QuietCuts(logging.Filter):
    """Drops uvicorn's traceback for streams cut on purpose; they are counted in the stats."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _caused_by_cut(record.exc_info[1]))


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints ``ANNOUNCE_PREFIX`` + URL once it is listening."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not self.servers:
            return  # startup failed; uvicorn has logged why
        listeners = self.servers[0].sockets
        if listeners:
            print(ANNOUNCE_PREFIX + listening_url(listeners[0].getsockname()), flush=True)


def run_simulator(
    host: str, port: int, config_path: Path | None, log_level: str = "warning"
) -> None:
    """Serve the simulator until interrupted (SIGINT/SIGTERM); blocks the calling thread.

    Args:
        host: interface to bind, e.g. ``"127.0.0.1"``.
        port: TCP port; ``0`` lets the OS pick a free one (see the announced line).
        config_path: a YAML file for ``load_simulator_config``; ``None`` serves every model
            name with the default, perfect and instant behaviour.
        log_level: uvicorn's log level (``"critical"``, ``"error"``, ``"warning"``, ``"info"``,
            ``"debug"``). Access logs are off.

    Raises:
        SimulatorConfigError: the config file is missing or invalid (before binding).
        SystemExit: code 1 when the server cannot bind or start (uvicorn logs the reason).
    """
    config = load_simulator_config(config_path) if config_path else SimulatorConfig()
    app = create_simulator_app(config)
    # "auto" picks uvloop and httptools when installed, else asyncio and h11.
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietCuts())
    server = _AnnouncingServer(server_config)
    server.run()
    if server.should_exit and not server.started:
        sys.exit(1)  # could not bind or start; uvicorn has logged the reason
