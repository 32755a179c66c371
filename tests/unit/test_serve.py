"""The serve watchdog: an exit signal the server never acts on still ends the process."""

from __future__ import annotations

import signal
import threading

import uvicorn

from gateway.serving import process as server_module


def test_the_first_exit_signal_arms_a_watchdog_that_exits_after_the_bound() -> None:
    """handle_exit sets uvicorn's flag and, if the process is still running after the bound,
    exits with status 1 (here the exit is recorded, and the bound is 50 ms)."""
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    server = server_module._Server(uvicorn.Config("x:y"), 0.05, exit_process=fake_exit)
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGTERM, None)  # a second signal arms nothing more
    assert server.should_exit
    assert exited.wait(10)
    assert codes == [1]
