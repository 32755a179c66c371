"""Simulated fine-tuning jobs: the store that plays out each job's planned timeline.

Each job's life is decided at creation by ``finetune_plan.plan_timeline``; reads reveal the
steps whose time has come (no background task, so a test's fake clock drives it exactly).

On success the store registers the new model in the :class:`SimulatorState`: the base model's
live behaviour with ``accuracy = max(settings.accuracy, base accuracy)`` and no invalid labels,
so a held-out evaluation shows the fine-tune beating its base. Shapes follow OpenAI's spec
(``FineTuningJob``, ``FineTuningJobEvent``); the HTTP side is
``gateway.tools.simulator.finetune_api``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.tools.simulator.behaviour import merge_behaviour
from gateway.tools.simulator.files import FileStore
from gateway.tools.simulator.finetune_plan import (
    TERMINAL,
    FineTuneSettings,
    Step,
    inspect_training_file,
    plan_timeline,
)
from gateway.tools.simulator.state import SimulatorState

__all__ = ["FineTuneError", "FineTuneStore", "Job"]


class FineTuneError(Exception):
    """A request the API refuses: ``status`` (400, 404), ``message`` and the ``param``."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass(slots=True)
class Job:
    """A job and how far its timeline has been revealed (``events`` are chronological).

    ``born`` (Unix seconds) and ``start`` (the store's monotonic clock) mark its creation;
    each event is stamped with its step's due time, ``born + at * seconds``.
    """

    id: str
    created_at: int
    born: float
    start: float
    seconds: float
    request: dict[str, Any]
    hyperparameters: dict[str, Any]
    planned_model: str
    trained_tokens: int
    timeline: tuple[Step, ...]
    status: str = "validating_files"
    revealed: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    finished_at: int | None = None

    def to_openai(self, organization: str) -> dict[str, Any]:
        """The ``fine_tuning.job`` object (OpenAI's ``FineTuningJob`` schema)."""
        done = self.status == "succeeded"
        request = self.request
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": request["model"],
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.planned_model if done else None,
            "organization_id": f"org-{organization}",
            "result_files": [],
            "status": self.status,
            "validation_file": request.get("validation_file"),
            "training_file": request["training_file"],
            "hyperparameters": self.hyperparameters,
            "trained_tokens": self.trained_tokens if done else None,
            "error": self.error,
            "integrations": [],
            "seed": request["seed"],
            "estimated_finish": None if self.status in TERMINAL else int(self.born + self.seconds),
            "metadata": request.get("metadata"),
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": self.hyperparameters},
            },
            "user_provided_suffix": request.get("suffix"),
        }


class FineTuneStore:
    """The jobs of one simulator app; reading a job first reveals the steps that are due.

    ``clock`` (monotonic seconds) paces timelines and ``wall`` (Unix seconds) stamps
    ``created_at``; tests may replace either. Handlers share one event loop: no lock.
    """

    __slots__ = ("_jobs", "clock", "files", "rng", "settings", "state", "wall")

    def __init__(
        self,
        state: SimulatorState,
        files: FileStore,
        settings: FineTuneSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.state, self.files = state, files
        self.settings = settings or FineTuneSettings()
        self.clock, self.wall = clock, wall
        self.rng = random.Random(state.config.seed)  # noqa: S311 - simulation, not cryptography
        self._jobs: dict[str, Job] = {}

    def create(self, request: dict[str, Any]) -> Job:
        """Plan and start a job from a validated create request (see ``finetune_api``).

        Raises:
            FineTuneError: 400 when a file id is unknown or not uploaded for ``fine-tune``.
        """
        for param in ("training_file", "validation_file"):
            file_id = request.get(param)
            if file_id is None:
                continue
            stored = self.files.get(file_id)
            if stored is None:
                raise FineTuneError(400, f"Invalid {param}: no such file {file_id!r}.", param)
            if stored.purpose != "fine-tune":
                raise FineTuneError(
                    400, f"File {file_id} has purpose {stored.purpose!r}, not 'fine-tune'.", param
                )
        training = self.files.get(request["training_file"])
        assert training is not None
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        born = self.wall()
        settings = self.settings
        model_name = (
            f"ft:{request['model']}:{settings.organization}:{request.get('suffix') or ''}:"
            f"{job_id[-8:]}"
        )
        report = inspect_training_file(training.content, settings.fail_marker)
        hyper = request["hyperparameters"]
        request.setdefault("seed", self.rng.randrange(2**31))
        job = Job(
            id=job_id,
            created_at=int(born),
            born=born,
            start=self.clock(),
            seconds=settings.seconds,
            request=request,
            hyperparameters=hyper,
            planned_model=model_name,
            trained_tokens=report.tokens * int(hyper["n_epochs"]),
            timeline=plan_timeline(
                job_id=job_id,
                training_file=training.id,
                report=report,
                suffix=request.get("suffix"),
                fine_tuned_model=model_name,
                n_epochs=int(hyper["n_epochs"]),
                metric_steps=settings.metric_steps,
            ),
        )
        self._jobs[job_id] = job
        self._advance(job, creating=True)
        return job

    def get(self, job_id: str) -> Job:
        """The job, its due steps revealed. Raises FineTuneError 404 when unknown."""
        job = self._jobs.get(job_id)
        if job is None:
            message = f"No fine-tuning job with id {job_id!r}."
            raise FineTuneError(404, message, "fine_tuning_job_id")
        self._advance(job)
        return job

    def jobs(self) -> list[Job]:
        """Every job, newest first, due steps revealed."""
        for job in self._jobs.values():
            self._advance(job)
        return list(reversed(self._jobs.values()))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not ended. Raises FineTuneError 404 unknown, 400 ended."""
        job = self.get(job_id)
        if job.status in TERMINAL:
            raise FineTuneError(400, f"Job {job_id} has already ended ({job.status}).", None)
        job.timeline = job.timeline[: job.revealed]
        cancelled = Step(0.0, "Fine-tuning job cancelled", status="cancelled")
        self._apply(job, cancelled, self.wall())
        return job

    def _advance(self, job: Job, *, creating: bool = False) -> None:
        """Reveal the steps that are due (when ``creating``: only those at time 0)."""
        elapsed = self.clock() - job.start
        while job.revealed < len(job.timeline):
            step = job.timeline[job.revealed]
            due = step.at == 0.0 if creating else step.at * job.seconds <= elapsed
            if not due:
                break
            job.revealed += 1
            self._apply(job, step, job.born + step.at * job.seconds)

    def _apply(self, job: Job, step: Step, when: float) -> None:
        """Record ``step`` as an event at ``when`` (Unix seconds, the step's due time)."""
        stamp = int(when)
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{uuid.uuid4().hex[:24]}",
                "created_at": stamp,
                "level": step.level,
                "message": step.message,
                "data": step.data,
                "type": step.type,
            }
        )
        if step.status is None:
            return
        job.status = step.status
        if step.status in TERMINAL:
            job.finished_at = stamp
            job.error = step.error
        if step.status == "succeeded":
            self._register_model(job)

    def _register_model(self, job: Job) -> None:
        base = self.state.behaviour_for(job.request["model"])
        better = merge_behaviour(
            base,
            {"accuracy": max(self.settings.accuracy, base.accuracy), "invalid_label_rate": 0.0},
        )
        self.state.update_behaviour(job.planned_model, msgspec.structs.asdict(better))
