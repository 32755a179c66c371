"""``gateway dataset validate`` and ``gateway finetune create|watch``.

``dataset validate FILE`` checks a chat fine-tuning JSONL file line by line in bounded memory
(``gateway.tools.evaluation.dataset``) and prints every problem with its line, the label
distribution and approximate token counts; ``--json`` prints the same for scripts.

``finetune create`` validates the data first (and refuses on errors), uploads it with the
official ``openai`` SDK and creates the job; ``finetune watch JOB`` follows the job's events
and status and, with ``--register``, makes the fine-tuned model the route's candidate at weight
0 on a running gateway. A watch remembers what it printed and registered
(``gateway.tools.evaluation.watch_state``), so running it again repeats nothing.

Exit codes (``gateway.tools.exit_codes``): 0 success (warnings allowed); 1 the data or the
routes file has errors, the job failed or was cancelled, or the API rejected a request; 2 wrong
usage (unknown route, a file that cannot be read); 3 the API or the gateway could
not be reached or answered 5xx; 5 no key, or a key was refused (401/403); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from gateway.tools.cli.common import (
    DEFAULT_CONFIG,
    DEFAULT_URL,
    AsJson,
    ConfigOpt,
    command_group,
    load_routes,
    print_json,
    print_table,
)
from gateway.tools.exit_codes import InterruptedRunError, RejectedError, UsageError

if TYPE_CHECKING:  # the commands import their modules when run: `gateway --help` stays fast
    from gateway.config import GatewayConfig
    from gateway.tools.evaluation.dataset_result import Limits, RouteExpectations, ValidationResult

__all__ = ["dataset_app", "finetune_app"]

_EXITS = (
    "Exit codes: 0 ok (warnings allowed); 1 data errors, job failed or cancelled, or request "
    "rejected; 2 usage (options, unknown route, unreadable file); 3 API or gateway unreachable "
    "or 5xx; 5 key missing or refused; 130 interrupted."
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


def _route(config_path: Path, route: str) -> tuple[GatewayConfig, RouteExpectations]:
    """The routes file and what ``route`` expects of the data.

    Raises:
        RejectedError: the routes file is invalid (exit 1; every problem listed).
        UsageError: it cannot be read (exit 2).
        UnknownRouteError: no such route (exit 2).
    """
    from gateway.tools.evaluation.dataset import route_expectations  # noqa: PLC0415

    config = load_routes(config_path)
    return config, route_expectations(config, route)


def _validate(
    path: Path, expectations: RouteExpectations | None, holdout: Path | None, limits: Limits
) -> ValidationResult:
    """The validation result.

    Raises:
        UsageError: a file cannot be read (exit 2).
    """
    from gateway.tools.evaluation.dataset import validate_dataset  # noqa: PLC0415

    try:
        return validate_dataset(path, expectations=expectations, holdout=holdout, limits=limits)
    except OSError as exc:
        raise UsageError(
            f"cannot read {exc.filename or path}: {exc.strerror or exc}", "give a readable file"
        ) from None


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

    expectations = _route(config, route)[1] if route else None
    result = _validate(file, expectations, holdout, Limits(per_code=max_per_kind))
    if as_json:
        print_json(result.to_json())
    else:
        out = Console(highlight=False, soft_wrap=True)
        print_validation(out, result, lambda table: print_table(table, out))
    if not result.ok:
        raise RejectedError(
            f"{file}: {result.errors} error(s) in the data",
            "fix the problems listed and run again",
            code="invalid_data",
        )


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
        api_errors,
        default_base_model,
        openai_client,
        start_job,
    )

    routes, expectations = _route(config, route)
    results: list[ValidationResult] = []
    for path in (training_file, validation_file):
        if path is None:
            continue
        holdout = validation_file if path == training_file else None
        results.append(_validate(path, expectations, holdout, Limits()))
    bad = [r for r in results if not r.ok]
    if bad:
        if not as_json:
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            for result in bad:
                err.print(Text(f"{result.file}: {result.errors} error(s)", style="bold"))
                found = [p for p in result.problems if p.severity == "error"]
                print_problems(err, found, {}, lambda table: print_table(table, err))
        errors = sum(r.errors for r in bad)
        raise RejectedError(
            f"refusing to fine-tune: {errors} error(s) in the data",
            f"fix them (gateway dataset validate FILE --route {route}) and run again",
            code="invalid_data",
            extra={"validation": [r.to_json() for r in bad]},
        )
    model = base_model or default_base_model(routes.routes[route])
    if not model:
        raise UsageError("no base model", "give --base-model")
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
    from gateway.tools.evaluation.job_view import JobView  # noqa: PLC0415
    from gateway.tools.evaluation.watch import WatchRequest, run_watch  # noqa: PLC0415

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
    except KeyboardInterrupt:
        raise InterruptedRunError(
            "stopped watching; the job goes on", "run the same command to resume"
        ) from None
    if job.status != "succeeded":
        raise RejectedError(
            f"job {job.id} {job.status}", "see the job's events above", code=f"job_{job.status}"
        )
