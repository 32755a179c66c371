"""How ``gateway eval`` sends what is left: a progress bar, the state file, Ctrl-C and SIGTERM.

:func:`run_pending` checks the gateway first (pre-flight), then sends every pair, appending each
result to the state file as soon as it arrives. The first SIGINT or SIGTERM stops sending and
waits for the requests in flight; a second one abandons them. Imported when ``gateway eval``
runs, never by ``gateway --help``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import openai
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gateway.config import GatewayConfig, Route
from gateway.tools.evaluation.heldout_examples import Example
from gateway.tools.evaluation.heldout_runner import Evaluator
from gateway.tools.evaluation.heldout_state import Result, StateWriter
from gateway.tools.exit_codes import InterruptedRunError

__all__ = ["run_pending"]


def _progress(enabled: bool) -> Progress:
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


def run_pending(
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
        EvalAbortError: 3 unreachable, 5 auth, 1 refused (its subclasses say which).
        InterruptedRunError: abandoned by a second Ctrl-C (130).
    """
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
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise InterruptedRunError(
                f"abandoned; finished results are kept in {state_path}",
                "run the same command again to resume",
            ) from None
