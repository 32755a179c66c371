"""``gateway eval``: evaluate a route's candidate and fallback on a held-out set, through a gateway.

Each example of ``--data`` (fine-tuning JSONL; the last assistant message is the gold) is sent
once per variant to the running gateway at ``--url``, forcing the variant with
``x-gateway-variant`` and an evaluation key (``--api-key``, ``GATEWAY_EVAL_KEY`` or
``GATEWAY_API_KEY``; its name must be in the gateway's ``GATEWAY_OVERRIDE_KEYS``). The routes
file (``--config``) gives the contract, the variant names and the prices.

Every finished (example, variant) is appended to a state file at once, so a run stopped by
Ctrl-C, SIGTERM or a crash resumes when run again: nothing finished is sent twice. Ctrl-C stops
sending and waits for the requests in flight (a second Ctrl-C abandons them). The report goes to
``--out`` as ``report.md`` and ``report.json`` and is printed (``--json``: the JSON on stdout).

Exit codes scripts can rely on:

====  ======================================================================================
0     evaluated; every gate held (or none was asked for)
1     a gate failed (``--min-accuracy``, ``--max-regression``), or the gateway refused the run
      (e.g. it does not serve the route)
2     wrong usage: bad options, an invalid held-out file or routes file, an unknown route
3     the gateway could not be reached
5     authentication: no key, a wrong one, or a key not allowed to force variants (401, 403)
130   interrupted; run the same command again to resume
====  ======================================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.cli_flags import EXIT_AUTH, EXIT_OK, EXIT_REJECTED, EXIT_UNREACHABLE, EXIT_USAGE

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from gateway.config import GatewayConfig, Route
    from gateway.evaluation.heldout import Evaluator, Example, Result
    from gateway.evaluation.report import EvalReport

__all__ = ["EVAL_EPILOG", "EXIT_GATE_FAILED", "EXIT_INTERRUPTED", "eval_command"]

EXIT_GATE_FAILED = 1
EXIT_INTERRUPTED = 130

EVAL_EPILOG = (
    "Exit codes: 0 ok; 1 a gate failed or the gateway refused the run; 2 usage (options, "
    "data or routes file); 3 gateway unreachable; 5 key missing, wrong or not allowed to force "
    "variants (401/403); 130 interrupted (run again to resume)."
)
_DEFAULT_URL = "http://127.0.0.1:8000"


def _fail(message: str, hint: str | None, code: int) -> typer.Exit:
    err = Console(stderr=True, highlight=False)
    err.print(Text(f"error: {message}", style="bold red"))
    if hint:
        err.print(Text(f"what to do: {hint}"))
    return typer.Exit(code)


def _load_route(config_path: Path, route_name: str) -> tuple[GatewayConfig, Route]:
    from gateway.config import load_config  # noqa: PLC0415 -- keep `gateway --help` fast
    from gateway.errors import ConfigError  # noqa: PLC0415

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        err = Console(stderr=True, highlight=False)
        err.print(Text(f"{config_path}: invalid routes file", style="bold red"))
        for problem in exc.problems:
            err.print(Text(f"  - {problem}"))
        raise typer.Exit(EXIT_USAGE) from None
    route = config.routes.get(route_name)
    if route is None or route.passthrough:
        known = ", ".join(name for name, r in config.routes.items() if not r.passthrough)
        raise _fail(
            f"{config_path}: no route '{route_name}' with variants",
            f"routes: {known or 'none'}; set --route, or --config (GATEWAY_CONFIG)",
            EXIT_USAGE,
        )
    return config, route


def _progress(enabled: bool) -> Progress:
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


async def _send(
    evaluator: Evaluator,
    todo: list[tuple[Example, str]],
    concurrency: int,
    record: Callable[[Result], None],
) -> bool:
    """Pre-flight, then every pair; SIGINT/SIGTERM stop sending (twice: abandon in-flight)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. not on Windows
            loop.add_signal_handler(sig, on_signal)
    try:
        await evaluator.preflight()
        return await evaluator.run(todo, concurrency=concurrency, on_result=record, stop=stop)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def _report_table(report: EvalReport) -> Table:
    from gateway.evaluation.report import summary_rows  # noqa: PLC0415

    c, f = report.candidate, report.fallback
    table = Table(title=Text(f"held-out evaluation: {report.meta['route']}"))
    table.add_column("metric")
    table.add_column(Text(f"candidate {c.variant}\n{c.model}"), justify="right")
    table.add_column(Text(f"fallback {f.variant}\n{f.model}"), justify="right")
    table.add_column("candidate − fallback", justify="right")
    for row in summary_rows(report):
        table.add_row(*(Text(cell) for cell in row))
    return table


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def eval_command(
    route: Annotated[str, typer.Option("--route", help="The route to evaluate.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Held-out JSONL in fine-tuning format (gold: last assistant message)."
        ),
    ],
    config: Annotated[
        Path, typer.Option("--config", envvar="GATEWAY_CONFIG", help="The routes file.")
    ] = Path("config/gateway.yaml"),
    url: Annotated[
        str,
        typer.Option("--url", envvar="GATEWAY_URL", help="The gateway's base URL (without /v1)."),
    ] = _DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=["GATEWAY_EVAL_KEY", "GATEWAY_API_KEY"],
            help="A client key allowed to force variants (GATEWAY_OVERRIDE_KEYS).",
            show_default=False,
            show_envvar=True,
            metavar="KEY",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.md and report.json.")
    ] = Path("eval-reports"),
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Resume state (JSONL). Default: OUT/<data stem>.<route>.eval-state.jsonl.",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore and overwrite previous state.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Send again the pairs whose result is an error.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=1024, help="Requests in flight at most.")
    ] = 8,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Only the first N examples.", show_default=False),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds per request before it errs.")
    ] = 60.0,
    min_accuracy: Annotated[
        float | None,
        typer.Option(
            "--min-accuracy", min=0.0, max=1.0, help="Gate: candidate accuracy at least X (0..1)."
        ),
    ] = None,
    max_regression: Annotated[
        float | None,
        typer.Option(
            "--max-regression",
            min=-1.0,
            max=1.0,
            help="Gate: fallback minus candidate accuracy at most Y (0..1, e.g. 0.02).",
        ),
    ] = None,
    gate_on_lower_bound: Annotated[
        bool,
        typer.Option(
            "--gate-on-lower-bound",
            help="Gate on the 95% interval's pessimistic end instead of the point estimate.",
        ),
    ] = False,
    progress: Annotated[
        bool,
        typer.Option("--progress/--no-progress", help="Progress bar on stderr (TTY only)."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Evaluate a route's candidate and fallback on a held-out set through a running gateway.

    Reports per variant accuracy (95% Wilson interval), contract pass rate, mean tokens,
    latency p50/p95, cost per 1,000 requests and errors, and candidate minus fallback. Resumable:
    run the same command again after an interruption.
    """
    from gateway.evaluation.heldout import (  # noqa: PLC0415
        DatasetError,
        plan_run,
        read_examples,
        read_state,
    )

    gateway_config, route_obj = _load_route(config, route)
    try:
        examples = read_examples(data)
    except DatasetError as exc:
        err = Console(stderr=True, highlight=False)
        err.print(Text(f"{data}: invalid held-out file", style="bold red"))
        for problem in exc.problems[:20]:
            err.print(Text(f"  - {problem}"))
        if len(exc.problems) > 20:
            err.print(Text(f"  ... and {len(exc.problems) - 20} more"))
        raise typer.Exit(EXIT_USAGE) from None
    if limit is not None:
        examples = examples[:limit]
    state_path = state or out / f"{data.stem}.{route}.eval-state.jsonl"
    if fresh:
        state_path.unlink(missing_ok=True)
    records, unreadable = read_state(state_path)

    variants = (route_obj.candidate, route_obj.fallback)
    plan = plan_run(examples, variants, records, route=route, retry_errors=retry_errors)
    err = Console(stderr=True, highlight=False)
    if plan.done:
        err.print(
            Text(
                f"resuming from {state_path}: {len(plan.done)} of "
                f"{len(examples) * len(variants)} results done, {len(plan.todo)} to send"
                + (f" ({plan.stale} stale records ignored)" if plan.stale else "")
            )
        )
    if unreadable:
        err.print(Text(f"note: {unreadable} unreadable line(s) in {state_path} were skipped"))

    results = dict(plan.done)
    if plan.todo:
        if not api_key:
            raise _fail(
                "no key to call the gateway with",
                "set --api-key, GATEWAY_EVAL_KEY or GATEWAY_API_KEY to a key allowed to force "
                "variants (GATEWAY_OVERRIDE_KEYS)",
                EXIT_AUTH,
            )
        complete = _run_pending(
            gateway_config,
            route_obj,
            plan.todo,
            results,
            url=url,
            api_key=api_key,
            state_path=state_path,
            concurrency=concurrency,
            timeout=timeout,
            show_progress=progress and sys.stderr.isatty(),
        )
        if not complete:
            left = len(examples) * len(variants) - len(results)
            err.print(
                Text(
                    f"interrupted: {left} result(s) still to do; {len(results)} kept in "
                    f"{state_path}. Run the same command again to resume.",
                    style="yellow",
                )
            )
            raise typer.Exit(EXIT_INTERRUPTED)

    report = _build_report(
        gateway_config,
        route_obj,
        examples,
        results,
        meta={
            "data": str(data),
            "data_sha256": _sha256(data),
            "limit": limit,
            "url": url,
            "config": str(config),
            "state_file": str(state_path),
            "resumed_results": len(plan.done),
            "sent_results": len(results) - len(plan.done),
            "stale_state_records": plan.stale,
        },
        min_accuracy=min_accuracy,
        max_regression=max_regression,
        on_lower_bound=gate_on_lower_bound,
    )
    _write_and_print(report, out, as_json)
    failed = [gate for gate in report.gates if not gate.passed]
    for gate in failed:
        err.print(Text(f"gate {gate.name} failed: {gate.detail}", style="bold red"))
    raise typer.Exit(EXIT_GATE_FAILED if failed else EXIT_OK)


def _run_pending(
    gateway_config: GatewayConfig,
    route: Route,
    todo: list[tuple[Example, str]],
    results: dict[tuple[int, str], Result],
    *,
    url: str,
    api_key: str,
    state_path: Path,
    concurrency: int,
    timeout: float,
    show_progress: bool,
) -> bool:
    """Send ``todo``, adding each result to ``results`` and the state file; ``False``: stopped.

    Raises:
        typer.Exit: 3 unreachable, 5 auth, 1 refused, 130 abandoned by a second Ctrl-C.
    """
    import openai  # noqa: PLC0415

    from gateway.evaluation.heldout import (  # noqa: PLC0415
        EvalAbortError,
        EvalAuthError,
        Evaluator,
        GatewayUnreachableError,
        StateWriter,
    )

    client = openai.AsyncOpenAI(
        base_url=url.rstrip("/") + "/v1", api_key=api_key, max_retries=0, timeout=timeout
    )
    evaluator = Evaluator(client, route.name, route.variants, gateway_config.prices)
    with StateWriter(state_path) as writer, _progress(show_progress) as bar:
        task: TaskID = bar.add_task(f"{route.name}", total=len(todo), errors=0)
        errors = 0

        def record(result: Result) -> None:
            nonlocal errors
            writer.append(result)
            results[(result.index, result.variant)] = result
            errors += result.error is not None
            bar.update(task, advance=1, errors=errors)

        async def main() -> bool:
            try:
                return await _send(evaluator, todo, concurrency, record)
            finally:
                await client.close()

        try:
            return asyncio.run(main())
        except GatewayUnreachableError as exc:
            raise _fail(exc.message, exc.hint, EXIT_UNREACHABLE) from None
        except EvalAuthError as exc:
            raise _fail(exc.message, exc.hint, EXIT_AUTH) from None
        except EvalAbortError as exc:
            raise _fail(exc.message, exc.hint, EXIT_REJECTED) from None
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise _fail(
                f"abandoned; finished results are kept in {state_path}",
                "run the same command again to resume",
                EXIT_INTERRUPTED,
            ) from None


def _build_report(
    gateway_config: GatewayConfig,
    route: Route,
    examples: list[Example],
    results: dict[tuple[int, str], Result],
    *,
    meta: dict[str, Any],
    min_accuracy: float | None,
    max_regression: float | None,
    on_lower_bound: bool,
) -> EvalReport:
    from gateway.evaluation.report import (  # noqa: PLC0415
        CONFIDENCE,
        EvalReport,
        check_gates,
        compare,
        summarize_variant,
    )
    from gateway.quality.contract import Contract  # noqa: PLC0415

    contract = Contract(route.contract)
    golds = {example.index: example.gold for example in examples}
    summaries = []
    for role, name in (("candidate", route.candidate), ("fallback", route.fallback)):
        variant = route.variants[name]
        ordered = [results[(e.index, name)] for e in examples if (e.index, name) in results]
        summaries.append(summarize_variant(name, role, variant.model, ordered, golds, contract))
    candidate, fallback = summaries
    difference = compare(candidate, fallback)
    gates = check_gates(
        candidate,
        fallback,
        difference,
        min_accuracy=min_accuracy,
        max_regression=max_regression,
        on_lower_bound=on_lower_bound,
    )
    full_meta = {
        "route": route.name,
        "n_examples": len(examples),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "variants": {
            "candidate": {"name": route.candidate, "model": candidate.model},
            "fallback": {"name": route.fallback, "model": fallback.model},
        },
        "contract": route.contract.model_dump() if route.contract else None,
        "confidence": CONFIDENCE,
        "accuracy_interval": "wilson-score",
        "difference_interval": "newcombe-hybrid-score (method 10, independent samples)",
        "gates": {
            "min_accuracy": min_accuracy,
            "max_regression": max_regression,
            "on_lower_bound": on_lower_bound,
        },
        **meta,
    }
    return EvalReport(full_meta, candidate, fallback, difference, tuple(gates))


def _write_and_print(report: EvalReport, out: Path, as_json: bool) -> None:
    from gateway.evaluation.report import render_markdown  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    console = Console(highlight=False)
    console.print(_report_table(report))
    for gate in report.gates:
        style = "green" if gate.passed else "bold red"
        console.print(
            Text(f"{'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}", style=style)
        )
    console.print(Text(f"reports: {out / 'report.md'}, {out / 'report.json'}"))
