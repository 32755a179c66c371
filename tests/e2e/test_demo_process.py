"""``gateway demo`` as a process, once: ``GATEWAY_PORT`` and ``--simulator-port`` are honoured
end to end (the gateway answers on the port the environment gave, from the simulator on the
port the option gave), and SIGTERM stops both children. Bounded: 60 s to start, 30 s to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import quick_http
from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_demo_serves_on_gateway_port_from_the_simulator_port_given(tmp_path: Path) -> None:
    port, simulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_PORT=str(port),
        GATEWAY_FLAG_STORE=f"sqlite:///{tmp_path / 'flags.db'}",
        GATEWAY_LOG_LEVEL="warning",
    )
    err = tmp_path / "demo.err"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo", "--simulator-port", str(simulator_port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while "demo ready" not in err.read_text(errors="replace"):
            assert proc.poll() is None, err.read_text(errors="replace")
            assert time.monotonic() < deadline, err.read_text(errors="replace")
            time.sleep(0.02)
        response = quick_http.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"authorization": "Bearer sk-demo"},
            json={
                "model": "support-triage",
                "messages": [{"role": "user", "content": "I was charged twice"}],
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-variant"] in ("finetuned", "prompted")
        stats = quick_http.get(f"http://127.0.0.1:{simulator_port}/_simulator/stats", timeout=10)
        assert stats.status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.read_text(errors="replace")
