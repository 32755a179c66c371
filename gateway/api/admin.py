"""The control plane under ``/admin/`` (admin keys only; a client key gets 403).

Admin credentials are a bearer admin key or the console's session cookie, whose state-changing
requests must carry its CSRF token (:mod:`gateway.api.admin_guard`).

Every write needs a ``reason`` and is compare-and-set on the flag's ``version``, given as
``If-Match: "<version>"`` or as ``version`` in the body; a stale version gets 409 with the
current state. Errors use the same OpenAI-style envelope as the data plane: 400 malformed body,
401/403 keys, 404 unknown route, 409 conflict, 422 unacceptable values, 503 store unavailable.
Litestar documents these endpoints at ``/admin/openapi`` (``/admin/openapi/openapi.json``).

The latch is absolute: on a rolled-back flag, a change that could send traffic to the candidate
(weight, enabling, adding to a candidate list) is 409 ``rolled_back`` whose message names the
release command; registering a candidate records it at weight 0 and leaves the flag rolled back.
A write that changes nothing answers 200 with the unchanged flag (same version and ETag) and
writes no audit entry.

Progressive delivery: ``POST /admin/flags/{route}/ramp/pause`` and ``.../ramp/resume`` steer a
route's ramp (same conventions: reason, compare-and-set; 422 ``no_ramp`` for a route without
``ramp:``, 409 ``ramp_stopped`` to pause a ramp a rollback ended, 409 ``rolled_back`` to resume
it), and ``GET /admin/routes`` shows each route's ``ramp`` (``None`` without one).

Who serves what: ``GET /admin/routes`` lists, per route, each live replica's served version
and source (from the replicas' heartbeats in the store), ``lagging`` when behind the newest;
``GET /admin/flags/{route}`` says in ``x-gateway-flag-source`` whether it shows the store's
state (``store``), this replica's snapshot because the store lacks or is behind it
(``snapshot``, a restore is due) or the routes file's initial flag (``routes_file``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, patch, post
from litestar.datastructures import ResponseHeader
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from gateway.api.admin_guard import admin_guard, admin_identity
from gateway.errors import InvalidRequestError
from gateway.flags.changes import AuditEntry, FlagPatch
from gateway.flags.store import ReplicaBeat
from gateway.routing import FlagState

__all__ = [
    "FLAG_SOURCE_HEADER",
    "AuditPage",
    "FlagPatchRequest",
    "RampRequest",
    "ReleaseRequest",
    "ReplicaView",
    "RollbackRequest",
    "RouteView",
    "admin_handlers",
    "replica_views",
]

FLAG_SOURCE_HEADER = "x-gateway-flag-source"
"""Response header of ``GET /admin/flags/{route}``: ``store``, ``snapshot`` or ``routes_file``."""


class FlagPatchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /admin/flags/{route}``: fields to change (lists replace lists) and why."""

    reason: str | None = None
    version: int | None = None
    enabled: bool | None = None
    weight: int | None = None
    candidate_subjects: list[str] | None = None
    fallback_subjects: list[str] | None = None
    candidate_keys: list[str] | None = None
    fallback_keys: list[str] | None = None


class RollbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/flags/{route}/rollback``."""

    reason: str | None = None
    version: int | None = None


class ReleaseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/flags/{route}/release``; ``weight`` optionally restarts the ramp."""

    reason: str | None = None
    version: int | None = None
    weight: int | None = None


class RegisterCandidateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/flags/{route}/candidate``: serve ``model`` as the candidate, at weight 0.

    On an active flag this starts a new rollout; on a rolled-back flag the model is recorded and
    the flag stays rolled back until ``release``. The model that already is the candidate's:
    200 with the flag unchanged.

    ``source`` says where the model comes from (e.g. ``fine_tuning_job:ftjob-abc``); it is
    kept in the audit entry's evidence.
    """

    model: str
    reason: str | None = None
    source: str | None = None
    version: int | None = None


class VariantView(msgspec.Struct):
    upstream: str
    model: str
    role: str
    requests: int
    errors: int


class ReplicaView(msgspec.Struct):
    """One live replica's view of a route, from its latest heartbeat.

    ``version`` is the flag version it serves (``None``: no flag loaded, it serves the
    fallback); ``source`` is ``store``, ``snapshot``, ``routes_file`` or ``none``; ``age_s`` is
    the heartbeat's age in seconds; ``lagging`` is true when another replica (or the store)
    serves a newer version; ``generation`` is the store generation it synced with.
    """

    replica: str
    version: int | None
    source: str
    generation: str | None
    age_s: float
    lagging: bool


class RouteView(msgspec.Struct):
    """One route as ``GET /admin/routes`` shows it; ``flag`` is this replica's snapshot."""

    name: str
    description: str
    candidate: str
    fallback: str
    variants: dict[str, VariantView]
    flag: FlagState | None
    guard: dict[str, Any] | None = None
    replicas: list[ReplicaView] = msgspec.field(default_factory=list)
    ramp: dict[str, Any] | None = None
    """``None`` without ``ramp:``, else :meth:`gateway.quality.ramper.Ramper.view`."""


class RampRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /admin/flags/{route}/ramp/pause`` and ``.../ramp/resume``."""

    reason: str | None = None
    version: int | None = None


def replica_views(route: str, beats: list[ReplicaBeat], now: float) -> list[ReplicaView]:
    """Each heartbeat's view of ``route``, ``lagging`` when below the newest version seen."""
    newest = max((b.versions.get(route, -1) for b in beats), default=-1)
    return [
        ReplicaView(
            replica=b.replica,
            version=b.versions.get(route),
            source=b.sources.get(route, "none"),
            generation=b.generation,
            age_s=round(max(0.0, now - b.at), 3),
            lagging=b.versions.get(route, -1) < newest,
        )
        for b in beats
    ]


class AuditPage(msgspec.Struct):
    data: list[AuditEntry]


IfMatch = Annotated[str | None, HeaderParameter(name="if-match")]
"""The flag version a write is based on, as an HTTP entity tag: ``If-Match: "3"``."""


def _expected_version(if_match: str | None, body_version: int | None) -> int | None:
    """The version a write is based on: ``If-Match`` if given, else the body's ``version``."""
    header = _if_match(if_match)
    return header if header is not None else body_version


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(
            'If-Match must be the flag version, e.g. If-Match: "3".', param="If-Match"
        ) from None


def admin_handlers(gw: Any) -> list[Any]:
    """Admin handlers bound to ``gw`` (a :class:`gateway.app.Gateway`)."""
    flags = gw.flags
    auth = gw.admin_auth
    # A guard runs before the body and parameters are parsed: without valid admin credentials,
    # 401/403 comes first, whatever the request holds.
    require_admin = admin_guard(auth)

    def actor(request: Request[Any, Any, Any]) -> str:
        return admin_identity(auth, request).actor

    def flag_response(state: FlagState, **headers: str) -> Response[FlagState]:
        return Response(state, status_code=200, headers={"etag": f'"{state.version}"', **headers})

    @get(
        "/admin/routes",
        summary="Every route with variants, flag and counters",
        guards=[require_admin],
    )
    async def list_routes(request: Request[Any, Any, Any]) -> list[RouteView]:
        actor(request)
        counts = gw.telemetry.counts
        beats = await flags.replicas()
        now = time.time()
        views = []
        for name, route in gw.config.routes.items():
            if route.passthrough:
                continue
            variants = {
                vname: VariantView(
                    upstream=v.upstream,
                    model=v.model,
                    role="candidate"
                    if vname == route.candidate
                    else "fallback"
                    if vname == route.fallback
                    else "other",
                    requests=counts.get((name, vname), (0, 0))[0],
                    errors=counts.get((name, vname), (0, 0))[1],
                )
                for vname, v in route.variants.items()
            }
            views.append(
                RouteView(
                    name=name,
                    description=route.description,
                    candidate=route.candidate,
                    fallback=route.fallback,
                    variants=variants,
                    flag=flags.flag(name),
                    guard=gw.guard_state(name),
                    replicas=replica_views(name, beats, now),
                    ramp=gw.ramper.view(name),
                )
            )
        return views

    @get(
        "/admin/flags/{route:str}",
        summary="A route's flag as stored now",
        guards=[require_admin],
        response_headers=[
            ResponseHeader(
                name=FLAG_SOURCE_HEADER,
                documentation_only=True,
                description="store: the store's state; snapshot: this replica's, because the "
                "store lacks or is behind it (a restore is due); routes_file: never written.",
            ),
            ResponseHeader(name="etag", documentation_only=True, description='The version: "3".'),
        ],
    )
    async def get_flag(
        request: Request[Any, Any, Any], route: FromPath[str]
    ) -> Response[FlagState]:
        actor(request)
        state, source = await flags.current_with_source(route)
        return flag_response(state, **{FLAG_SOURCE_HEADER: source})

    @patch(
        "/admin/flags/{route:str}",
        summary="Change weight, kill switch or targeting",
        guards=[require_admin],
    )
    async def patch_flag(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[FlagPatchRequest | None] = None,
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        data = FlagPatchRequest() if data is None else data  # no body: 422 for the missing reason
        change = FlagPatch(
            enabled=data.enabled,
            weight=data.weight,
            candidate_subjects=data.candidate_subjects,
            fallback_subjects=data.fallback_subjects,
            candidate_keys=data.candidate_keys,
            fallback_keys=data.fallback_keys,
        )
        state = await flags.update(
            route,
            change,
            actor=who,
            reason=data.reason,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @post(
        "/admin/flags/{route:str}/rollback",
        summary="Send all traffic to the fallback",
        guards=[require_admin],
    )
    async def rollback_flag(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[RollbackRequest | None] = None,
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        data = RollbackRequest() if data is None else data  # no body: 422 for the missing reason
        state = await flags.rollback(
            route,
            actor=who,
            reason=data.reason,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @post(
        "/admin/flags/{route:str}/release",
        summary="Re-arm a rolled-back flag",
        guards=[require_admin],
    )
    async def release_flag(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[ReleaseRequest | None] = None,
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        data = ReleaseRequest() if data is None else data  # no body: 422 for the missing reason
        state = await flags.release(
            route,
            actor=who,
            reason=data.reason,
            weight=data.weight,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @post(
        "/admin/flags/{route:str}/candidate",
        summary="Register a model as the candidate (weight 0; a rolled-back flag stays so)",
        guards=[require_admin],
    )
    async def register_candidate(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[RegisterCandidateRequest],
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        state = await flags.register_candidate(
            route,
            model=data.model,
            actor=who,
            reason=data.reason,
            evidence={"source": data.source} if data.source else None,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @post(
        "/admin/flags/{route:str}/ramp/pause",
        summary="Pause the route's ramp (the guard stops raising the weight)",
        guards=[require_admin],
    )
    async def pause_ramp(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[RampRequest | None] = None,
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        data = RampRequest() if data is None else data  # no body: 422 for the missing reason
        state = await gw.ramper.pause(
            route,
            actor=who,
            reason=data.reason,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @post(
        "/admin/flags/{route:str}/ramp/resume",
        summary="Resume the route's ramp at its step's weight (or start it at the first step)",
        guards=[require_admin],
    )
    async def resume_ramp(
        request: Request[Any, Any, Any],
        route: FromPath[str],
        data: JSONBody[RampRequest | None] = None,
        if_match: IfMatch = None,
    ) -> Response[FlagState]:
        who = actor(request)
        data = RampRequest() if data is None else data  # no body: 422 for the missing reason
        state = await gw.ramper.resume(
            route,
            actor=who,
            reason=data.reason,
            expected_version=_expected_version(if_match, data.version),
        )
        return flag_response(state)

    @get("/admin/audit", summary="Flag changes, newest first", guards=[require_admin])
    async def audit(
        request: Request[Any, Any, Any],
        route: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    ) -> AuditPage:
        actor(request)
        return AuditPage(await flags.history(route, limit))

    return [
        list_routes,
        get_flag,
        patch_flag,
        rollback_flag,
        release_flag,
        register_candidate,
        pause_ramp,
        resume_ramp,
        audit,
    ]
