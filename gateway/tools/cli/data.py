"""``gateway dataset validate`` and ``gateway finetune create|watch``.

``dataset validate FILE`` checks a chat fine-tuning JSONL file line by line in bounded memory
(``gateway.tools.evaluation.dataset``) and prints every problem with its line, the label
distribution and approximate token counts; ``--json`` prints the same for scripts.

``finetune create`` validates the data first (and refuses on errors), uploads it with the
official ``openai`` SDK and creates the job; ``finetune watch JOB`` follows the job's events
and status and, with ``--register``, makes the fine-tuned model the route's candidate at weight
0 on a running gateway. A watch remembers what it printed and registered
(``gateway.tools.evaluation.watch_state``), so running it again repeats nothing.

Exit codes (as ``gateway flags``): 0 success (warnings allowed); 1 the data has errors, the job
failed or was cancelled, or the API rejected a request; 2 wrong usage (unknown route, unreadable
file or routes file, no API key); 3 the API or the gateway could not be reached or answered
5xx; 5 a key was refused (401/403); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.tools.admin_client import AdminAPIError
from gateway.tools.cli.common import (
    DEFAULT_CONFIG,
    DEFAULT_URL,
    AsJson,
    ConfigOpt,
    command_group,
    print_error,
    print_json,
)
from gateway.tools.exit_codes import EXIT_INTERRUPTED, EXIT_REJECTED, EXIT_USAGE

if TYPE_CHECKING:  # the commands import their modules when run: `gateway --help` stays fast
    from gateway.tools.evaluation.dataset_result import Limits, RouteExpectations, ValidationResult

__all__ = ["dataset_app", "finetune_app"]

_EXITS = (
    "Exit codes: 0 ok (warnings allowed); 1 data errors, job failed or cancelled, or request "
    "rejected; 2 usage; 3 API or gateway unreachable or 5xx; 5 key refused."
)

dataset_app = command_group("dataset", "Check fine-tuning data before paying for a job. " + _EXITS)
finetune_app = command_group(
    "finetune", "Create and follow fine-tuning jobs (official openai SDK). " + _EXITS
)

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", envvar="OPENAI_BASE_URL", help="The API, up to /v1.", metavar="URL"),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="OPENAI_API_KEY",
        help="The API key (any value for the simulator); prefer the variable.",
        show_default=False,
    ),
]


def _fail(message: str, hint: str, code: int, as_json: bool, **extra: object) -> NoReturn:
    """Report an error on stderr (one JSON object with ``--json``) and exit with ``code``."""
    if as_json:
        body = {"error": {"message": message, "hint": hint, "exit_code": code}, **extra}
        print_json(body, indent=None, stderr=True)
    else:
        print_error(message, hint, soft_wrap=True)
    raise typer.Exit(code)


def _route(config_path: Path, route: str, as_json: bool) -> tuple[GatewayConfig, RouteExpectations]:
    from gateway.tools.evaluation.dataset import UnknownRouteError, route_expectations  # noqa: PLC0415

    try:
        config = load_config(config_path)
        return config, route_expectations(config, route)
    except ConfigError as exc:
        _fail("; ".join(exc.problems), "fix the routes file or give --config", EXIT_USAGE, as_json)
    except UnknownRouteError as exc:
        _fail(exc.message, "give one of the routes listed", EXIT_USAGE, as_json)


def _validate(
    path: Path, expectations: RouteExpectations | None, holdout: Path | None, limits: Limits
) -> ValidationResult | str:
    """The validation result, or why the file(s) could not be read."""
    from gateway.tools.evaluation.dataset import validate_dataset  # noqa: PLC0415

    try:
        return validate_dataset(path, expectations=expectations, holdout=holdout, limits=limits)
    except OSError as exc:
        return f"cannot read {exc.filename or path}: {exc.strerror or exc}"


@dataset_app.command("validate", epilog=_EXITS)
def validate(
    file: Annotated[Path, typer.Argument(help="Chat fine-tuning JSONL file.")],
    route: Annotated[
        str | None, typer.Option(help="Check labels and system prompt against this route.")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    holdout: Annotated[
        Path | None, typer.Option(help="Held-out JSONL that must not overlap FILE.")
    ] = None,
    max_per_kind: Annotated[
        int, typer.Option(min=1, help="List at most this many problems of each kind.")
    ] = 1000,
    as_json: AsJson = False,
) -> None:
    """Check format, duplicates, conflicting answers, labels, prompt, tokens and overlap."""
    from gateway.tools.evaluation.dataset_result import Limits  # noqa: PLC0415
    from gateway.tools.evaluation.dataset_view import print_validation  # noqa: PLC0415

    expectations = _route(config, route, as_json)[1] if route else None
    result = _validate(file, expectations, holdout, Limits(per_code=max_per_kind))
    if isinstance(result, str):
        _fail(result, "give a readable file", EXIT_USAGE, as_json)
    if as_json:
        print_json(result.to_json())
    else:
        print_validation(Console(highlight=False, soft_wrap=True), result)
    raise typer.Exit(0 if result.ok else EXIT_REJECTED)


@finetune_app.command("create", epilog=_EXITS)
def create(
    route: Annotated[str, typer.Option(help="The route the model is for.")],
    training_file: Annotated[Path, typer.Option(help="Training JSONL.")],
    validation_file: Annotated[Path | None, typer.Option(help="Validation JSONL.")] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Model to fine-tune (default: from the route).")
    ] = None,
    suffix: Annotated[
        str | None, typer.Option(help="Name part of the model (default: the route).")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Validate the data, upload it and create the fine-tuning job; print the job id.

    Both files are checked against the route (format, labels, system prompt...), and the
    validation file must not share inputs with the training file. Any error: nothing is sent.
    """
    from gateway.tools.evaluation.dataset_result import Limits  # noqa: PLC0415
    from gateway.tools.evaluation.dataset_view import print_problems  # noqa: PLC0415
    from gateway.tools.evaluation.finetune_jobs import (  # noqa: PLC0415
        JobAPIError,
        api_errors,
        default_base_model,
        openai_client,
        start_job,
    )

    routes, expectations = _route(config, route, as_json)
    results: list[ValidationResult] = []
    for path in (training_file, validation_file):
        if path is None:
            continue
        holdout = validation_file if path == training_file else None
        result = _validate(path, expectations, holdout, Limits())
        if isinstance(result, str):
            _fail(result, "give a readable file", EXIT_USAGE, as_json)
        results.append(result)
    bad = [r for r in results if not r.ok]
    if bad:
        if not as_json:
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            for result in bad:
                err.print(Text(f"{result.file}: {result.errors} error(s)", style="bold"))
                print_problems(err, [p for p in result.problems if p.severity == "error"], {})
        errors = sum(r.errors for r in bad)
        _fail(
            f"refusing to fine-tune: {errors} error(s) in the data",
            f"fix them (gateway dataset validate FILE --route {route}) and run again",
            EXIT_REJECTED,
            as_json,
            validation=[r.to_json() for r in bad],
        )
    model = base_model or default_base_model(routes.routes[route])
    if not model:
        _fail("no base model", "give --base-model", EXIT_USAGE, as_json)
    try:
        client = openai_client(base_url, api_key)
        with api_errors(str(client.base_url)):
            started = start_job(
                client,
                training=training_file,
                validation=validation_file,
                model=model,
                suffix=suffix or route,
                route=route,
            )
    except JobAPIError as exc:
        _fail(exc.message, exc.hint, exc.exit_code, as_json)
    if as_json:
        print_json(started.to_json(route), indent=None)
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(Text(started.job.id))
    training = results[0]
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        Text(
            f"created fine-tuning job {started.job.id} ({started.job.status}): base model "
            f"{model}, training file {started.training_file} ({training.examples} examples, "
            f"~{training.tokens.total} tokens, {training.warnings} warning(s))\n"
            f"follow it: gateway finetune watch {started.job.id} --register"
        )
    )


@finetune_app.command("watch", epilog=_EXITS)
def watch(
    job_id: Annotated[str, typer.Argument(help="The job id (ftjob-...).", metavar="JOB")],
    register: Annotated[
        bool, typer.Option(help="On success, make the model the route's candidate (weight 0).")
    ] = False,
    route: Annotated[
        str | None, typer.Option(help="The route to register for (default: the job's).")
    ] = None,
    url: Annotated[
        str, typer.Option("--url", envvar="GATEWAY_URL", help="The gateway, for --register.")
    ] = DEFAULT_URL,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="GATEWAY_ADMIN_KEY", help="Admin key.", show_default=False),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 2.0,
    state_dir: Annotated[
        Path | None, typer.Option(envvar="GATEWAY_STATE_DIR", help="Where watches remember.")
    ] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Follow a job's events and status until it ends; exit 1 if it failed or was cancelled."""
    from gateway.tools.evaluation.finetune_jobs import JobAPIError  # noqa: PLC0415
    from gateway.tools.evaluation.job_view import JobView  # noqa: PLC0415
    from gateway.tools.evaluation.watch import WatchRequest, WatchUsageError, run_watch  # noqa: PLC0415

    request = WatchRequest(
        job_id=job_id,
        register=register,
        route=route,
        url=url,
        admin_key=admin_key,
        interval=interval,
        state_dir=state_dir,
        base_url=base_url,
        api_key=api_key,
    )
    view = JobView(as_json=as_json)
    try:
        job = run_watch(request, view)
    except (JobAPIError, AdminAPIError) as exc:
        _fail(exc.message, exc.hint, exc.exit_code, as_json)
    except WatchUsageError as exc:
        _fail(exc.message, exc.hint, EXIT_USAGE, as_json)
    except KeyboardInterrupt:
        view.err.print("stopped watching; the job goes on. Run the same command to resume.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if job.status != "succeeded":
        raise typer.Exit(EXIT_REJECTED)
