"""A private ``redis-server`` for tests that stop, empty, or roll back Redis.

The shared Redis on 127.0.0.1:6379 must never be stopped or flushed (other tests use it). A
test that needs Redis to die starts its own, on a free loopback port, with a directory of its own
(``--dir``) so that RDB snapshots can be saved, copied and restored::

    with RedisServer(tmp_path / "redis") as server:      # started, no persistence
        ...
        old = server.snapshot("before")                  # SAVE, keep a copy of dump.rdb
        server.restart()                                 # empty
        server.restart_from(old)                         # as it was at `old`
        server.restart(keep_data=True)                   # from the last SAVE

``persistence=True`` starts it with ``appendonly yes`` and ``appendfsync everysec`` instead
(what the deployment docs ask of a production Redis). Every wait is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.processes import free_port

__all__ = ["RedisServer"]

DUMP = "dump.rdb"
APPEND_DIR = "appendonlydir"


class _PortTaken(Exception):
    """redis-server could not bind its port (someone else took it after it was chosen)."""


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port and directory."""

    def __init__(self, directory: Path, *, persistence: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def dump(self) -> Path:
        """Where ``SAVE`` writes the RDB snapshot and where start-up reads it from."""
        return self.dir / DUMP

    def _args(self) -> list[str]:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--dbfilename",
            DUMP,
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        if self.persistence:
            return [*args, "--appendonly", "yes", "--appendfsync", "everysec"]
        return [*args, "--appendonly", "no"]

    def start(self, timeout: float = 15.0) -> None:
        """Start and wait (at most ``timeout`` s) until it answers PING.

        The port was free when chosen, but another suite on the machine may take it first:
        the first start then moves to a new port (a restart keeps its port, and fails). Only
        this process' own server counts as started (``INFO``'s ``process_id``), never a
        stranger on the port."""
        for _ in range(5):
            try:
                self._start_once(timeout)
                return
            except _PortTaken:
                if self.started_once:
                    raise
                self.port = free_port()
        self._start_once(timeout)

    def _start_once(self, timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        log_path = self.dir / "redis.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=2)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    with log_path.open("rb") as file:
                        file.seek(offset)
                        text = file.read().decode(errors="replace")[-2000:]
                    if "Address already in use" in text and not self.started_once:
                        self.proc = None
                        raise _PortTaken(text)
                    raise RuntimeError(f"redis-server exited {self.proc.returncode}: {text}")
                try:
                    if client.ping() and client.info("server")["process_id"] == self.proc.pid:
                        self.started_once = True
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout} s")

    def stop(self) -> None:
        """Stop it (SIGTERM; with ``--save ''`` nothing is written on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL it: no shutdown, no final save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def save(self) -> Path:
        """``SAVE`` (a synchronous RDB snapshot); the path of ``dump.rdb``."""
        client = redis.Redis(port=self.port, socket_timeout=10)
        try:
            client.save()
        finally:
            client.close()
        return self.dump

    def snapshot(self, name: str) -> Path:
        """``SAVE`` and copy ``dump.rdb`` to ``NAME.rdb`` in the directory; its path."""
        copy = self.dir / f"{name}.rdb"
        shutil.copyfile(self.save(), copy)
        return copy

    def restart(self, *, keep_data: bool = False) -> None:
        """Stop and start again on the same port: empty, or (``keep_data``) from the directory's
        ``dump.rdb`` / append-only files as they are."""
        self.stop()
        if not keep_data:
            self._forget()
        self.start()

    def restart_from(self, snapshot: Path) -> None:
        """Stop, put ``snapshot`` in place of ``dump.rdb`` (no AOF), and start: Redis as it was
        when the snapshot was taken."""
        self.stop()
        self._forget()
        shutil.copyfile(snapshot, self.dump)
        self.start()

    def _forget(self) -> None:
        self.dump.unlink(missing_ok=True)
        shutil.rmtree(self.dir / APPEND_DIR, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A new synchronous client (close it)."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
