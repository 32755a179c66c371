"""The pieces a scenario runs against, started on loopback on demand and stopped by the run.

``instant``: nginx returning a fixed chat completion (or, without nginx or in smoke mode, the
simulator, which answers unknown model names at once). ``simulator``: ``gateway simulate`` with
bench/simulator.yaml. ``floor-*``: bench/raw_floor.py (the raw floor: bare ASGI on uvicorn, one
aiohttp session); ``floor-litestar-*``: the same behind Litestar's ``@asgi`` handler. ``bare-*``:
bench/bare_proxy.py. ``gateway*``: ``gateway serve`` with bench/routes.yaml (``*-granian``: the
raw floor or the gateway served by granian instead of uvicorn). ``litellm``: LiteLLM's
proxy from its own virtualenv. ``*-instant`` pieces forward to ``instant``, ``*-sim`` ones to the
simulator.
"""

from __future__ import annotations

import os
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from bench.harness import (
    BENCH,
    CLIENT_KEY,
    PYTHON,
    ROOT,
    WORK,
    Child,
    Processes,
    free_port,
    litellm_bin,
    log,
    nginx_binary,
    wait_http,
)

COMPLETION = msgspec.json.encode(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-instant",
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "billing", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 1, "total_tokens": 43},
    }
).decode()

TICKET = "I was charged twice for my subscription this month. Can you refund the extra charge?"


CANDIDATE_PROMPT = "You are a support classifier. Respond with one label."
"""The candidate variants' system prompt in bench/routes.yaml."""


def chat_body(model: str, *, stream: bool = False) -> bytes:
    """A client's request: one user message."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": TICKET}]}
    if stream:
        body["stream"] = True
    return msgspec.json.encode(body)


def candidate_payload(model: str, *, stream: bool = False) -> bytes:
    """What the gateway sends the upstream for ``chat_body`` on a candidate-only route: the
    direct request a latency comparison uses, so that the upstream's work is the same."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": CANDIDATE_PROMPT},
            {"role": "user", "content": TICKET},
        ],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return msgspec.json.encode(body)


def body_file(name: str, body: bytes) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"body-{name}.json"
    path.write_bytes(body)
    return path


@dataclass
class Stack:
    """Starts pieces once, by name; ``procs.stop_all()`` ends them."""

    procs: Processes
    use_nginx: bool
    sut_cpus: set[int] | None
    harness_cpus: set[int] | None
    running: dict[str, Child] = field(default_factory=dict)

    aliases: dict[str, str] = field(default_factory=dict)
    """Names served by another piece (smoke mode: ``instant`` is the simulator, ...)."""
    _waits: dict[str, tuple[str, tuple[int, ...], float]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.get(name).url

    def get(self, name: str) -> Child:
        """The running piece ``name``, started (and waited for) if need be."""
        self.start(name)
        return self.running[self.aliases.get(name, name)]

    def start(self, *names: str) -> None:
        """Spawn every piece not running yet, then wait until each answers (in parallel)."""
        for name in names:
            self._spawned(name)
        while self._waits:  # the pieces named and those they depend on
            real, (url, ok, timeout) = next(iter(self._waits.items()))
            wait_http(url, self.running[real], timeout=timeout, ok=ok)
            del self._waits[real]
            log(f"{real} on {self.running[real].url}")

    def stop(self, name: str) -> None:
        if name in self.aliases:
            return  # shared with another name; stopped with it
        child = self.running.pop(name, None)
        self._waits.pop(name, None)
        if child is not None:
            self.procs.stop(child)

    def spawn(self, name: str) -> None:
        """Start ``name`` now; the next ``get``/``start`` waits for it."""
        self._spawned(name)

    def _spawned(self, name: str) -> Child:
        """Start ``name`` without waiting for it (its URL is known at once)."""
        real = self.aliases.get(name, name)
        child = self.running.get(real)
        if child is None or child.proc.poll() is not None:
            child, path, ok, timeout = self._spawn(real)
            self.running[real] = child
            self._waits[real] = (child.url + path, ok, timeout)
        return child

    def _spawn(self, name: str) -> tuple[Child, str, tuple[int, ...], float]:
        if name == "instant":
            if not self.use_nginx:
                raise ValueError("without nginx, alias instant to the simulator")
            return self._nginx(), "/healthz", (200,), 20.0
        if name == "simulator":
            return self._simulator(), "/healthz", (200,), 60.0
        if name == "bare-instant":
            # No /healthz: a GET on the POST-only route answers 405 once the server is up.
            return (
                self._bare(name, self._spawned("instant").url),
                "/v1/chat/completions",
                (405,),
                60.0,
            )
        if name == "bare-sim":
            return (
                self._bare(name, self._spawned("simulator").url),
                "/v1/chat/completions",
                (405,),
                60.0,
            )
        if name.startswith("floor-"):
            upstream = "simulator" if name.endswith("-sim") else "instant"
            # No /healthz: a GET answers 405 once the server is up.
            return (
                self._floor(name, self._spawned(upstream).url, litestar="-litestar-" in name),
                "/v1/chat/completions",
                (405,),
                60.0,
            )
        if name in ("floor-granian-instant", "gateway-granian"):
            return self._granian(name), "/healthz", (200, 404, 405), 60.0
        if name == "litellm":
            return self._litellm(), "/health/liveliness", (200,), 180.0
        if name.startswith("gateway"):
            return self._gateway(name), "/healthz", (200,), 60.0
        raise ValueError(name)

    def _nginx(self) -> Child:
        port = free_port()
        prefix = WORK / "nginx"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""# generated by bench/stack.py: an upstream that answers at once
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /v1/chat/completions {{
      default_type application/json;
      return 200 '{COMPLETION}';
    }}
    location /healthz {{ return 200 'ok'; }}
  }}
}}
"""
        )
        binary = nginx_binary() or "nginx"
        child = self.procs.start(
            "nginx", [binary, "-c", str(conf), "-p", str(prefix)], cpus=self.harness_cpus
        )
        child.url = f"http://127.0.0.1:{port}"
        return child

    def _simulator(self) -> Child:
        port = free_port()
        shutil.copy(BENCH / "simulator.yaml", WORK / "simulator.yaml")
        child = self.procs.start(
            "simulator",
            [
                *(PYTHON, "-m", "gateway", "simulate"),
                *("--port", str(port), "--config", str(WORK / "simulator.yaml")),
            ],
            cpus=self.harness_cpus,
        )
        child.url = f"http://127.0.0.1:{port}"
        return child

    def _bare(self, name: str, upstream: str) -> Child:
        port = free_port()
        child = self.procs.start(
            name,
            [
                *(PYTHON, str(BENCH / "bare_proxy.py")),
                *("--port", str(port), "--upstream", upstream + "/v1"),
            ],
            cpus=self.sut_cpus,
        )
        child.url = f"http://127.0.0.1:{port}"
        return child

    def _floor(self, name: str, upstream: str, *, litestar: bool) -> Child:
        port = free_port()
        child = self.procs.start(
            name,
            [
                *(PYTHON, str(BENCH / "raw_floor.py")),
                *("--port", str(port), "--upstream", upstream + "/v1"),
                *(["--litestar"] if litestar else []),
            ],
            cpus=self.sut_cpus,
        )
        child.url = f"http://127.0.0.1:{port}"
        return child

    def _granian(self, name: str) -> Child:
        """The raw floor or the gateway (1 worker) on granian instead of uvicorn."""
        port = free_port()
        if name.startswith("floor"):
            env = {"BENCH_FLOOR_UPSTREAM": self._spawned("instant").url + "/v1"}
            target = "bench.raw_floor:from_environment"
        else:
            env = self._gateway_env(name, port)
            target = "gateway.app:app_from_environment"
        child = self.procs.start(
            name,
            [
                *(str(Path(PYTHON).parent / "granian"), "--interface", "asgi"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
                *("--loop", "uvloop", "--no-access-log", "--log-level", "warning"),
                *("--factory", target),
            ],
            env=env,
            cpus=self.sut_cpus,
            stdout=(WORK / f"{name}.events.jsonl").open("wb"),
        )
        child.url = f"http://127.0.0.1:{port}"
        return child

    def routes_file(self) -> Path:
        instant = self._spawned("instant").url
        simulator = self._spawned("simulator").url
        text = string.Template((BENCH / "routes.yaml").read_text()).substitute(
            instant=instant, simulator=simulator, root=str(ROOT)
        )
        path = WORK / "routes.yaml"
        path.write_text(text)
        return path

    def _gateway(self, name: str) -> Child:
        """``gateway`` (aiohttp, 1 worker), ``gateway-httpx``, ``gateway-2w`` (2 workers),
        ``gateway-mem*`` (1 worker, pool of 1100 connections for 1,000 open streams; ``-fb1k``:
        a feedback buffer of 1,000 request ids)."""
        port = free_port()
        workers = 2 if name == "gateway-2w" else 1
        env = self._gateway_env(name, port, workers)
        # The request.completed events go to a file, as they would to a log collector.
        log_path = WORK / f"{name}.events.jsonl"
        log_path.unlink(missing_ok=True)
        out = log_path.open("ab")
        child = self.procs.start(
            name,
            [PYTHON, "-m", "gateway", "serve"],
            env=env,
            cpus=None if workers > 1 else self.sut_cpus,
            stdout=out,
        )
        out.close()
        child.url = f"http://127.0.0.1:{port}"
        return child

    def _gateway_env(self, name: str, port: int, workers: int = 1) -> dict[str, str]:
        env = {
            "GATEWAY_CONFIG": str(self.routes_file()),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_WORKERS": str(workers),
            "GATEWAY_CLIENT_KEYS": f'{{"bench": "{CLIENT_KEY}"}}',
            "GATEWAY_FLAG_STORE": f"sqlite:///{WORK}/flags-{name}.db",
            "GATEWAY_LOG_LEVEL": "info",
            "GATEWAY_SHUTDOWN_GRACE_S": "2",
            "GATEWAY_UPSTREAM__TRANSPORT": "httpx" if name == "gateway-httpx" else "aiohttp",
            # Both transports keep as many idle connections as the largest concurrency here;
            # with httpx's default (128 of 512) its pool would churn connections at c=256.
            "GATEWAY_UPSTREAM__MAX_KEEPALIVE_CONNECTIONS": "512",
        }
        if name.startswith("gateway-mem"):
            env["GATEWAY_UPSTREAM__MAX_CONNECTIONS"] = "1100"
            env["GATEWAY_UPSTREAM__MAX_KEEPALIVE_CONNECTIONS"] = "1100"
        if name.endswith("-fb1k"):  # a small feedback buffer (memory scenario)
            env["GATEWAY_FEEDBACK_MAX_REQUESTS"] = "1000"
        for stale in WORK.glob(f"flags-{name}.db*"):
            stale.unlink()
        return env

    def _litellm(self) -> Child:
        port = free_port()
        conf = WORK / "litellm.yaml"
        conf.write_text(
            f"""# generated by bench/stack.py: one openai-compatible model at the instant upstream
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-instant
      api_base: {self._spawned("instant").url}/v1
      api_key: sk-none
litellm_settings:
  set_verbose: false
  json_logs: false
  turn_off_message_logging: true
  telemetry: false
general_settings:
  master_key: {CLIENT_KEY}
  disable_spend_logs: true
  disable_error_logs: true
"""
        )
        env = {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
        }
        for var in ("DATABASE_URL", "REDIS_HOST", "REDIS_URL"):
            os.environ.pop(var, None)
        child = self.procs.start(
            "litellm",
            [
                str(litellm_bin()),
                *("--config", str(conf), "--host", "127.0.0.1", "--port", str(port)),
                *("--num_workers", "1"),
            ],
            env=env,
            cpus=self.sut_cpus,
        )
        child.url = f"http://127.0.0.1:{port}"
        return child
