"""Fine-tuning jobs through the official ``openai`` SDK: create one, follow one.

* :func:`openai_client` builds the client from ``--base-url``/``OPENAI_BASE_URL`` and
  ``--api-key``/``OPENAI_API_KEY`` (the simulator's URL for the offline walkthrough).
* :func:`start_job` uploads the training (and validation) file with purpose ``fine-tune`` and
  creates the job, recording the route in the job's ``metadata`` (``gateway_route``).
* :class:`EventCursor` returns each job event once: OpenAI lists events newest first and pages
  towards older ones with ``after``, so it walks pages until it meets the newest event already
  seen, then hands the new ones over oldest first.
* :func:`follow_job` polls a job until it ends, passing new events and each status to
  callbacks (the command line renders them); ``sleep`` is injectable for tests.
* :func:`api_errors` turns SDK exceptions into :class:`JobAPIError` with the command line's
  exit codes (``gateway.tools.exit_codes``: 1 rejected, 3 unreachable or 5xx, 5 auth).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from gateway.config import Route
from gateway.tools.exit_codes import (
    EXIT_AUTH,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    CliError,
)

__all__ = [
    "ROUTE_METADATA_KEY",
    "TERMINAL_STATUSES",
    "EventCursor",
    "JobAPIError",
    "StartedJob",
    "api_errors",
    "default_base_model",
    "follow_job",
    "openai_client",
    "start_job",
]

ROUTE_METADATA_KEY = "gateway_route"
"""The job's ``metadata`` key naming the route it was made for."""

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

_PAGE = 50
_MAX_NEW_EVENTS = 10_000


class JobAPIError(CliError):
    """An API call that failed, classified: ``exit_code``, ``message`` and a ``hint``."""

    def __init__(self, exit_code: int, message: str, hint: str) -> None:
        super().__init__(message, hint, exit_code=exit_code)


@contextmanager
def api_errors(base_url: str) -> Iterator[None]:
    """Translate ``openai`` exceptions raised inside the block into :class:`JobAPIError`."""
    try:
        yield
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise JobAPIError(
            EXIT_AUTH, _message(exc), "set OPENAI_API_KEY (or --api-key) to a valid key"
        ) from None
    except openai.APIConnectionError as exc:
        raise JobAPIError(
            EXIT_UNREACHABLE,
            f"cannot reach {base_url}: {exc}",
            "set --base-url or OPENAI_BASE_URL (the simulator's, e.g. http://127.0.0.1:8001/v1)",
        ) from None
    except openai.APIStatusError as exc:
        code = EXIT_UNREACHABLE if exc.status_code >= 500 else EXIT_REJECTED
        hint = "retry later" if code == EXIT_UNREACHABLE else "check the values named above"
        raise JobAPIError(code, f"HTTP {exc.status_code}: {_message(exc)}", hint) from None
    except openai.OpenAIError as exc:
        raise JobAPIError(EXIT_REJECTED, str(exc), "see the message above") from None


def _message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message


def openai_client(base_url: str | None, api_key: str | None) -> openai.OpenAI:
    """An ``OpenAI`` client (2 retries, 60 s timeout).

    Raises:
        JobAPIError: no API key (exit 5: auth, as every missing key).
    """
    if not api_key:
        raise JobAPIError(
            EXIT_AUTH,
            "no API key",
            "set OPENAI_API_KEY or --api-key (against the simulator any value works)",
        )
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2, timeout=60.0)


@dataclass(frozen=True, slots=True)
class StartedJob:
    """A created job and the files it was given."""

    job: FineTuningJob
    training_file: str
    validation_file: str | None
    suffix: str | None

    def to_json(self, route: str) -> dict[str, Any]:
        """``{job_id, status, model, suffix, route, training_file, validation_file}``."""
        return {
            "job_id": self.job.id,
            "status": self.job.status,
            "model": self.job.model,
            "suffix": self.suffix,
            "route": route,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
        }


def start_job(
    client: openai.OpenAI,
    *,
    training: Path,
    validation: Path | None,
    model: str,
    suffix: str | None,
    route: str,
) -> StartedJob:
    """Upload the file(s) (purpose ``fine-tune``) and create the job. SDK errors propagate."""
    with training.open("rb") as stream:
        training_id = client.files.create(file=stream, purpose="fine-tune").id
    validation_id: str | None = None
    if validation is not None:
        with validation.open("rb") as stream:
            validation_id = client.files.create(file=stream, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=training_id,
        validation_file=validation_id if validation_id is not None else openai.omit,
        suffix=suffix if suffix else openai.omit,
        metadata={ROUTE_METADATA_KEY: route},
    )
    return StartedJob(job, training_id, validation_id, suffix)


class EventCursor:
    """Hands over each event of a job once, oldest first; ``last_id`` is the newest seen."""

    __slots__ = ("job_id", "last_id")

    def __init__(self, job_id: str, last_id: str | None = None) -> None:
        self.job_id = job_id
        self.last_id = last_id

    def new_events(self, client: openai.OpenAI) -> list[FineTuningJobEvent]:
        """Events newer than ``last_id`` (all of them the first time), oldest first."""
        fresh: list[FineTuningJobEvent] = []
        page = client.fine_tuning.jobs.list_events(self.job_id, limit=_PAGE)
        for event in page:  # newest first; the SDK fetches older pages with `after`
            if event.id == self.last_id or len(fresh) >= _MAX_NEW_EVENTS:
                break
            fresh.append(event)
        fresh.reverse()
        if fresh:
            self.last_id = fresh[-1].id
        return fresh


def follow_job(
    client: openai.OpenAI,
    job_id: str,
    cursor: EventCursor,
    *,
    on_events: Callable[[list[FineTuningJobEvent]], None],
    on_status: Callable[[FineTuningJob], None],
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> FineTuningJob:
    """Poll ``job_id`` every ``interval`` seconds until it ends; return the ended job.

    Each poll reads the job, then its new events (so the events of the end are never missed),
    calls ``on_events`` with them (when any) and ``on_status`` with the job.
    """
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = cursor.new_events(client)
        if events:
            on_events(events)
        on_status(job)
        if job.status in TERMINAL_STATUSES:
            return job
        sleep(interval)


def default_base_model(route: Route) -> str | None:
    """The model to fine-tune for ``route`` when ``--base-model`` is not given.

    The base of the candidate's model when it is a fine-tune (``ft:<base>:<org>:...``), else
    the fallback's model (the prompted base model), else ``None``.
    """
    candidate = route.variants.get(route.candidate)
    if candidate is not None and candidate.model.startswith("ft:"):
        base = candidate.model.split(":")[1]
        if base:
            return base
    fallback = route.variants.get(route.fallback)
    return fallback.model if fallback is not None else None
