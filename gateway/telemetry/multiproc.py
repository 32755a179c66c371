"""Several workers, one scrape: prometheus-client's multiprocess mode.

With ``GATEWAY_WORKERS`` > 1 uvicorn runs worker processes behind one socket and a scrape
reaches one of them; each worker's counters alone would look like a different series each
scrape, and ``rate()`` would see resets. So ``gateway serve`` prepares one directory before the
workers start (:func:`prepare`) and names it in ``PROMETHEUS_MULTIPROC_DIR``: prometheus-client
reads that variable when it is imported, and each worker then keeps its metric values in files
there. ``/metrics`` (:func:`render`) adds every worker's files up, in whichever worker answers
(prometheus-client's ``MultiProcessCollector``; how each gauge is combined is its
``multiprocess_mode``, see :mod:`gateway.telemetry.metrics`).

Files of a worker that has exited stay: its counts are still part of the totals (a replaced
worker must not make counters go back). Its "live" gauges are dropped at the next scrape
(:func:`forget_exited_workers`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

__all__ = [
    "ENV",
    "enabled",
    "forget_exited_workers",
    "prepare",
    "render",
]

ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's variable naming the multiprocess directory (read at its import)."""

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def enabled() -> bool:
    """Whether this process keeps its metrics in multiprocess files."""
    return bool(os.environ.get(ENV))


def prepare(configured: str | None) -> tuple[Path, bool]:
    """The directory for a new server's workers, empty: ``configured`` (emptied: files of an
    earlier run would count its requests again) or a new one under the temporary directory.

    Returns:
        (directory, whether it was created here and should be removed at exit).

    Raises:
        OSError: the directory cannot be created or emptied.
    """
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="gateway-metrics-")), True


def forget_exited_workers(directory: Path) -> list[int]:
    """Drop the "live" gauge files of workers that no longer run; return their pids."""
    gone = []
    for entry in directory.glob("gauge_live*.db"):
        found = _LIVE_GAUGE_FILE.fullmatch(entry.name)
        if found is None:
            continue
        pid = int(found.group(1))
        if pid not in gone and not _running(pid):
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
            gone.append(pid)
    return gone


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def render(registry: CollectorRegistry, *, workers: int = 1) -> bytes:
    """The Prometheus text of ``registry`` or, with several ``workers`` (and the directory
    made by :func:`prepare`), of every worker's files.

    One worker renders its own registry even when ``PROMETHEUS_MULTIPROC_DIR`` is set: its values
    are its own (the directory may hold files of earlier runs, left as they are)."""
    directory = os.environ.get(ENV)
    if workers <= 1 or not directory:
        return generate_latest(registry)
    forget_exited_workers(Path(directory))
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(merged)
