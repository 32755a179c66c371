"""OpenTelemetry traces: a server span per data-plane request, a client span per upstream call.

Off by default. On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or
both, comma-separated; ``none`` or unset: off; ``OTEL_SDK_DISABLED=true``: off), or when the
process already has an SDK tracer provider (``opentelemetry-instrument``: the gateway then uses
that one). Everything else is the SDK's own environment configuration, read when the provider
is built at app start: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name
``llm-flag-gateway`` if neither gives one), ``OTEL_TRACES_SAMPLER`` / ``_ARG`` (default
``parentbased_always_on``), ``OTEL_PROPAGATORS`` (default ``tracecontext,baggage``), the OTLP
exporter's ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``,
``_COMPRESSION``. OTLP is sent over HTTP/protobuf (``opentelemetry-exporter-otlp-proto-http``:
no gRPC stack to install; collectors listen on port 4318 for it); ``grpc`` is refused with a
:class:`~gateway.errors.ConfigError`. ``console`` writes one JSON object per finished span to
stderr (stdout holds the log lines).

Spans follow OpenTelemetry's semantic conventions, GenAI version :data:`SEMCONV_VERSION`:

* server span (kind SERVER) ``{method} {route}``, e.g. ``POST /v1/chat/completions``, child of
  the caller's W3C ``traceparent``; HTTP attributes, and from the request record
  ``gateway.route``, ``gateway.variant``, ``gateway.decision``, ``gateway.rollout_id``,
  ``gateway.request_id``, ``error.type`` on a 5xx;
* one client span (kind CLIENT) per upstream attempt, ``{gen_ai.operation.name}
  {gen_ai.request.model}``, e.g. ``chat ft:gpt-4o-mini:acme``: ``gen_ai.operation.name``,
  ``gen_ai.provider.name`` (the upstream's ``provider``), ``gen_ai.request.model``,
  ``server.address`` / ``server.port``, then ``gen_ai.response.model``, ``gen_ai.response.id``,
  ``gen_ai.usage.input_tokens`` / ``output_tokens`` or ``error.type``; plus the gateway's own
  attributes above and ``gateway.upstream``. A failover is two client spans under one server
  span; a stream's span ends with the stream; a shadow call is a client span of its own, a child
  of the request's server span that ends after it (``gateway.decision=shadow``); a
  pass-through call is one too (``embeddings {model}``, ``text_completion {model}``,
  ``gateway.decision=passthrough``).

The caller's ``traceparent``, ``tracestate`` and ``baggage`` reach the upstream either way: with
tracing off they are forwarded as they came (only those, only when present: the data plane
collects them while it reads the headers), with tracing on the client span's context is
injected instead (the configured propagators).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway import __version__
from gateway.config import UpstreamConfig
from gateway.errors import ConfigError, GatewayError, UpstreamStatusError

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "FORWARDED_HEADERS",
    "OPERATION_NAMES",
    "SEMCONV_VERSION",
    "Tracing",
    "error_type",
    "exporter_names",
    "provider_from_environment",
]

SEMCONV_VERSION = "1.37.0"
"""The OpenTelemetry semantic conventions followed: GenAI client spans (``gen-ai-spans.md``,
span name ``{gen_ai.operation.name} {gen_ai.request.model}``, kind CLIENT, the
``gen_ai.provider.name`` attribute that 1.37 introduced) and HTTP server spans."""

SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

DEFAULT_SERVICE_NAME = "llm-flag-gateway"

FORWARDED_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
"""The W3C trace-context and baggage request headers passed on to the upstream."""

OPERATION_NAMES = {
    "chat": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
}
"""``RequestRecord.operation`` -> ``gen_ai.operation.name``. The Responses API generates a
model response from a conversation, which the conventions call ``chat`` (their
``text_completion`` is the legacy Completions API)."""

_EXPORTERS = ("otlp", "console")


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` asks for: ``[]`` when unset, ``none``, or
    ``OTEL_SDK_DISABLED=true``. Unlike the SDK's own default (``otlp``), unset means off: the
    gateway exports nothing unless told where.

    Raises:
        ConfigError: an exporter other than ``otlp``, ``console`` or ``none``, or OTLP over
            gRPC (``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL=grpc``).
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in _EXPORTERS]
    if unknown:
        raise ConfigError(
            [
                f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} "
                "(use otlp, console or none)"
            ]
        )
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if "otlp" in names and protocol.strip() != "http/protobuf":
        raise ConfigError(
            [
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol} is not supported; the gateway "
                "exports OTLP over http/protobuf (port 4318 on a collector)"
            ]
        )
    return list(dict.fromkeys(names))


def _one_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


def _exporter(name: str) -> tuple[SpanExporter, bool]:
    """The exporter called ``name`` and whether it is batched."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_line), False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter(), True


def provider_from_environment(
    environ: Mapping[str, str] | None = None,
) -> tuple[trace.TracerProvider | None, bool]:
    """The tracer provider the environment asks for, and whether the gateway owns it (and so
    shuts it down): the process's SDK provider if one is set already (``opentelemetry-instrument``
    sets it; not owned), else a new one with the exporters of :func:`exporter_names` (owned;
    also made the global provider, so that other instrumentation shares it), else ``None``.

    Raises:
        ConfigError: as :func:`exporter_names`.
    """
    env = os.environ if environ is None else environ
    names = exporter_names(env)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current, False
    if not names:
        return None, False
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
    for name in names:
        exporter, batched = _exporter(name)
        processor = BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
    if isinstance(current, trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider, True


def error_type(exc: BaseException) -> str:
    """``error.type`` of a failed upstream call: the upstream's HTTP status (``"503"``) as the
    HTTP conventions have it, else the gateway error's code (``upstream_timeout``,
    ``upstream_connect_error``, ``pool_exhausted``...), else the exception's class name."""
    if isinstance(exc, UpstreamStatusError):
        return str(exc.upstream_status)
    if isinstance(exc, GatewayError) and exc.code:
        return exc.code
    return type(exc).__name__


def _trace_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The :data:`FORWARDED_HEADERS` among ASGI ``headers`` (None if there are none)."""
    carrier = None
    for name, value in headers:
        if name in FORWARDED_HEADERS:
            carrier = forwarded(carrier, name, value)
    return carrier


def forwarded(carrier: dict[str, str] | None, name: bytes, value: bytes) -> dict[str, str]:
    """``carrier`` (created if None) with the trace header ``name: value`` added; repeated
    headers are joined with commas, as HTTP allows for these list-valued headers."""
    key = name.decode("latin-1")
    text = value.decode("latin-1")
    if carrier is None:
        return {key: text}
    carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
    return carrier


ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class Tracing:
    """The app's tracer and the spans it makes (see the module docstring). One per app; absent
    (``None`` where it is held) when tracing is off, so the request path pays nothing.

    ``provider``: an SDK or API tracer provider (tests pass one with an in-memory exporter);
    ``upstreams``: the routes file's upstreams (``provider`` and address of each);
    ``owned``: shut the provider down with the app.
    """

    def __init__(
        self,
        provider: trace.TracerProvider,
        upstreams: Mapping[str, UpstreamConfig],
        *,
        owned: bool = False,
    ) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("gateway", __version__, schema_url=SCHEMA_URL)
        self._owned = owned
        self._upstreams: dict[str, dict[str, Any]] = {}
        for name, cfg in upstreams.items():
            url = urlsplit(cfg.base_url)
            port = url.port or (443 if url.scheme == "https" else 80)
            self._upstreams[name] = {
                "gen_ai.provider.name": cfg.provider,
                "server.address": url.hostname or "",
                "server.port": port,
                "gateway.upstream": name,
            }

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters (only a provider the app owns)."""
        if self._owned and isinstance(self.provider, TracerProvider):
            self.provider.shutdown()

    # -- the server span -------------------------------------------------------------------

    async def serve(self, scope: Any, receive: Any, send: Any, app: ASGIApp, route: str) -> None:
        """Call ``app`` inside a SERVER span continuing the caller's trace context (``route``:
        the matched path template, or ``""`` for an unknown path: the span is then named by
        the method alone, as the HTTP conventions say). The span is current while ``app``
        runs, so the upstream spans and every log line of the request are its children."""
        method = scope["method"]
        carrier = _trace_headers(scope["headers"])
        parent = None if carrier is None else propagate.extract(carrier)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if route:
            attributes["http.route"] = route
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        with self.tracer.start_as_current_span(
            f"{method} {route}" if route else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def traced_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attribute("error.type", str(status))
                        span.set_status(StatusCode.ERROR)
                await send(message)

            await app(scope, receive, traced_send)

    def finish(self, rec: Any) -> None:
        """The request record's routing outcome on the current (server) span: called by the
        relay when a request ends. ``rec``: a :class:`~gateway.telemetry.RequestRecord`."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "gateway.request_id": rec.request_id,
            "gen_ai.operation.name": OPERATION_NAMES.get(rec.operation, rec.operation),
        }
        if rec.route is not None:
            attributes["gateway.route"] = rec.route
        if rec.variant is not None:
            attributes["gateway.variant"] = rec.variant
        if rec.decision is not None:
            attributes["gateway.decision"] = rec.decision
        if rec.rollout_id:
            attributes["gateway.rollout_id"] = rec.rollout_id
        if rec.failover_reason:
            attributes["gateway.failover_reason"] = rec.failover_reason
        if rec.client_disconnected:
            attributes["gateway.client_disconnected"] = True
        if rec.status >= 500:
            # A stream that failed after its 200 went out: the record knows, the status not.
            attributes["error.type"] = rec.error_code or str(rec.status)
            span.set_status(StatusCode.ERROR)
        span.set_attributes(attributes)

    # -- upstream attempts -----------------------------------------------------------------

    def start_attempt(
        self,
        *,
        operation: str,
        route: str,
        variant: str,
        upstream: str,
        model: str,
        decision: str,
        rollout_id: str | None,
    ) -> tuple[Span, dict[str, str]]:
        """Start a CLIENT span for one upstream call, a child of the current span; return it
        and the headers that carry its context to the upstream (``traceparent`` and whatever
        else the configured propagators write: ``tracestate``, ``baggage``). End it with
        :meth:`succeeded` or :meth:`failed`."""
        name = OPERATION_NAMES.get(operation, operation)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": name,
            "gen_ai.request.model": model,
            **self._upstreams.get(upstream, {"gateway.upstream": upstream}),
            "gateway.route": route,
            "gateway.variant": variant,
            "gateway.decision": decision,
        }
        if rollout_id:
            attributes["gateway.rollout_id"] = rollout_id
        span = self.tracer.start_span(
            f"{name} {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        return span, headers

    @staticmethod
    def succeeded(
        span: Span,
        *,
        response_model: str | None = None,
        response_id: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """End an attempt's span with what the answer said (each attribute only if known)."""
        if span.is_recording():
            attributes: dict[str, Any] = {}
            if response_model:
                attributes["gen_ai.response.model"] = response_model
            if response_id:
                attributes["gen_ai.response.id"] = response_id
            if input_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = input_tokens
            if output_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = output_tokens
            span.set_attributes(attributes)
        span.end()

    @staticmethod
    def current(span: Span) -> Any:
        """A context manager making ``span`` the current span (nothing recorded on it if the
        body raises: :meth:`failed` says what failed), e.g. around an upstream call so that
        an instrumented HTTP client's span (``opentelemetry-instrument``) is its child."""
        return trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    @staticmethod
    def failed(span: Span, exc: BaseException, description: str | None = None) -> None:
        """End an attempt's span as failed: ``error.type`` (:func:`error_type`) and an ERROR
        status whose description is the gateway's message (never a traceback)."""
        if span.is_recording():
            span.set_attribute("error.type", error_type(exc))
            if description is None and isinstance(exc, GatewayError):
                description = exc.message
            span.set_status(Status(StatusCode.ERROR, description))
        span.end()

    @staticmethod
    def use(span: Span) -> Any:
        """``span`` made current (a context manager), e.g. around a shadow call so that its log
        lines carry its ids."""
        return trace.use_span(span, end_on_exit=False)
