"""``gateway serve``: run uvicorn so that start-up and shutdown cannot hang.

Two guarantees on top of ``uvicorn.run``:

* **A failed bind exits at once, non-zero.** With one worker, ``uvicorn.run`` starts the app's
  lifespan (flag store, guard) *before* it binds, and on "address already in use" it runs the
  lifespan's shutdown before exiting; with a live Redis flag store that shutdown could hang
  (a flag-sync task cancelled while subscribing) and the process stayed up, ignoring SIGTERM.
  Here the socket is bound first, as uvicorn itself does for several workers, so a taken port
  ends the process before anything else has started, whatever the store.
* **SIGTERM always ends the process.** uvicorn only sets a flag on SIGTERM; a start-up or a
  lifespan shutdown that never finishes would keep the process alive. The first SIGTERM or
  SIGINT also arms a watchdog: if the process is still there ``shutdown_grace_s`` plus
  :data:`SHUTDOWN_MARGIN_S` seconds later, it exits with status 1.

The socket is bound the same way with several workers (uvicorn's supervisor then starts them);
the watchdog is not installed in worker processes (uvicorn builds those servers itself). Before
several workers start, their metrics directory is prepared and named in
``PROMETHEUS_MULTIPROC_DIR`` (:mod:`gateway.telemetry.multiproc`), so that every scrape counts
every worker; a directory made here is removed when the supervisor exits. The
HTTP protocol is :class:`~gateway.serving.http_protocol.LimitedHttpToolsProtocol`: httptools with
bounds on request-head size and time.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from gateway.serving.http_protocol import HeadLimits
from gateway.settings import Settings
from gateway.telemetry import multiproc

__all__ = ["SHUTDOWN_MARGIN_S", "ServerConfig", "run_server"]

SHUTDOWN_MARGIN_S = 5.0
"""Time allowed after the drain (``shutdown_grace_s``) for the lifespan's own shutdown."""

EXIT_FORCED = 1
"""Exit status of a failed bind and of a process the watchdog ended."""


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the request-head limits that
    :class:`~gateway.serving.http_protocol.LimitedHttpToolsProtocol` reads (it travels to worker
    processes with the config)."""

    def __init__(self, app: str, *, head_limits: HeadLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.head_limits = head_limits


class _Server(uvicorn.Server):
    """uvicorn's server with a watchdog armed by the first exit signal."""

    def __init__(
        self,
        config: uvicorn.Config,
        hard_exit_after_s: float,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        """``exit_process`` ends the process without cleanup (tests replace it)."""
        super().__init__(config)
        self._hard_exit_after_s = hard_exit_after_s
        self._exit_process = exit_process
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._hard_exit_after_s, self._force_exit)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _force_exit(self) -> None:
        sys.stderr.write(
            f"gateway: still running {self._hard_exit_after_s:g} s after the exit signal "
            "(start-up or shutdown hung); exiting\n"
        )
        sys.stderr.flush()
        self._exit_process(EXIT_FORCED)


def run_server(settings: Settings, **uvicorn_options: Any) -> int:
    """Serve ``gateway.app:app_from_environment`` with ``settings``; return the exit status.

    A failed bind returns 1 at once (uvicorn logs why), before the app is started.
    """
    config = ServerConfig(
        "gateway.app:app_from_environment",
        head_limits=HeadLimits(settings.max_header_bytes, settings.header_timeout_s),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http="gateway.serving.http_protocol:LimitedHttpToolsProtocol",
        # The same bound for uvicorn's h11 parser, should anyone run the app with it.
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
        lifespan="on",
        **uvicorn_options,
    )
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logged why (e.g. address already in use); nothing started
        return EXIT_FORCED
    if settings.workers > 1:  # as uvicorn.run does: a supervisor and worker processes
        directory, made_here = multiproc.prepare(os.environ.get(multiproc.ENV))
        os.environ[multiproc.ENV] = str(directory)  # the spawned workers inherit it
        try:
            Multiprocess(config, sockets=[sock]).run()
        finally:
            if made_here:
                shutil.rmtree(directory, ignore_errors=True)
        return 0
    server = _Server(config, settings.shutdown_grace_s + SHUTDOWN_MARGIN_S)
    server.run(sockets=[sock])
    return 0 if server.started else 1
