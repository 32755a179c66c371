"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning endpoints over the simulator's job store.

Endpoints (``Authorization: Bearer <api_key>`` when the simulator config sets one):

* ``POST /v1/fine_tuning/jobs``: ``{model, training_file, validation_file?, suffix? (<= 64
  chars), seed?, hyperparameters? | method.supervised.hyperparameters?, metadata?}``; answers
  the new ``fine_tuning.job`` (status ``validating_files``). 400 envelope with ``param`` for a
  bad body, an unknown file or a file not uploaded with purpose ``fine-tune``.
* ``GET /v1/fine_tuning/jobs?after=&limit=``: jobs newest first, ``{"object": "list", "data",
  "has_more"}``; ``after`` is the id of the last job of the previous page.
* ``GET /v1/fine_tuning/jobs/{id}``: one job (404 envelope when unknown).
* ``GET /v1/fine_tuning/jobs/{id}/events?after=&limit=``: its events, newest first, as OpenAI
  sends them; ``after`` is the id of the last (oldest) event of the previous page, so a
  follower walks pages until it meets the newest event it has already seen.
* ``POST /v1/fine_tuning/jobs/{id}/cancel``: cancels a job that has not ended (400 otherwise).
* ``GET /_simulator/finetune`` and ``PUT /_simulator/finetune`` (partial
  ``FineTuneSettings``, e.g. ``{"seconds": 1}``): read and change how new jobs behave.

``limit`` is 1..100 (default 20); anything else is a 400 envelope naming ``limit``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, Response, get, post, put
from litestar.params import FromPath

from gateway.tools.simulator import responses
from gateway.tools.simulator.chat import authorized, simulator_state
from gateway.tools.simulator.finetune import FineTuneError, FineTuneStore
from gateway.tools.simulator.finetune_plan import FineTuneSettings

__all__ = [
    "CreateJobRequest",
    "cancel_job",
    "create_job",
    "finetune_handlers",
    "get_settings",
    "list_events",
    "list_jobs",
    "put_settings",
    "resolve_hyperparameters",
    "retrieve_job",
]

_JSON = "application/json"
_T = TypeVar("_T")
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "n_epochs": 3,
    "batch_size": 1,
    "learning_rate_multiplier": 1.8,
}
"""What ``"auto"`` (or nothing) resolves to, as OpenAI reports the values it chose."""


class CreateJobRequest(msgspec.Struct, kw_only=True):
    """The fields of ``POST /v1/fine_tuning/jobs`` the simulator reads (others are ignored)."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    training_file: Annotated[str, msgspec.Meta(min_length=1)]
    validation_file: str | None = None
    suffix: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    seed: int | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None


def resolve_hyperparameters(request: CreateJobRequest) -> dict[str, Any]:
    """``n_epochs``/``batch_size``/``learning_rate_multiplier``, ``"auto"`` made concrete.

    Reads ``method.supervised.hyperparameters``, else the deprecated ``hyperparameters``.

    Raises:
        FineTuneError: 400 when a value is neither ``"auto"`` nor a positive number.
    """
    given: Any = request.hyperparameters or {}
    if isinstance(request.method, dict):
        supervised = request.method.get("supervised")
        if isinstance(supervised, dict) and isinstance(supervised.get("hyperparameters"), dict):
            given = supervised["hyperparameters"]
    resolved = dict(DEFAULT_HYPERPARAMETERS)
    for name, default in DEFAULT_HYPERPARAMETERS.items():
        value = given.get(name, "auto") if isinstance(given, dict) else "auto"
        if value == "auto" or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise FineTuneError(400, f"{name} must be 'auto' or a positive number", name)
        resolved[name] = type(default)(value)
    return resolved


def _store(request: Request[Any, Any, Any]) -> FineTuneStore:
    store: FineTuneStore = request.app.state.finetune
    return store


def _json(payload: object, status: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


def _error(exc: FineTuneError) -> Response[bytes]:
    body = responses.error_body(exc.status, exc.message, param=exc.param, default_code=False)
    return Response(body, status_code=exc.status, media_type=_JSON)


def _unauthorized(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    if authorized(simulator_state(request), request):
        return None
    return Response(responses.error_body(401), status_code=401, media_type=_JSON)


def _page(request: Request[Any, Any, Any], items: Sequence[_T], ids: Sequence[str]) -> Any:
    """OpenAI's cursor page of ``items`` (newest first) from ``after`` and ``limit``."""
    raw_limit = request.query_params.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        message = f"limit must be an integer from 1 to 100, got {raw_limit!r}"
        raise FineTuneError(400, message, "limit")
    limit = int(raw_limit)
    after = request.query_params.get("after")
    start = ids.index(after) + 1 if after in ids else 0
    chunk = list(items[start : start + limit])
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


@post("/v1/fine_tuning/jobs", status_code=200)
async def create_job(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create a job; see the module docstring for the body and errors."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    try:
        body = msgspec.json.decode(await request.body(), type=CreateJobRequest)
    except msgspec.ValidationError as exc:
        found = re.search(r"`\$\.(\w+)|field `(\w+)`", str(exc))
        param = (found.group(1) or found.group(2)) if found else None
        return _error(FineTuneError(400, f"Invalid request body: {exc}", param))
    except msgspec.DecodeError as exc:
        return _error(FineTuneError(400, f"Invalid request body: {exc}"))
    try:
        fields = msgspec.structs.asdict(body)
        fields["hyperparameters"] = resolve_hyperparameters(body)
        fields = {k: v for k, v in fields.items() if v is not None and k != "method"}
        store = _store(request)
        job = store.create(fields)
    except FineTuneError as exc:
        return _error(exc)
    return _json(job.to_openai(store.settings.organization))


@get("/v1/fine_tuning/jobs")
async def list_jobs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Jobs newest first, paginated by ``after`` and ``limit``."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    store = _store(request)
    jobs = store.jobs()
    views = [job.to_openai(store.settings.organization) for job in jobs]
    try:
        return _json(_page(request, views, [job.id for job in jobs]))
    except FineTuneError as exc:
        return _error(exc)


@get("/v1/fine_tuning/jobs/{job_id:str}")
async def retrieve_job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[bytes]:
    """One job as it is now."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    store = _store(request)
    try:
        return _json(store.get(job_id).to_openai(store.settings.organization))
    except FineTuneError as exc:
        return _error(exc)


@get("/v1/fine_tuning/jobs/{job_id:str}/events")
async def list_events(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[bytes]:
    """A job's events newest first, paginated by ``after`` (an event id) and ``limit``."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    try:
        events = list(reversed(_store(request).get(job_id).events))
        return _json(_page(request, events, [event["id"] for event in events]))
    except FineTuneError as exc:
        return _error(exc)


@post("/v1/fine_tuning/jobs/{job_id:str}/cancel", status_code=200)
async def cancel_job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[bytes]:
    """Cancel a job that has not ended yet."""
    if (denied := _unauthorized(request)) is not None:
        return denied
    store = _store(request)
    try:
        return _json(store.cancel(job_id).to_openai(store.settings.organization))
    except FineTuneError as exc:
        return _error(exc)


@get("/_simulator/finetune")
async def get_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The live ``FineTuneSettings``."""
    return _json(_store(request).settings)


@put("/_simulator/finetune")
async def put_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Merge a partial ``FineTuneSettings`` (e.g. ``{"seconds": 1}``); 400 when invalid."""
    store = _store(request)
    try:
        patch = msgspec.json.decode(await request.body(), type=dict[str, Any])
        merged = {**msgspec.structs.asdict(store.settings), **patch}
        store.settings = msgspec.convert(merged, FineTuneSettings)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _error(FineTuneError(400, f"invalid fine-tuning settings: {exc}"))
    return _json(store.settings)


def finetune_handlers() -> list[Any]:
    """Every handler of this module, for ``create_simulator_app``."""
    return [
        create_job,
        list_jobs,
        retrieve_job,
        list_events,
        cancel_job,
        get_settings,
        put_settings,
    ]
