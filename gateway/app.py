"""``create_app(settings)``: builds and wires everything. Nothing happens at import time.

The :class:`Gateway` holds the app's parts (config, keys, flags, upstream pool, metrics,
telemetry, relay); handlers are closures over it. The upstream pool is closed in the lifespan.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig

from gateway import __version__
from gateway.api.admin import admin_handlers
from gateway.api.openai import new_request_id, openai_handlers
from gateway.api.ops import ops_handlers
from gateway.auth import KeyRing
from gateway.config import GatewayConfig, load_config
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
from gateway.quality.runner import GuardRunner
from gateway.quality.shadow import ShadowRunner
from gateway.relay import ChatRelay
from gateway.settings import Settings, load_settings
from gateway.telemetry import Metrics, Telemetry, configure_logging, get_logger
from gateway.upstream import UpstreamPool

__all__ = ["Gateway", "app_from_environment", "build_gateway", "create_app"]


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
    relay: ChatRelay
    logger: Any
    quality: QualityMonitor
    shadow: ShadowRunner
    guard_runner: GuardRunner
    latch: LatchedFlags
    replica: str

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


def build_gateway(settings: Settings, config: GatewayConfig | None = None) -> Gateway:
    """Build the parts. Raises :class:`~gateway.errors.ConfigError` on any invalid setting."""
    config = config or load_config(settings.config)
    client_keys = settings.all_client_keys()
    admin_keys = settings.all_admin_keys()
    keys = KeyRing(
        client_keys,
        plane="client",
        allow_open=settings.allow_open_access,
        other_plane=admin_keys,
    )
    admin = KeyRing(admin_keys, plane="admin", required=False, other_plane=client_keys)
    logger = get_logger("gateway")
    metrics = Metrics(config)
    telemetry = Telemetry(metrics, logger, log_payloads=settings.log_payloads)
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
    shadow = ShadowRunner(upstreams, quality, metrics, logger)
    relay = ChatRelay(
        config,
        latch,
        upstreams,
        telemetry,
        quality,
        shadow=shadow,
        log_payloads=settings.log_payloads,
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
    )


def create_app(settings: Settings, config: GatewayConfig | None = None) -> Litestar:
    """The ASGI app for ``settings`` (and an already loaded routes file, if given)."""
    configure_logging(settings.log_level)
    gw = build_gateway(settings, config)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        gw.logger.info(
            "gateway.started",
            config=str(gw.config.path),
            routes=sorted(gw.config.routes),
            transport=settings.upstream.transport,
            flag_store=gw.flags.store_kind,
            replica=gw.replica,
        )
        await gw.flags.start()
        await gw.guard_runner.start()
        try:
            yield
        finally:
            await gw.guard_runner.stop()
            await gw.shadow.aclose()
            await gw.flags.stop()
            await gw.upstreams.aclose()
            gw.logger.info("gateway.stopped")

    def on_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
        return _error_response(request, exc)

    def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
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

    def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        gw.logger.error(
            "request.unhandled_exception",
            path=request.url.path,
            error=type(exc).__name__,
            traceback="".join(traceback.format_exception(exc)),
        )
        return _error_response(request, GatewayError("The gateway had an internal error."))

    app = Litestar(
        route_handlers=[*openai_handlers(gw), *ops_handlers(gw), *admin_handlers(gw)],
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
        ),
        logging_config=None,
        debug=False,
    )
    app.state.gateway = gw
    return app


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
) -> Response[bytes]:
    headers = {"x-request-id": new_request_id(request.headers.get("x-request-id"))}
    headers.update(exc.headers())
    if extra_headers:
        headers.update(extra_headers)
    return Response(
        exc.to_body(),
        status_code=exc.status_code,
        headers=headers,
        media_type="application/json",
    )


def app_from_environment() -> Litestar:
    """Factory for ``uvicorn --factory``: settings from ``GATEWAY_*``, routes from the file."""
    return create_app(load_settings())
