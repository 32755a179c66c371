"""Start the gateway and the simulator as real processes on loopback, for end-to-end tests."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from gateway.tools.simulator import ANNOUNCE_PREFIX
from tests import quick_http

__all__ = [
    "GatewayProcess",
    "GatewaySpec",
    "SimulatorProcess",
    "free_port",
    "read_log_events",
    "routes_yaml",
    "start_gateway",
    "start_gateways",
    "start_simulator",
]

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE_MODEL = "ft:sim-mini:acme:support-classifier:v1"
FALLBACK_MODEL = "sim-mini"
SHARED_REDIS = "redis://127.0.0.1:6379/0"
"""The Redis the machine runs (.ci/run starts one if none answers)."""
CLIENT_KEY = "sk-test-client"
EVAL_KEY = "sk-test-eval"
ADMIN_KEY = "sk-test-admin"


def read_log_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a gateway's log file (optionally only those with ``event``)."""
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if event is None or item.get("event") == event:
            out.append(item)
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SimulatorProcess:
    """A running ``gateway simulate`` and its control API."""

    proc: subprocess.Popen[str]
    url: str

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def set_behaviour(self, model: str, **behaviour: Any) -> None:
        quick_http.put(f"{self.url}/_simulator/models/{model}", json=behaviour).raise_for_status()

    def reset(self) -> None:
        for model in list(self.behaviours()):
            quick_http.delete(f"{self.url}/_simulator/models/{model}").raise_for_status()
        quick_http.post(f"{self.url}/_simulator/stats/reset").raise_for_status()

    def behaviours(self) -> dict[str, Any]:
        data: dict[str, Any] = quick_http.get(f"{self.url}/_simulator/models").json()
        models: dict[str, Any] = data.get("models", data)
        return models

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = quick_http.get(f"{self.url}/_simulator/stats").json()
        return result


@contextmanager
def start_simulator(config: Path | None = None) -> Iterator[SimulatorProcess]:
    """Run ``python -m gateway simulate --port 0`` and read the URL it announces."""
    cmd = [sys.executable, "-m", "gateway", "simulate", "--port", "0"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(ANNOUNCE_PREFIX):
                url = line[len(ANNOUNCE_PREFIX) :].strip()
                break
        if url is None:
            raise RuntimeError(f"simulator did not start: {proc.poll()}")
        yield SimulatorProcess(proc, url)
    finally:
        _stop(proc)


@dataclass
class GatewayProcess:
    """A running ``gateway serve``: its URL, its log file and its process."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    http: httpx.Client
    """A client for this gateway (absolute URLs or paths under ``url``)."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def config_path(self) -> Path:
        """The routes file it serves."""
        return self.log_path.parent / "gateway.yaml"

    def client(self, **options: Any) -> httpx.Client:
        """Another httpx client for this gateway (e.g. one with other timeouts)."""
        options.setdefault("timeout", 30)
        return quick_http.client(base_url=self.url, **options)

    def openai(self, api_key: str = CLIENT_KEY, **options: Any) -> openai.OpenAI:
        """The official sync SDK client for this gateway (no retries unless asked)."""
        options.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **options)

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (optionally only those with ``event``)."""
        return read_log_events(self.log_path, event)

    def metrics(self) -> str:
        return self.http.get("/metrics").text


def routes_yaml(
    simulator_url: str,
    *,
    weight: int = 50_000,
    timeout_s: float = 5.0,
    failover_on: str = "[connect, timeout, 5xx, 429, invalid_response]",
    extra_upstreams: str = "",
    extra: str = "",
    route_extra: str = "",
) -> str:
    """A support-triage routes file against ``simulator_url`` (the simulator's base, no /v1).

    ``extra`` is appended under ``routes:`` (more routes, indented two spaces); ``route_extra``
    holds more keys of the support-triage route itself (``guard: {...}``, ``shadow: {...}``,
    ``on_violation: fallback``), written unindented: each line is indented into the route.
    """
    inside = textwrap.indent(textwrap.dedent(route_extra).strip("\n"), "    ")
    return f"""
upstreams:
  simulator:
    base_url: {simulator_url}/v1
    timeout_s: {timeout_s}
{extra_upstreams}
routes:
  support-triage:
    contract: {{labels: [billing, technical, account]}}
    variants:
      finetuned:
        upstream: simulator
        model: "{CANDIDATE_MODEL}"
        system_prompt: "You are a support classifier. Respond with one label."
      prompted:
        upstream: simulator
        model: {FALLBACK_MODEL}
        system_prompt_file: {ROOT}/config/prompts/support-triage/system.md
        few_shot_file: {ROOT}/config/prompts/support-triage/examples.jsonl
    candidate: finetuned
    fallback: prompted
    flag: {{enabled: true, weight: {weight}}}
    failover_on: {failover_on}
{inside}
{extra}
prices:
  {FALLBACK_MODEL}: {{input: 0.15, output: 0.60}}
  "{CANDIDATE_MODEL}": {{input: 0.30, output: 1.20}}
"""


_gateway_numbers = itertools.count(1)
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class GatewaySpec:
    """What :func:`start_gateways` starts: the arguments of :func:`start_gateway`."""

    tmp_path: Path
    routes: str
    env: Mapping[str, str] | None = None
    workers: int = 1


@contextmanager
def start_gateway(
    tmp_path: Path,
    routes: str,
    *,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[GatewayProcess]:
    """Write ``routes`` to a file and run ``python -m gateway serve`` on a port of its own.

    The gateway binds port 0 and the port the OS gave it is read from uvicorn's "running on"
    log line: no port is picked in advance, so suites running side by side cannot collide.
    """
    with start_gateways(GatewaySpec(tmp_path, routes, env, workers)) as [gateway]:
        yield gateway


@contextmanager
def start_gateways(*specs: GatewaySpec) -> Iterator[list[GatewayProcess]]:
    """Start several gateways at once (their start-ups overlap), wait until every one is
    ready, and stop them all (SIGTERM to each first, then wait) on the way out.

    Each spec needs a ``tmp_path`` of its own: the routes file is ``tmp_path/gateway.yaml``.
    """
    launched: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for spec in specs:
            launched.append(_launch(spec))
        with ExitStack() as clients:
            gateways = []
            for proc, log_path in launched:
                url = _wait_ready(proc, log_path)
                http = clients.enter_context(quick_http.client(base_url=url, timeout=30))
                gateways.append(GatewayProcess(proc, url, log_path, http))
            yield gateways
    finally:
        _stop(*(proc for proc, _ in launched))


def _launch(spec: GatewaySpec) -> tuple[subprocess.Popen[bytes], Path]:
    """Write the routes file and start ``python -m gateway serve``; (process, log file)."""
    config = spec.tmp_path / "gateway.yaml"
    config.write_text(spec.routes)
    number = next(_gateway_numbers)
    log_path = spec.tmp_path / f"gateway-{number}.log"
    full_env = {
        **os.environ,
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_LOG_LEVEL": "info",
        "GATEWAY_WORKERS": str(spec.workers),
        "GATEWAY_CLIENT_KEYS": f'{{"test-app": "{CLIENT_KEY}", "eval": "{EVAL_KEY}"}}',
        "GATEWAY_OVERRIDE_KEYS": '["eval"]',
        "GATEWAY_ADMIN_KEYS": f'{{"ops": "{ADMIN_KEY}"}}',
        "GATEWAY_FLAG_STORE": f"sqlite:///{spec.tmp_path}/flags-{number}.db",
        "GATEWAY_SHUTDOWN_GRACE_S": "2",
        **(spec.env or {}),
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )
    return proc, log_path


def _wait_ready(proc: subprocess.Popen[Any], log_path: Path) -> str:
    """The gateway's URL once its log names the port and ``/healthz`` answers 200."""
    deadline = time.monotonic() + 60
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}:\n{log_path.read_text()}")
        if url is None and (found := _LISTENING.search(log_path.read_text())):
            url = f"http://127.0.0.1:{found.group(1)}"
        if url is not None:
            try:
                if quick_http.get(url + "/healthz", timeout=5).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.01)
    raise RuntimeError(f"gateway did not become healthy:\n{log_path.read_text()}")


def _stop(*procs: subprocess.Popen[Any]) -> None:
    """SIGTERM every process still running, then wait for each (10 s, then SIGKILL)."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
