"""The ``gateway`` command line (typer).

Exit codes scripts can rely on: 0 success, 1 the thing checked is invalid or the call failed,
2 wrong usage (typer's own), 3 the gateway could not be reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from gateway.errors import ConfigError
from gateway.settings import Settings
from gateway.tools.cli.data import dataset_app, finetune_app
from gateway.tools.cli.eval import EVAL_EPILOG, eval_command
from gateway.tools.cli.flags import flags_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="gateway",
    help="Feature-flagged inference gateway: serve it, check its config, run its simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 1
EXIT_UNREACHABLE = 3

app.add_typer(flags_app, name="flags")
app.add_typer(dataset_app, name="dataset")
app.add_typer(finetune_app, name="finetune")
app.command("eval", epilog=EVAL_EPILOG)(eval_command)


def _err(console: Console, problems: list[str], what: str) -> None:
    console.print(f"[bold red]{what}[/]")
    for problem in problems:
        console.print(f"  - {problem}", markup=False, highlight=False)


@app.command("check-config")
def check_config(
    path: Annotated[Path, typer.Argument(help="The routes file to validate.")] = Path(
        "config/gateway.yaml"
    ),
) -> None:
    """Validate a routes file without serving; exit 1 with every problem found."""
    from gateway.config import load_config  # noqa: PLC0415 -- keep `gateway --help` fast

    console = Console(stderr=True)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _err(console, exc.problems, f"{path}: invalid routes file")
        raise typer.Exit(EXIT_INVALID) from None
    table = Table(title=f"{path}: valid")
    for column in ("route", "variant", "role", "upstream", "model", "few-shot"):
        table.add_column(column)
    for route in config.routes.values():
        for variant in route.variants.values():
            role = (
                "passthrough"
                if route.passthrough
                else "candidate"
                if variant.name == route.candidate
                else "fallback"
                if variant.name == route.fallback
                else "-"
            )
            table.add_row(
                route.name,
                variant.name,
                role,
                variant.upstream,
                variant.model,
                str(len(variant.few_shot)),
            )
    Console().print(table)
    missing = [
        f"upstreams.{name}.api_key_env: {cfg.api_key_env} is not set in this environment"
        for name, cfg in config.upstreams.items()
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env)
    ]
    for warning in missing:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (GATEWAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (GATEWAY_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (GATEWAY_WORKERS).")] = None,
    config: Annotated[Path | None, typer.Option(help="Routes file (GATEWAY_CONFIG).")] = None,
) -> None:
    """Run the gateway (uvicorn, uvloop, httptools) with settings from GATEWAY_* variables."""
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers), ("CONFIG", config)):
        if value is not None:
            os.environ[f"GATEWAY_{name}"] = str(value)
    settings = _validated_settings()
    from gateway.serving.process import run_server  # noqa: PLC0415
    from gateway.telemetry import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_level)
    status = run_server(
        settings,
        loop="uvloop",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
    )
    if status:
        raise typer.Exit(status)


def _validated_settings() -> Settings:
    """Load settings, routes file and keys once before forking workers; exit 1 on problems."""
    from gateway.app import build_gateway  # noqa: PLC0415
    from gateway.settings import load_settings  # noqa: PLC0415

    console = Console(stderr=True)
    try:
        settings = load_settings()
        build_gateway(settings)
    except ConfigError as exc:
        _err(console, exc.problems, "gateway: cannot start")
        raise typer.Exit(EXIT_INVALID) from None
    return settings


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed).")] = 8001,
    config: Annotated[
        Path | None, typer.Option(help="Simulator config (models and behaviours), YAML.")
    ] = None,
) -> None:
    """Run the local OpenAI-compatible upstream (a ticket classifier) for demos and tests."""
    from gateway.tools.simulator import run_simulator  # noqa: PLC0415

    run_simulator(host, port, config)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
    simulator_port: Annotated[int, typer.Option(help="Simulator port.")] = 8001,
    config: Annotated[Path, typer.Option(help="Routes file.")] = Path("config/gateway.yaml"),
    simulator_config: Annotated[Path, typer.Option(help="Simulator behaviours.")] = Path(
        "config/simulator.yaml"
    ),
) -> None:
    """Start the simulator and the gateway on its embedded defaults, with the demo key sk-demo.

    Both run as child processes; Ctrl-C or SIGTERM stops both.
    """
    console = Console(stderr=True)
    env = {
        "GATEWAY_CLIENT_KEYS": '{"demo": "sk-demo", "eval": "sk-eval"}',
        "GATEWAY_OVERRIDE_KEYS": '["eval"]',
        "GATEWAY_ADMIN_KEYS": '{"ops": "sk-admin"}',
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "GATEWAY_CONFIG": str(config),
    }
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
        console.print(
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
        raise typer.Exit(EXIT_INVALID)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise typer.Exit(EXIT_UNREACHABLE)
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise typer.Exit(EXIT_UNREACHABLE)


def main() -> None:
    """Console-script entry point."""
    app()
