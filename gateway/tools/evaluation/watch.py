"""``gateway finetune watch``: follow a job to its end, then (optionally) register its model.

:func:`run_watch` is the whole command apart from option parsing and error rendering:

1. load what an earlier watch of the job remembered (``watch_state``): the newest event it
   printed and whether it registered the model;
2. read the job; with ``register``, find the route (``--route``, else the job's
   ``metadata.gateway_route``) and check the gateway, the admin key and the route right away,
   rather than after a long wait;
3. poll the job every ``interval`` seconds, printing each new event once and saving the cursor
   after each batch, until the job has ended;
4. on success with ``register``: ``POST /admin/flags/{route}/candidate`` with the job's
   ``fine_tuned_model`` (weight 0; audit reason ``fine-tuning job JOB succeeded``, source
   ``fine_tuning_job:JOB``), unless this watch's state or the flag says it is done already.

So a restarted watch of a finished job prints no event again and registers nothing again: it
just reports the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from rich.text import Text

from gateway.tools.evaluation.finetune_jobs import (
    ROUTE_METADATA_KEY,
    EventCursor,
    api_errors,
    follow_job,
    openai_client,
)
from gateway.tools.evaluation.job_view import JobView
from gateway.tools.evaluation.registration import CandidateClient, Registration, register_model
from gateway.tools.evaluation.watch_state import (
    WatchState,
    default_state_dir,
    load_watch_state,
    save_watch_state,
)
from gateway.tools.exit_codes import UsageError

__all__ = ["WatchRequest", "WatchUsageError", "run_watch"]


class WatchUsageError(UsageError):
    """The options cannot work (e.g. ``--register`` without any route): exit 2, with a hint."""


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """The options of one watch (see ``gateway finetune watch --help``)."""

    job_id: str
    register: bool = False
    route: str | None = None
    url: str = "http://127.0.0.1:8000"
    admin_key: str | None = None
    interval: float = 2.0
    state_dir: Path | None = None
    base_url: str | None = None
    api_key: str | None = None


class _Memory:
    """The job's :class:`WatchState`, saved after each change; warns once if it cannot be."""

    def __init__(self, root: Path, job_id: str, view: JobView) -> None:
        self.root, self.view, self.warned = root, view, False
        self.state: WatchState = load_watch_state(root, job_id)

    def save(self) -> None:
        try:
            save_watch_state(self.root, self.state)
        except OSError as exc:
            if not self.warned:
                self.view.err.print(Text(f"warning: cannot save watch state in {self.root}: {exc}"))
                self.warned = True


def run_watch(request: WatchRequest, view: JobView) -> FineTuningJob:
    """Follow ``request.job_id`` to its end (see the module docstring); return the ended job.

    The caller turns a failed or cancelled job into exit 1.

    Raises:
        JobAPIError: the API refused a call or could not be reached.
        AdminAPIError: the gateway could not be reached or refused the registration.
        WatchUsageError: ``register`` without a route to register for.
        KeyboardInterrupt: the person stopped the watch (the job goes on).
    """
    memory = _Memory(request.state_dir or default_state_dir(), request.job_id, view)
    cursor = EventCursor(request.job_id, memory.state.last_event_id)

    def on_events(events: list[FineTuningJobEvent]) -> None:
        view.events(events)
        memory.state.last_event_id = cursor.last_id
        memory.save()

    client = openai_client(request.base_url, request.api_key)
    with api_errors(str(client.base_url)):
        job = client.fine_tuning.jobs.retrieve(request.job_id)
        route = request.route or (job.metadata or {}).get(ROUTE_METADATA_KEY)
        if request.register and not route:
            raise WatchUsageError(
                f"job {request.job_id} names no route in its metadata", "give --route"
            )
        if request.register and route and memory.state.registered_model is None:
            with CandidateClient(request.url, request.admin_key) as admin:
                admin.flag(route)  # fail fast: gateway, key and route before the long wait
        with view.status(request.job_id):
            job = follow_job(
                client,
                request.job_id,
                cursor,
                on_events=on_events,
                on_status=view.progress,
                interval=request.interval,
            )
    registration: Registration | None = None
    model = job.fine_tuned_model
    if job.status == "succeeded" and request.register and route and model:
        if memory.state.registered_model == model:
            registration = Registration({"route": route, "candidate_model": model}, True)
        else:
            with CandidateClient(request.url, request.admin_key) as admin:
                registration = register_model(admin, route, model, request.job_id)
            memory.state.registered_model = model
            memory.save()
    view.finished(job, registration, route or "")
    return job
