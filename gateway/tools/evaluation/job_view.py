"""How ``gateway finetune watch`` shows a job: event lines, a status line, a result summary.

People get one line per event (local time, level, message), a rich status line (spinner,
status, last step and loss, elapsed time) that only a terminal shows, and a closing summary.
Scripts (``--json``) get one JSON object per event, then one result object::

    {"object": "gateway.finetune.result", "job_id", "status", "fine_tuned_model",
     "trained_tokens", "error": {code, message, param} | null, "registration": {...} | null}
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from rich.console import Console
from rich.status import Status
from rich.text import Text

from gateway.tools.evaluation.registration import Registration

__all__ = ["JobView", "result_json"]

_LEVEL_STYLE = {"info": "", "warn": "yellow", "error": "bold red"}


def result_json(job: FineTuningJob, registration: dict[str, Any] | None) -> dict[str, Any]:
    """The closing ``gateway.finetune.result`` object of ``--json`` output."""
    return {
        "object": "gateway.finetune.result",
        "job_id": job.id,
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "trained_tokens": job.trained_tokens,
        "error": job.error.model_dump() if job.error is not None else None,
        "registration": registration,
    }


class JobView:
    """Renders one watch; use :meth:`status` as a context manager around the polling."""

    __slots__ = ("_last_metrics", "_status", "as_json", "console", "err")

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        # soft_wrap: a line is one line also when piped (rich would wrap it at 80 columns)
        self.console = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self._status: Status | None = None
        self._last_metrics = ""

    def status(self, job_id: str) -> AbstractContextManager[object]:
        """A spinner line below the events (terminals only, cleared at the end).

        On the same console as the events, so rich keeps it below them; none with ``--json``
        (rich would redirect ``sys.stdout`` through the spinner's console).
        """
        if self.as_json:
            return nullcontext()
        self._status = self.console.status(Text(f"{job_id}: starting"), spinner="dots")
        return self._status

    def events(self, events: list[FineTuningJobEvent]) -> None:
        """Print new events, each once, oldest first."""
        for event in events:
            data = event.data if isinstance(event.data, dict) else {}
            if event.type == "metrics" and "step" in data:
                loss = data.get("train_loss")
                self._last_metrics = f"step {data['step']}/{data.get('total_steps', '?')}" + (
                    f", loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
                )
            if self.as_json:
                sys.stdout.write(json.dumps(event.model_dump(mode="json")) + "\n")
                sys.stdout.flush()
                continue
            at = datetime.fromtimestamp(event.created_at).astimezone().strftime("%H:%M:%S")
            line = Text(f"{at}  {event.level:<5}  ")
            line.append(event.message, style=_LEVEL_STYLE.get(event.level, ""))
            self.console.print(line)

    def progress(self, job: FineTuningJob) -> None:
        """Update the status line with the job's status, last metrics and elapsed time."""
        if self._status is None:
            return
        elapsed = max(0, int(time.time()) - job.created_at)
        metrics = f", {self._last_metrics}" if self._last_metrics else ""
        self._status.update(Text(f"{job.id}: {job.status}{metrics} ({elapsed}s)"))

    def finished(self, job: FineTuningJob, registration: Registration | None, route: str) -> None:
        """The closing summary (stdout for success, stderr for a failed or cancelled job)."""
        if self.as_json:
            reg = None
            if registration is not None:
                reg = {"route": route, "already": registration.already, "flag": registration.flag}
            sys.stdout.write(json.dumps(result_json(job, reg)) + "\n")
            return
        if job.status != "succeeded":
            error = job.error
            why = f": {error.message} ({error.code})" if error is not None else ""
            self.err.print(Text(f"job {job.id} {job.status}{why}", style="bold red"))
            return
        self.console.print(
            Text(
                f"job {job.id} succeeded: fine-tuned model {job.fine_tuned_model} "
                f"({job.trained_tokens} trained tokens)",
                style="bold green",
            )
        )
        if registration is None:
            return
        flag = registration.flag
        if registration.already:
            self.console.print(
                Text(f"{job.fine_tuned_model} already is the candidate of route {route}")
            )
            return
        self.console.print(
            Text(
                f"registered {job.fine_tuned_model} as the candidate of route {route} at "
                f"weight 0 (rollout {flag.get('rollout_id')}, flag version {flag.get('version')})"
            )
        )
        self.console.print(
            Text(
                f"next: gateway eval, then gateway flags set {route} --weight 1% "
                "--reason 'start the ramp'"
            )
        )
