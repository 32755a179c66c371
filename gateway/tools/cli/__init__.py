"""The ``gateway`` command line (typer).

Every command follows one exit-code rule (:mod:`gateway.tools.exit_codes`): 0 ok, 1 rejected
or data errors, 2 usage only, 3 unreachable or 5xx, 4 conflict, 5 auth, 130 interrupted.
Commands raise :class:`~gateway.tools.exit_codes.CliError`; the root group
(:class:`~gateway.tools.cli.failure.GatewayGroup`) prints it and exits with its code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.errors import ConfigError
from gateway.tools.cli.check_config import check_config_command
from gateway.tools.cli.data import dataset_app, finetune_app
from gateway.tools.cli.demo import demo_command
from gateway.tools.cli.eval import EVAL_EPILOG, eval_command
from gateway.tools.cli.failure import GatewayGroup
from gateway.tools.cli.flags import flags_app
from gateway.tools.exit_codes import RejectedError, UsageError

if TYPE_CHECKING:  # pydantic-settings: imported by the commands that read settings
    from gateway.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="gateway",
    cls=GatewayGroup,
    rich_markup_mode=None,
    help="Feature-flagged inference gateway: serve it, check its config, run its simulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(flags_app, name="flags")
app.add_typer(dataset_app, name="dataset")
app.add_typer(finetune_app, name="finetune")
app.command("eval", epilog=EVAL_EPILOG)(eval_command)
app.command("check-config")(check_config_command)
app.command("demo")(demo_command)


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
        raise typer.Exit(status)  # the server's own status (1: it could not start; logged)


def _validated_settings() -> Settings:
    """Load settings, routes file and keys once before forking workers.

    Raises:
        UsageError: the routes file cannot be opened (exit 2).
        RejectedError: invalid settings, routes file or keys (exit 1; every problem listed).
    """
    from gateway.app import build_gateway  # noqa: PLC0415
    from gateway.settings import load_settings  # noqa: PLC0415

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise _cannot_start(exc) from None
    try:
        with settings.config.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot read the routes file {settings.config} ({exc.strerror})",
            "give --config (GATEWAY_CONFIG) a routes file",
        ) from None
    try:
        build_gateway(settings)
    except ConfigError as exc:
        raise _cannot_start(exc) from None
    return settings


def _cannot_start(exc: ConfigError) -> RejectedError:
    return RejectedError(
        "gateway: cannot start",
        "fix every problem listed (gateway check-config PATH checks a routes file alone)",
        code="invalid_config",
        problems=exc.problems,
    )


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


def main() -> None:
    """Console-script entry point."""
    app()
