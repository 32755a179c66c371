"""The README's offline walkthrough, run as written, against real gateway and simulator
processes: every command between the walkthrough markers runs, in order, in one shell."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import (
    ADMIN_KEY,
    EVAL_KEY,
    ROOT,
    GatewayProcess,
    SimulatorProcess,
    start_gateway,
    start_simulator,
)

pytestmark = pytest.mark.e2e


def walkthrough_commands() -> list[str]:
    """The shell lines of the README's walkthrough block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(
        r"<!-- walkthrough:start -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S
    )
    assert block is not None, "README.md lost its walkthrough markers"
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.fixture
def demo_like(tmp_path: Path) -> Iterator[tuple[SimulatorProcess, GatewayProcess]]:
    """A simulator and a gateway configured like the demo (config/gateway.yaml's routes)."""
    with start_simulator(ROOT / "config" / "simulator.yaml") as sim:
        routes = (ROOT / "config" / "gateway.yaml").read_text(encoding="utf-8")
        routes = routes.replace("http://127.0.0.1:8001/v1", sim.base_url)
        routes = routes.replace("prompts/", str(ROOT / "config" / "prompts") + "/")
        for model in ("ft:sim-mini:acme:support-classifier:v1", "sim-mini"):
            sim.set_behaviour(model, latency_ms=0)
        # Fine-tuning jobs end at once: `finetune watch` (2 s between polls, the README's
        # default) finds the job done on its first poll. Following a running job is
        # tests/e2e/test_finetune.py's part.
        httpx.put(f"{sim.url}/_simulator/finetune", json={"seconds": 0}).raise_for_status()
        with start_gateway(tmp_path, routes) as gw:
            yield sim, gw


def test_every_walkthrough_command_runs_in_order(
    demo_like: tuple[SimulatorProcess, GatewayProcess], tmp_path: Path
) -> None:
    sim, gw = demo_like
    commands = walkthrough_commands()
    # The block's `source` and `export` lines set the demo's values; the test sets its own.
    run = [c for c in commands if not c.startswith(("source ", "export "))]
    assert len(run) == len(commands) - 3
    script = "set -euo pipefail\n" + "\n".join(run) + "\n"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GATEWAY_URL": gw.url,
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "GATEWAY_EVAL_KEY": EVAL_KEY,
        "GATEWAY_CONFIG": str(tmp_path / "gateway.yaml"),
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": "sk-simulator",
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
    }
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (work / "eval-reports" / "report.md").read_text()
    assert "accuracy" in report
    flag = httpx.get(
        f"{gw.url}/admin/flags/support-triage",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).json()
    assert flag["weight"] == 10_000
    assert flag["candidate_model"] is not None
    assert flag["candidate_model"].startswith("ft:")
