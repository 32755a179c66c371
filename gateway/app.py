"""``create_app(settings)``: builds and wires everything. Nothing happens at import time.

The :class:`Gateway` holds the app's parts (config, keys, flags, upstream pool, metrics,
telemetry, relay); handlers are closures over it. The upstream pool is closed in the lifespan.
The app is a :class:`GatewayApp`: Litestar, with ``POST /v1/chat/completions`` and
``POST /v1/responses`` answered by the raw ASGI data plane
(:class:`gateway.api.openai.ChatCompletionsASGI`) before Litestar routes,
and ``POST /v1/embeddings`` and ``/v1/completions`` by the pass-through
(:class:`gateway.api.passthrough.PassthroughASGI`). With ``GATEWAY_CORS_ALLOW_ORIGINS`` set it
is a :class:`CorsGatewayApp`, which applies CORS (:mod:`gateway.api.cors`) to every ``/v1/``
request before either.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send
from opentelemetry.trace import TracerProvider
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from gateway import __version__
from gateway.api.admin import admin_handlers
from gateway.api.console import console_handlers
from gateway.api.cors import PATH_PREFIX as CORS_PATH_PREFIX
from gateway.api.cors import CorsPolicy
from gateway.api.openai import (
    CHAT_PATH,
    RESPONSES_PATH,
    ChatCompletionsASGI,
    internal_error_reply,
    new_request_id,
    openai_handlers,
    to_response,
)
from gateway.api.ops import ops_handlers
from gateway.api.passthrough import (
    COMPLETIONS_PATH,
    EMBEDDINGS_PATH,
    PassthroughASGI,
    passthrough_method_handlers,
)
from gateway.auth import AdminAuth, KeyRing
from gateway.config import GatewayConfig, load_config
from gateway.console import TEMPLATE_DIR
from gateway.console.session import SessionCodec
from gateway.errors import (
    ClientError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from gateway.flags.outcomes import open_outcome_store
from gateway.flags.service import FlagService, replica_id
from gateway.flags.store import open_store
from gateway.quality.feedback import RecentRequests
from gateway.quality.guard import Guard
from gateway.quality.latch import LatchedFlags
from gateway.quality.monitor import QualityMonitor
from gateway.quality.ramper import Ramper
from gateway.quality.runner import GuardRunner
from gateway.quality.shadow import ShadowRunner
from gateway.relay import Relay, error_reply
from gateway.settings import Settings, load_settings
from gateway.telemetry import (
    Metrics,
    Telemetry,
    configure_logging,
    get_line_logger,
    get_logger,
)
from gateway.telemetry.ramp_metrics import RampMetrics
from gateway.telemetry.tracing import Tracing, exporter_names, provider_from_environment
from gateway.upstream import UpstreamPool

__all__ = [
    "GC_THRESHOLD",
    "CorsGatewayApp",
    "Gateway",
    "GatewayApp",
    "app_from_environment",
    "build_gateway",
    "build_tracing",
    "create_app",
    "tune_gc",
]

GC_THRESHOLD = (10_000, 20, 20)
"""``gc.set_threshold`` of a serving process (Python's default: 700, 10, 10). With the default,
the cyclic collector cost the gateway 73 µs of CPU per request, a sixth of it, mostly walking
the start-up objects again and again (bench/results/profile-inprocess.md)."""


def tune_gc() -> None:
    """After start-up: collect once, move every object alive now out of the collector's sight
    (``gc.freeze()``: the config, the app, the libraries' modules live as long as the process)
    and collect the young generation every :data:`GC_THRESHOLD` allocations instead of 700.
    Cyclic garbage is still collected, just in larger batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


class GatewayApp(Litestar):
    """Litestar, with ``POST /v1/chat/completions`` handed to :attr:`data_plane` and the
    ``POST`` paths in :attr:`raw_paths` to theirs (raw ASGI callables) before Litestar's own
    routing; everything else is Litestar's.

    With tracing on (:attr:`tracing`), every request under ``/v1/`` runs inside a server span
    (:meth:`gateway.telemetry.tracing.Tracing.serve`), named by its route if it is one of
    :attr:`traced_routes`."""

    data_plane: Any = None
    raw_paths: dict[str, Any] = {}  # noqa: RUF012  (replaced per app, never mutated)
    tracing: Tracing | None = None
    traced_routes: frozenset[str] = frozenset()

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        raw: Any = scope  # one dict lookup each, before Litestar builds anything
        if raw["type"] == "http":
            if self.tracing is not None and raw["path"].startswith("/v1/"):
                path = raw["path"]
                route = path if path in self.traced_routes else ""
                await self.tracing.serve(scope, receive, send, self._dispatch, route)
                return
            if raw["method"] == "POST":
                path = raw["path"]
                if path == CHAT_PATH and self.data_plane is not None:
                    await self.data_plane(scope, receive, send)
                    return
                handler = self.raw_paths.get(path)
                if handler is not None:
                    await handler(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        """:meth:`__call__` without the tracing branch (inside the server span)."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == CHAT_PATH and self.data_plane is not None:
                await self.data_plane(scope, receive, send)
                return
            handler = self.raw_paths.get(path)
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class CorsGatewayApp(GatewayApp):
    """A :class:`GatewayApp` with CORS (``GATEWAY_CORS_ALLOW_ORIGINS``): :attr:`cors` applies
    to every ``/v1/`` request first (preflights answered, headers added to every answer, errors
    included). A class of its own, so that without CORS the request path pays nothing for it."""

    cors: CorsPolicy

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        raw: Any = scope
        if raw["type"] == "http" and raw["path"].startswith(CORS_PATH_PREFIX):
            wrapped = await self.cors.apply(raw, send)  # type: ignore[arg-type]
            if wrapped is None:  # a preflight, answered
                return
            send = wrapped  # type: ignore[assignment]
        await super().__call__(scope, receive, send)


@dataclass
class Gateway:
    """Everything a running gateway is made of; built once per process."""

    settings: Settings
    config: GatewayConfig
    client_keys: KeyRing
    admin_keys: KeyRing
    override_keys: frozenset[str]
    flags: FlagService
    upstreams: UpstreamPool
    metrics: Metrics
    telemetry: Telemetry
    relay: Relay
    logger: Any
    quality: QualityMonitor
    shadow: ShadowRunner
    guard_runner: GuardRunner
    latch: LatchedFlags
    replica: str
    ramper: Ramper
    admin_auth: AdminAuth
    """``/admin`` credentials: bearer admin keys, or console sessions (cookie + CSRF)."""
    tracing: Tracing | None = None

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: config loaded; flag store ok, or degraded and what is served instead."""
        store = self.flags.status()
        return {
            "status": "ready" if store["state"] == "ok" else "degraded",
            "config": str(self.config.path),
            "routes": len(self.config.routes),
            "flag_store": store,
            "replica": self.replica,
            "guard": self.guard_runner.status(),
        }

    def guard_state(self, route: str) -> dict[str, Any] | None:
        """The route's guard state for ``/admin/routes`` (None without a guard)."""
        state = self.quality.guard.state(route)
        if state is not None:
            state["latched_here"] = self.latch.latched(route) is not None
        return state


def build_gateway(
    settings: Settings, config: GatewayConfig | None = None, *, tracing: Tracing | None = None
) -> Gateway:
    """Build the parts (``tracing``: None when off). Raises
    :class:`~gateway.errors.ConfigError` on any invalid setting, ``OTEL_TRACES_EXPORTER``
    included (so ``gateway serve`` and ``check-config`` refuse it before any worker starts)."""
    config = config or load_config(settings.config)
    if tracing is None:
        exporter_names(os.environ)
    client_keys = settings.all_client_keys()
    admin_keys = settings.all_admin_keys()
    keys = KeyRing(
        client_keys,
        plane="client",
        allow_open=settings.allow_open_access,
        other_plane=admin_keys,
    )
    admin = KeyRing(admin_keys, plane="admin", required=False, other_plane=client_keys)
    secret = settings.console.session_secret
    admin_auth = AdminAuth(
        admin,
        SessionCodec(
            secret.get_secret_value() if secret is not None else None,
            settings.console.session_ttl_s,
        ),
    )
    logger = get_logger("gateway")
    metrics = Metrics(config)
    telemetry = Telemetry(metrics, get_line_logger("gateway"), log_payloads=settings.log_payloads)
    store = open_store(
        settings.flag_store,
        namespace=settings.flag_store_namespace,
        poll_interval_s=settings.flag_poll_interval_s,
    )
    flags = FlagService(
        config,
        store,
        metrics,
        logger,
        replica=replica_id(settings.replica_id, workers=settings.workers),
        heartbeat_s=settings.flag_heartbeat_s,
    )
    upstreams = UpstreamPool(
        config.upstreams,
        settings.upstream,
        other_secrets=[*client_keys.values(), *admin_keys.values()],
    )
    latch = LatchedFlags(flags)
    guard = Guard(config.routes)
    quality = QualityMonitor(
        config,
        metrics,
        guard,
        RecentRequests(settings.feedback_max_requests, settings.feedback_ttl_s),
    )
    shadow = ShadowRunner(upstreams, quality, telemetry, logger, tracing=tracing)
    relay = Relay(
        config,
        latch,
        upstreams,
        telemetry,
        quality,
        shadow=shadow,
        log_payloads=settings.log_payloads,
        tracing=tracing,
    )
    guard_runner = GuardRunner(
        guard,
        flags,
        latch,
        metrics,
        logger,
        replica=flags.replica,
        tick_s=settings.guard_tick_s,
        flush_s=settings.guard_flush_s,
        outcomes=open_outcome_store(settings.flag_store, namespace=settings.flag_store_namespace),
        webhook_url=settings.guard_webhook_url,
    )
    ramper = Ramper(
        config,
        guard,
        flags,
        latch,
        logger,
        replica=flags.replica,
        tick_s=settings.guard_tick_s,
        evidence_route_wide=lambda: guard_runner.evidence_route_wide,
        metrics=RampMetrics(
            metrics.ramp_step,
            metrics.ramp_state,
            [n for n, r in config.routes.items() if r.ramp is not None],
        ),
    )
    return Gateway(
        settings=settings,
        config=config,
        client_keys=keys,
        admin_keys=admin,
        override_keys=frozenset(settings.override_keys),
        flags=flags,
        upstreams=upstreams,
        metrics=metrics,
        telemetry=telemetry,
        relay=relay,
        logger=logger,
        quality=quality,
        shadow=shadow,
        guard_runner=guard_runner,
        latch=latch,
        replica=flags.replica,
        ramper=ramper,
        admin_auth=admin_auth,
        tracing=tracing,
    )


def build_tracing(config: GatewayConfig, provider: TracerProvider | None = None) -> Tracing | None:
    """The app's :class:`~gateway.telemetry.tracing.Tracing`: on ``provider`` if given (tests
    pass one with an in-memory exporter; the caller owns it), else as the ``OTEL_*``
    environment says (:func:`~gateway.telemetry.tracing.provider_from_environment`), else
    None (off). Raises :class:`~gateway.errors.ConfigError` on an unsupported exporter."""
    owned = False
    if provider is None:
        provider, owned = provider_from_environment()
    if provider is None:
        return None
    return Tracing(provider, config.upstreams, owned=owned)


def create_app(
    settings: Settings,
    config: GatewayConfig | None = None,
    *,
    gc_tuning: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> GatewayApp:
    """The ASGI app for ``settings`` (and an already loaded routes file, if given).

    ``gc_tuning`` (on in served processes, :func:`app_from_environment`; off by default so that
    tests leave the collector alone): :func:`tune_gc` once start-up is complete.
    ``tracer_provider``: trace on this provider instead of the ``OTEL_*`` environment's
    (:func:`build_tracing`)."""
    config = config or load_config(settings.config)
    tracing = build_tracing(config, tracer_provider)
    configure_logging(settings.log_level, trace_ids=tracing is not None)
    gw = build_gateway(settings, config, tracing=tracing)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        gw.logger.info(
            "gateway.started",
            config=str(gw.config.path),
            routes=sorted(gw.config.routes),
            transport=settings.upstream.transport,
            flag_store=gw.flags.store_kind,
            replica=gw.replica,
            tracing=gw.tracing is not None,
        )
        await gw.flags.start()
        await gw.guard_runner.start()
        await gw.ramper.start()
        if gc_tuning:
            tune_gc()
        try:
            yield
        finally:
            await gw.ramper.stop()
            await gw.guard_runner.stop()
            await gw.shadow.aclose()
            await gw.flags.stop()
            await gw.upstreams.aclose()
            if gw.tracing is not None:
                gw.tracing.shutdown()  # exports the spans still buffered
            gw.logger.info("gateway.stopped")

    def on_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
        return _error_response(request, exc)

    def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        mapped: GatewayError
        if exc.status_code == 404:
            mapped = NotFoundError(f"Unknown path: {request.method} {request.url.path}")
        elif exc.status_code == 413:
            mapped = PayloadTooLargeError("Request body too large.")
        elif isinstance(exc, ValidationException):
            mapped = _validation_error(exc)
        elif exc.status_code == 400:
            mapped = InvalidRequestError(str(exc.detail))
        else:
            mapped = ClientError(str(exc.detail))
            mapped.status_code = exc.status_code
        return _error_response(request, mapped, exc.headers)  # e.g. Allow on a 405

    def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        request_id = new_request_id(request.headers.get("x-request-id"))
        return to_response(internal_error_reply(gw.logger, request.url.path, exc, request_id))

    cors = CorsPolicy.from_settings(settings.cors_allow_origins, settings.cors_max_age_s)
    app_class = GatewayApp if cors is None else CorsGatewayApp
    app = app_class(
        route_handlers=[
            *openai_handlers(gw),
            *passthrough_method_handlers(),
            *ops_handlers(gw),
            *admin_handlers(gw),
            *console_handlers(gw),
            _openapi_assets(),
        ],
        lifespan=[lifespan],
        exception_handlers={
            GatewayError: on_gateway_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="gateway admin API",
            version=__version__,
            path="/admin/openapi",
            description="Flags, audit and routes of the feature-flagged inference gateway.",
            render_plugins=_openapi_render_plugins(),
        ),
        template_config=TemplateConfig(directory=TEMPLATE_DIR, engine=JinjaTemplateEngine),
        logging_config=None,
        debug=False,
    )
    app.state.gateway = gw
    app.data_plane = ChatCompletionsASGI(gw)
    app.raw_paths = {
        EMBEDDINGS_PATH: PassthroughASGI(gw, "embeddings"),
        COMPLETIONS_PATH: PassthroughASGI(gw, "completions"),
        RESPONSES_PATH: ChatCompletionsASGI(gw, RESPONSES_PATH),
    }
    if isinstance(app, CorsGatewayApp) and cors is not None:
        app.cors = cors
    if tracing is not None:
        app.tracing = tracing
        app.traced_routes = frozenset(
            [
                *(path for r in app.routes if (path := r.path).startswith("/v1/")),
                CHAT_PATH,
                *app.raw_paths,
            ]
        )
    return app


OPENAPI_ASSETS = "/admin/openapi-assets"
"""Where Swagger UI's files are served from (the ``swagger-ui-bundle`` package's copy), so that
``/admin/openapi`` loads nothing from a CDN."""


def _openapi_assets() -> Any:
    return create_static_files_router(
        path=OPENAPI_ASSETS, directories=[swagger_ui_path], name="openapi-assets"
    )


def _openapi_render_plugins() -> list[Any]:
    """``/admin/openapi``: Swagger UI from :data:`OPENAPI_ASSETS`; the spec at
    ``/admin/openapi/openapi.json``."""
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{OPENAPI_ASSETS}/swagger-ui-bundle.js",
            css_url=f"{OPENAPI_ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{OPENAPI_ASSETS}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{OPENAPI_ASSETS}/favicon-32x32.png'>",
        ),
        JsonRenderPlugin(path="/openapi.json"),
    ]


def _validation_error(exc: ValidationException) -> InvalidRequestError:
    """Litestar's body/parameter validation failure, as one readable 400."""
    details = exc.extra if isinstance(exc.extra, list) else []
    parts = [
        f"{d.get('key') or 'body'}: {d.get('message')}" for d in details if isinstance(d, dict)
    ]
    param = next((d.get("key") for d in details if isinstance(d, dict) and d.get("key")), None)
    for detail in details:
        # Litestar names the whole body "data"; an unknown field is the better param.
        text = str(detail.get("message", "")) if isinstance(detail, dict) else ""
        if "unknown field `" in text:
            param = text.split("unknown field `", 1)[1].split("`", 1)[0]
            break
    message = "Invalid request: " + ("; ".join(parts) if parts else str(exc.detail))
    return InvalidRequestError(message, param=param)


def _error_response(
    request: Request[Any, Any, Any],
    exc: GatewayError,
    extra_headers: dict[str, str] | None = None,
) -> Response[Any]:
    request_id = new_request_id(request.headers.get("x-request-id"))
    return to_response(error_reply(exc, request_id, extra_headers))


def app_from_environment() -> GatewayApp:
    """Factory for ``uvicorn --factory``: settings from ``GATEWAY_*``, routes from the file."""
    return create_app(load_settings(), gc_tuning=True)
