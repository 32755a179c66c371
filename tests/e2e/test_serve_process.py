"""``gateway serve`` as a process: a failed bind exits at once, SIGTERM always ends it.

Real processes on loopback (few and bounded). The Redis case points the store at the shared
Redis with a namespace of its own, and the process, which must exit before starting the app,
reads nothing from it (the store is opened by the app's lifespan).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.processes import ROOT, SHARED_REDIS, free_port

pytestmark = pytest.mark.e2e

DEADLINE_S = 20.0


def serve(tmp_path: Path, port: int, store: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(ROOT / "config/gateway.yaml"),
        "GATEWAY_PORT": str(port),
        "GATEWAY_CLIENT_KEYS": '{"app": "sk-serve-test-1"}',
        "GATEWAY_FLAG_STORE": store,
        "GATEWAY_FLAG_STORE_NAMESPACE": f"test-serve-{uuid.uuid4().hex[:12]}",
        "GATEWAY_SHUTDOWN_GRACE_S": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = DEADLINE_S) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"still running after {timeout}s:\n{out.decode()[-3000:]}") from None
    return proc.returncode, out.decode()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_taken_port_exits_non_zero_at_once_on_every_store(tmp_path: Path, store: str) -> None:
    """Someone listens on the port: the gateway says so and exits 1 within seconds, without
    starting the app (with a live Redis store it used to hang in shutdown, deaf to SIGTERM)."""
    url = f"sqlite:///{tmp_path}/flags.db" if store == "sqlite" else SHARED_REDIS
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started = time.monotonic()
        status, out = wait_exit(serve(tmp_path, taken.getsockname()[1], url))
    assert status == 1, out
    assert "in use" in out
    assert "gateway.started" not in out  # the app's lifespan never ran
    assert time.monotonic() - started < DEADLINE_S


def test_sigterm_during_start_up_ends_the_process(tmp_path: Path) -> None:
    """SIGTERM as soon as the process announces it is starting: it exits, within the bound."""
    proc = serve(tmp_path, free_port(), f"sqlite:///{tmp_path}/flags.db")
    assert proc.stdout is not None
    deadline = time.monotonic() + DEADLINE_S
    seen = b""
    while b"Waiting for application startup" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    proc.send_signal(signal.SIGTERM)
    status, out = wait_exit(proc)
    assert status in (-signal.SIGTERM, 0, 1), seen.decode() + out
