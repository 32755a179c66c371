"""Operations endpoints: ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["ops_handlers"]


def ops_handlers(gw: Any) -> list[Any]:
    """Handlers bound to ``gw`` (a :class:`gateway.app.Gateway`)."""

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @get("/healthz", include_in_schema=False)
    async def healthz() -> Response[dict[str, str]]:
        return Response({"status": "ok"})

    @get("/readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, Any]]:
        state = gw.readiness()
        return Response(state, status_code=200 if state["status"] != "unready" else 503)

    return [metrics, healthz, readyz]
