"""``run_simulator`` in a real process over TCP: announced URL, cut streams, disconnects."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
models:
  cut: {cut_stream_after: 1, stream_chunks: 4}
  slow: {chunk_delay_ms: 200, stream_chunks: 50}
"""
TICKET = [{"role": "user", "content": "The app crashes on start."}]
STARTUP_SECONDS = 20


def read_announced_url(proc: subprocess.Popen[str]) -> str:
    """Wait for ``simulator listening on http://HOST:PORT`` and return the URL."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_SECONDS)
    assert ready, "the simulator did not announce its address in time"
    line = proc.stdout.readline().strip()
    prefix = "simulator listening on "
    assert line.startswith(prefix), line
    return line.removeprefix(prefix)


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("sim") / "simulator.yaml"
    config.write_text(CONFIG)
    code = (
        "from pathlib import Path; from gateway.tools.simulator import run_simulator; "
        f"run_simulator('127.0.0.1', 0, Path({str(config)!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )
    try:
        yield read_announced_url(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_announced_url_answers_healthz(simulator_url: str) -> None:
    assert simulator_url.startswith("http://127.0.0.1:")
    assert not simulator_url.endswith(":0")
    response = httpx.get(f"{simulator_url}/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_cut_stream_breaks_the_connection_before_done(simulator_url: str) -> None:
    body = {"model": "cut", "messages": TICKET, "stream": True}
    seen: list[str] = []
    with httpx.Client(base_url=simulator_url) as client:  # noqa: SIM117 - the raise is the test
        with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012 - the error comes mid-loop
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                seen.extend(line for line in response.iter_lines() if line)
    assert seen, "the role chunk should arrive before the cut"
    assert "data: [DONE]" not in seen
    stats = httpx.get(f"{simulator_url}/_simulator/stats").json()["models"]["cut"]
    assert (stats["streams_cut"], stats["streams_completed"]) == (1, 0)


def test_client_closing_a_stream_counts_as_disconnected(simulator_url: str) -> None:
    body = {"model": "slow", "messages": TICKET, "stream": True}
    with (
        httpx.Client(base_url=simulator_url) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        first = next(line for line in response.iter_lines() if line)
        assert first.startswith("data: ")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = httpx.get(f"{simulator_url}/_simulator/stats").json()["models"]["slow"]
        if stats["streams_disconnected"] == 1:
            break
        time.sleep(0.05)
    assert stats["streams_disconnected"] == 1
    assert stats["streams_completed"] == 0
