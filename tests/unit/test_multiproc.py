"""The multiprocess directory: prepared empty, exited workers' live gauges forgotten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.telemetry import multiproc


def test_a_configured_directory_is_emptied_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    (directory / "sub").mkdir(parents=True)
    (directory / "counter_12.db").write_bytes(b"old")
    (directory / "sub" / "x").write_bytes(b"old")
    path, made_here = multiproc.prepare(str(directory))
    assert path == directory
    assert not made_here
    assert list(directory.iterdir()) == []


def test_without_a_directory_a_new_one_is_made(tmp_path: Path) -> None:
    path, made_here = multiproc.prepare(None)
    try:
        assert made_here
        assert path.is_dir()
        assert list(path.iterdir()) == []
    finally:
        path.rmdir()


def test_exited_workers_live_gauges_are_forgotten(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(ended.stdout)
    alive = os.getpid()
    for pid in (dead, alive):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    assert multiproc.forget_exited_workers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{alive}.db", f"counter_{dead}.db", f"counter_{alive}.db"]
    )


def test_one_process_renders_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(multiproc.ENV, raising=False)
    registry = CollectorRegistry()
    Counter("x_events", "x", registry=registry).inc(3)
    assert not multiproc.enabled()
    assert b"x_events_total 3.0" in multiproc.render(registry)


def test_one_worker_renders_its_own_registry_even_with_a_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(multiproc.ENV, str(tmp_path))
    registry = CollectorRegistry()
    Counter("x_events", "x", registry=registry).inc(2)
    assert b"x_events_total 2.0" in multiproc.render(registry, workers=1)
    # Several workers read the directory's files instead (none here: no x_events).
    assert b"x_events_total" not in multiproc.render(registry, workers=2)
