"""The pure side of simulated fine-tuning: settings, the training-file check, the timeline.

A job is planned once, when created, as a timeline of :class:`Step` at fractions of
``FineTuneSettings.seconds`` after creation (``gateway.tools.simulator.finetune`` plays it out):

====  =========================================================================================
0.00  ``validating_files``: "Created fine-tuning job", "Validating training file"
0.25  ``queued``, or ``failed`` (``error.code`` ``invalid_training_file``) when the training file
      is not JSONL chat examples, has fewer than 10, or a user message contains the marker
      (``#fail-finetune``)
0.35  ``running``: "Fine-tuning job started", then ``metric_steps`` metrics events (``step``,
      ``total_steps``, ``train_loss``, ``train_mean_token_accuracy``) up to 0.85; with the
      suffix ``fail`` the job ``failed`` (``training_failed``) halfway through them
1.00  ``succeeded``: "New fine-tuned model created: ft:<base>:<org>:<suffix>:<id>", done
====  =========================================================================================
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from gateway.tools.simulator.behaviour import SimulatorConfigError
from gateway.tools.simulator.responses import count_prompt_tokens

__all__ = [
    "MIN_EXAMPLES",
    "PACE_ENV",
    "TERMINAL",
    "FineTuneSettings",
    "Step",
    "TrainingFileReport",
    "inspect_training_file",
    "plan_timeline",
    "settings_from_environment",
]

MIN_EXAMPLES = 10
"""OpenAI refuses training files with fewer chat examples than this."""

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class FineTuneSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How simulated jobs behave; ``GET/PUT /_simulator/finetune`` reads and changes them.

    Attributes:
        seconds: a job's duration from creation to its end, seconds (tests use ~1).
        accuracy: the accuracy of the models jobs produce (at least the base model's).
        organization: the ``<org>`` part of ``ft:<base>:<org>:<suffix>:<id>``.
        fail_marker: a user message containing this fails the job at validation.
        metric_steps: how many metrics events a running job reports.
    """

    seconds: Annotated[float, msgspec.Meta(ge=0.0, le=3600.0)] = 3.0
    accuracy: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.97
    organization: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = "acme"
    fail_marker: Annotated[str, msgspec.Meta(min_length=1)] = "#fail-finetune"
    metric_steps: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4


PACE_ENV = "GATEWAY_SIM_FINETUNE_SECONDS"
"""Environment variable with the initial ``FineTuneSettings.seconds`` (e.g. ``1`` in tests)."""


def settings_from_environment() -> FineTuneSettings:
    """Default settings, with ``seconds`` from ``GATEWAY_SIM_FINETUNE_SECONDS`` when set.

    Raises:
        SimulatorConfigError: the variable is not a number of seconds from 0 to 3600.
    """
    seconds = os.environ.get(PACE_ENV, "").strip()
    if not seconds:
        return FineTuneSettings()
    try:
        return msgspec.convert({"seconds": float(seconds)}, FineTuneSettings)
    except (ValueError, msgspec.ValidationError) as exc:
        raise SimulatorConfigError(f"{PACE_ENV}={seconds!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TrainingFileReport:
    """What the simulator's "validation" finds in a training file.

    ``problem`` is the failure message (``None`` when the file trains); ``tokens`` sums the
    simulator's token count (``count_prompt_tokens``) over the examples.
    """

    examples: int
    tokens: int
    problem: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """One point of a job's timeline, at ``at`` x the job's duration after creation."""

    at: float
    message: str
    status: str | None = None
    type: str = "message"
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


def inspect_training_file(content: bytes, marker: str) -> TrainingFileReport:
    """Check a training file the way the simulator's jobs do (first problem only, like OpenAI).

    Each non-blank line must be UTF-8 JSON with a ``messages`` list; a user message whose
    content contains ``marker`` is a deliberate failure; fewer than ``MIN_EXAMPLES`` fail too.
    """
    examples = tokens = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return TrainingFileReport(examples, tokens, f"line {number} is not valid JSON")
        messages = item.get("messages") if isinstance(item, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return TrainingFileReport(
                examples, tokens, f"line {number} has no 'messages' list of objects"
            )
        for message in messages:
            content_text = message.get("content")
            if (
                message.get("role") == "user"
                and isinstance(content_text, str)
                and marker in content_text
            ):
                return TrainingFileReport(
                    examples, tokens, f"line {number} contains {marker} (simulated failure)"
                )
        examples += 1
        tokens += count_prompt_tokens(messages)
    if examples < MIN_EXAMPLES:
        return TrainingFileReport(
            examples,
            tokens,
            f"the training file has {examples} example(s), but must have at least {MIN_EXAMPLES}",
        )
    return TrainingFileReport(examples, tokens, None)


def plan_timeline(
    *,
    job_id: str,
    training_file: str,
    report: TrainingFileReport,
    suffix: str | None,
    fine_tuned_model: str,
    n_epochs: int,
    metric_steps: int,
) -> tuple[Step, ...]:
    """The whole life of a job, decided at creation (pure; see the module table)."""
    steps = [
        Step(0.0, f"Created fine-tuning job: {job_id}", status="validating_files"),
        Step(0.0, f"Validating training file: {training_file}"),
    ]
    if report.problem is not None:
        message = f"The job failed due to an invalid training file: {report.problem}."
        invalid = {"code": "invalid_training_file", "message": message, "param": "training_file"}
        return (*steps, Step(0.25, message, status="failed", level="error", error=invalid))
    total = max(1, report.examples * n_epochs)
    steps.append(Step(0.25, "Files validated, moving job to queued state", status="queued"))
    steps.append(Step(0.35, "Fine-tuning job started", status="running"))
    fail_at = math.ceil(metric_steps / 2) if suffix == "fail" else None
    for index in range(1, metric_steps + 1):
        at = 0.35 + 0.5 * index / metric_steps
        step = max(1, round(total * index / metric_steps))
        if index == fail_at:
            message = (
                f"Fine-tuning failed: the training loss diverged at step {step} "
                "(simulated: suffix 'fail')."
            )
            error: dict[str, Any] = {
                "code": "training_failed",
                "message": message,
                "param": None,
            }
            return (*steps, Step(at, message, status="failed", level="error", error=error))
        loss = round(0.05 + 1.9 * 0.45**index, 4)
        accuracy = round(1.0 - loss / 2.2, 4)
        data = {
            "step": step,
            "total_steps": total,
            "train_loss": loss,
            "train_mean_token_accuracy": accuracy,
        }
        message = f"Step {step}/{total}: training loss={loss:.4f}"
        steps.append(Step(at, message, type="metrics", data=data))
    steps.append(Step(1.0, f"New fine-tuned model created: {fine_tuned_model}"))
    steps.append(Step(1.0, "The job has successfully completed", status="succeeded"))
    return tuple(steps)
