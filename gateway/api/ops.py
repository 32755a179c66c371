"""Operations endpoints: ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``.

``/metrics`` needs ``Authorization: Bearer <GATEWAY_METRICS_TOKEN>`` when that setting is set
(compared in constant time, :class:`gateway.auth.KeyRing`; 401 ``invalid_api_key`` otherwise)
and is open without it. With several workers it adds up every worker's metrics
(:func:`gateway.telemetry.multiproc.render`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.auth import KeyRing
from gateway.telemetry.multiproc import render

__all__ = ["ops_handlers"]


def ops_handlers(gw: Any) -> list[Any]:
    """Handlers bound to ``gw`` (a :class:`gateway.app.Gateway`)."""
    token = gw.settings.metrics_token
    workers = gw.settings.workers
    scrapers = (
        None if token is None else KeyRing({"metrics": token.get_secret_value()}, plane="metrics")
    )

    @get("/metrics", include_in_schema=False)
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if scrapers is not None:
            scrapers.authenticate(request.headers.get("authorization"))
        return Response(
            render(gw.metrics.registry, workers=workers), media_type=CONTENT_TYPE_LATEST
        )

    @get("/healthz", include_in_schema=False)
    async def healthz() -> Response[dict[str, str]]:
        return Response({"status": "ok"})

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        state = gw.readiness()
        return Response(state, status_code=200 if state["status"] != "unready" else 503)

    return [metrics, healthz, readyz]
