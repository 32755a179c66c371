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

The parts: :mod:`gateway.tools.cli.eval_inputs` (routes file, examples, resume state),
:mod:`gateway.tools.cli.eval_run` (sending, Ctrl-C), :mod:`gateway.tools.cli.eval_output` (the
report's
files and terminal output); the evaluation itself is :mod:`gateway.tools.evaluation` (``heldout_*``
for the run, ``report*`` for the statistics, gates and documents).

Exit codes scripts can rely on:

====  ======================================================================================
0     evaluated; every gate held (or none was asked for)
1     a gate failed (``--min-accuracy``, ``--max-regression``), the held-out file or the routes
      file is invalid, or the gateway refused the run (e.g. it does not serve the route)
2     wrong usage: bad options, an unknown route, a held-out file that cannot be read
3     the gateway could not be reached
5     authentication: no key, a wrong one, or a key not allowed to force variants (401, 403)
130   interrupted; run the same command again to resume
====  ======================================================================================
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.tools.cli.common import DEFAULT_CONFIG, DEFAULT_URL, AsJson, ConfigOpt
from gateway.tools.exit_codes import AuthError, InterruptedRunError, RejectedError

__all__ = ["EVAL_EPILOG", "eval_command"]

EVAL_EPILOG = (
    "Exit codes: 0 ok; 1 a gate failed, invalid data or routes file, or the gateway refused "
    "the run; 2 usage (options, unknown route, unreadable file); 3 gateway unreachable; 5 key "
    "missing, wrong or not allowed to force variants (401/403); 130 interrupted (run again to "
    "resume)."
)


def eval_command(
    route: Annotated[str, typer.Option("--route", help="The route to evaluate.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Held-out JSONL in fine-tuning format (gold: last assistant message)."
        ),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    url: Annotated[
        str,
        typer.Option("--url", envvar="GATEWAY_URL", help="The gateway's base URL (without /v1)."),
    ] = DEFAULT_URL,
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
    as_json: AsJson = False,
) -> None:
    """Evaluate a route's candidate and fallback on a held-out set through a running gateway.

    Reports per variant accuracy (95% Wilson interval), contract pass rate, mean tokens,
    latency p50/p95, cost per 1,000 requests and errors, and candidate minus fallback. Resumable:
    run the same command again after an interruption.
    """
    from gateway.tools.cli.eval_inputs import load_examples, load_route, resume, sha256  # noqa: PLC0415
    from gateway.tools.cli.eval_output import failed_gates, write_and_print  # noqa: PLC0415
    from gateway.tools.cli.eval_run import run_pending  # noqa: PLC0415
    from gateway.tools.evaluation.report import build_report  # noqa: PLC0415

    gateway_config, route_obj = load_route(config, route)
    examples = load_examples(data, limit)
    state_path = state or out / f"{data.stem}.{route}.eval-state.jsonl"
    variants = (route_obj.candidate, route_obj.fallback)
    plan = resume(
        state_path, examples, variants, route=route, fresh=fresh, retry_errors=retry_errors
    )

    results = dict(plan.done)
    if plan.todo:
        if not api_key:
            raise AuthError(
                "no key to call the gateway with",
                "set --api-key, GATEWAY_EVAL_KEY or GATEWAY_API_KEY to a key allowed to force "
                "variants (GATEWAY_OVERRIDE_KEYS)",
            )
        complete = run_pending(
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
            raise InterruptedRunError(
                f"interrupted: {left} result(s) still to do; {len(results)} kept in {state_path}",
                "run the same command again to resume",
            )

    report = build_report(
        route_obj,
        examples,
        results,
        meta={
            "data": str(data),
            "data_sha256": sha256(data),
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
    write_and_print(report, out, as_json)
    failed = failed_gates(report)
    if failed:
        raise RejectedError(
            f"{len(failed)} gate(s) failed",
            f"the report says why: {out / 'report.md'}",
            code="gate_failed",
            problems=failed,
        )
