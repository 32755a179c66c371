"""``gateway demo``: the simulator and a gateway wired to it, as two child processes.

:func:`demo_routes` is the pure part: the routes file the demo's gateway is given, its local
upstreams pointed at the simulator's port (so ``--simulator-port`` moves both) and its prompt
files made absolute (the copy lives elsewhere). :func:`demo_env` is the gateway's environment.
The command writes the copy to a temporary directory and runs both processes until Ctrl-C.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

from gateway.tools.exit_codes import RejectedError, UnreachableError, UsageError

__all__ = ["LOCAL_HOSTS", "demo_command", "demo_env", "demo_routes"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""An upstream on one of these hosts is the demo's simulator: its port becomes the simulator's."""

_FILE_KEYS = ("system_prompt_file", "few_shot_file")

DEMO_KEYS = {
    "GATEWAY_CLIENT_KEYS": '{"demo": "sk-demo", "eval": "sk-eval"}',
    "GATEWAY_OVERRIDE_KEYS": '["eval"]',
    "GATEWAY_ADMIN_KEYS": '{"ops": "sk-admin"}',
}
"""The demo's keys, unless the environment sets its own."""


def demo_routes(data: Mapping[str, Any], base_dir: Path, simulator_port: int) -> dict[str, Any]:
    """The routes file ``data`` (as read from YAML in ``base_dir``) for the demo's gateway:
    every upstream whose ``base_url`` is on a local host (:data:`LOCAL_HOSTS`) now points at
    ``simulator_port`` (scheme and path kept), and every relative prompt or few-shot file is
    made absolute against ``base_dir``. Other upstreams and keys are unchanged; ``data`` is not
    modified."""
    routes = copy.deepcopy(dict(data))
    for upstream in (routes.get("upstreams") or {}).values():
        if isinstance(upstream, dict) and isinstance(upstream.get("base_url"), str):
            upstream["base_url"] = _local_to(upstream["base_url"], simulator_port)
    for route in (routes.get("routes") or {}).values():
        variants = route.get("variants") if isinstance(route, dict) else None
        for variant in (variants or {}).values():
            for key in _FILE_KEYS:
                value = variant.get(key) if isinstance(variant, dict) else None
                if isinstance(value, str) and not Path(value).is_absolute():
                    variant[key] = str((base_dir / value).resolve())
    return routes


def _local_to(url: str, port: int) -> str:
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        return url
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


def demo_env(environ: Mapping[str, str], port: int, config: Path) -> dict[str, str]:
    """The gateway's environment: the demo's keys unless ``environ`` sets them, ``environ``,
    then one worker on 127.0.0.1:``port`` serving ``config``."""
    return {
        **DEMO_KEYS,
        **environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_CONFIG": str(config),
    }


def demo_command(
    port: Annotated[
        int, typer.Option(envvar="GATEWAY_PORT", show_envvar=True, help="Gateway port.")
    ] = 8000,
    simulator_port: Annotated[
        int, typer.Option(help="Simulator port; the routes file's local upstreams follow it.")
    ] = 8001,
    config: Annotated[Path, typer.Option(help="Routes file.")] = Path("config/gateway.yaml"),
    simulator_config: Annotated[Path, typer.Option(help="Simulator behaviours.")] = Path(
        "config/simulator.yaml"
    ),
) -> None:
    """Start the simulator and the gateway on its embedded defaults, with the demo key sk-demo.

    Both run as child processes; Ctrl-C or SIGTERM stops both.
    """
    import yaml  # noqa: PLC0415 -- imported when run: every other command starts faster

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {config}: {exc}", "give --config a routes file") from None
    if not isinstance(data, dict):
        raise RejectedError(f"{config}: not a routes file", "run gateway check-config on it")
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        routes = Path(tmp) / "gateway.yaml"
        routes.write_text(yaml.safe_dump(demo_routes(data, config.parent, simulator_port)))
        _run(port, simulator_port, routes, simulator_config)


def _run(port: int, simulator_port: int, routes: Path, simulator_config: Path) -> None:
    env = demo_env(os.environ, port, routes)
    gateway_cmd = [sys.executable, "-m", "gateway", "serve"]
    simulator_cmd = [
        *(sys.executable, "-m", "gateway", "simulate"),
        *("--port", str(simulator_port), "--config", str(simulator_config)),
    ]
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        children.append(subprocess.Popen(simulator_cmd))  # noqa: S603 -- our own module
        _wait_healthy(f"http://127.0.0.1:{simulator_port}/healthz", children[0])
        children.append(subprocess.Popen(gateway_cmd, env=env))  # noqa: S603
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", children[1])
        Console(stderr=True).print(
            f"[bold]demo ready:[/] gateway http://127.0.0.1:{port}/v1 (client key sk-demo, "
            f"eval key sk-eval, admin key sk-admin); simulator http://127.0.0.1:{simulator_port}"
            "/v1\n  try: .venv/bin/python -m examples.classify_tickets"
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        raise RejectedError(
            "a demo process exited with an error (see its output above)",
            "check that both ports are free (--port / GATEWAY_PORT, --simulator-port)",
        )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Until ``url`` answers 200. Raises UnreachableError (exit 3) if the process ends first or
    the time runs out."""
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnreachableError(
                f"{' '.join(proc.args[2:4]) if isinstance(proc.args, list) else 'a child'} "
                f"exited with status {proc.returncode} before {url} answered",
                "see its output above (a port in use?)",
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise UnreachableError(f"{url} did not answer within {timeout_s:.0f}s", "see the output above")
