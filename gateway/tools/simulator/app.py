"""``create_simulator_app``: the Litestar app of the simulator, with its control endpoints.

Endpoints (``/v1/*`` require ``Authorization: Bearer <api_key>`` when the config sets one; the
others never do, they are for tests and demos on a trusted machine):

* ``POST /v1/chat/completions``: see ``gateway.tools.simulator.chat``.
* ``POST /v1/embeddings``, ``POST /v1/completions``: see ``gateway.tools.simulator.embeddings``
  and ``gateway.tools.simulator.completions``.
* ``POST /v1/responses``: see ``gateway.tools.simulator.responses_api``.
* ``GET /v1/models``: ``{"object": "list", "data": [{"id", "object": "model", "created",
  "owned_by": "simulator"}]}`` for the configured models (and any given a runtime behaviour).
* ``GET /healthz``: ``{"status": "ok"}``.
* ``GET /_simulator/models``: ``{"default": behaviour, "models": {name: behaviour}}``.
* ``PUT /_simulator/models/{model}``: body is a partial ``ModelBehaviour`` merged into the
  model's live behaviour; returns the new behaviour (400 envelope on a bad field).
* ``DELETE /_simulator/models/{model}``: drops runtime changes; returns the configured (or
  default) behaviour.
* ``GET /_simulator/stats``: ``{"models": {name: counters}, "totals": counters}`` (``ModelStats``).
* ``POST /_simulator/stats/reset``: zeroes the counters; returns the (empty) stats.
* ``/v1/files`` and ``/v1/fine_tuning/jobs``: see ``gateway.tools.simulator.files`` and
  ``gateway.tools.simulator.finetune_api`` (``GET/PUT /_simulator/finetune`` paces the jobs; the
  environment variable ``GATEWAY_SIM_FINETUNE_SECONDS`` sets their initial duration).

Every error, including Litestar's own 404/405, uses OpenAI's error envelope.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from gateway.tools.simulator import responses
from gateway.tools.simulator.behaviour import SimulatorConfig, SimulatorConfigError
from gateway.tools.simulator.chat import authorized, chat_completions, simulator_state
from gateway.tools.simulator.completions import completions
from gateway.tools.simulator.embeddings import embeddings
from gateway.tools.simulator.files import FileStore, create_file, file_content, retrieve_file
from gateway.tools.simulator.finetune import FineTuneStore
from gateway.tools.simulator.finetune_api import finetune_handlers
from gateway.tools.simulator.finetune_plan import settings_from_environment
from gateway.tools.simulator.responses_api import create_response
from gateway.tools.simulator.state import SimulatorState

__all__ = ["create_simulator_app"]

_JSON = "application/json"


def _json(payload: object, status: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(payload), status_code=status, media_type=_JSON)


def _model_name(model: str) -> str:
    # `{model:path}` keeps names such as "org/model" whole but hands them over with a leading "/".
    return model.lstrip("/")


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> Response[bytes]:
    """List the configured model names in OpenAI's list format (401 without the key)."""
    state = simulator_state(request)
    if not authorized(state, request):
        return Response(responses.error_body(401), status_code=401, media_type=_JSON)
    created = responses.now()
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "simulator"}
        for name in state.model_names()
    ]
    return _json({"object": "list", "data": data})


@get("/healthz")
async def healthz() -> Response[bytes]:
    """Liveness: always ``{"status": "ok"}``."""
    return _json({"status": "ok"})


@get("/_simulator/models")
async def get_behaviours(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The default behaviour and every known model's live behaviour."""
    return _json(simulator_state(request).behaviours())


@put("/_simulator/models/{model:path}")
async def put_behaviour(request: Request[Any, Any, Any], model: FromPath[str]) -> Response[bytes]:
    """Merge a partial behaviour (JSON object) into ``model``'s; 400 envelope when invalid."""
    try:
        patch = msgspec.json.decode(await request.body(), type=dict[str, Any])
        behaviour = simulator_state(request).update_behaviour(_model_name(model), patch)
    except (msgspec.DecodeError, SimulatorConfigError) as exc:
        return Response(responses.error_body(400, str(exc)), status_code=400, media_type=_JSON)
    return _json(behaviour)


@delete("/_simulator/models/{model:path}", status_code=200)
async def delete_behaviour(
    request: Request[Any, Any, Any], model: FromPath[str]
) -> Response[bytes]:
    """Reset ``model`` to its configured (or the default) behaviour and return it."""
    return _json(simulator_state(request).reset_behaviour(_model_name(model)))


@get("/_simulator/stats")
async def get_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Per-model and total counters; see ``ModelStats``."""
    return _json(simulator_state(request).stats_snapshot())


@post("/_simulator/stats/reset", status_code=200)
async def reset_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Zero every counter and return the now empty stats."""
    state = simulator_state(request)
    state.reset_stats()
    return _json(state.stats_snapshot())


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Render Litestar's own errors (404, 405, ...) in OpenAI's envelope, ``code`` null."""
    status = exc.status_code
    message = f"{exc.detail} ({request.method} {request.url.path})"
    body = responses.error_body(status, message, default_code=False)
    return Response(body, status_code=status, media_type=_JSON)


def create_simulator_app(config: SimulatorConfig) -> Litestar:
    """Build a simulator app whose state (behaviours, RNG, counters) belongs to it alone.

    Args:
        config: the simulator configuration, e.g. from ``load_simulator_config``.

    Returns:
        A Litestar ASGI app; serve it with uvicorn (``run_simulator``) or test it in-process.
    """
    simulator = SimulatorState(config)
    files = FileStore()
    finetune = FineTuneStore(simulator, files, settings_from_environment())
    return Litestar(
        route_handlers=[
            chat_completions,
            embeddings,
            completions,
            create_response,
            list_models,
            healthz,
            get_behaviours,
            put_behaviour,
            delete_behaviour,
            get_stats,
            reset_stats,
            create_file,
            retrieve_file,
            file_content,
            *finetune_handlers(),
        ],
        state=State({"simulator": simulator, "files": files, "finetune": finetune}),
        exception_handlers={HTTPException: _http_exception},
        openapi_config=None,
    )
