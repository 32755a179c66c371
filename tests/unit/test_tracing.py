"""OpenTelemetry traces of the data plane, captured in-process with the SDK's in-memory exporter.

Each test builds its own ``TracerProvider`` (never the global one) and hands it to the app, so
nothing leaks between tests. The upstream is an in-process handler that records the headers it
was sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from gateway.errors import ConfigError, UpstreamStatusError, UpstreamTimeoutError
from gateway.telemetry.tracing import error_type, exporter_names
from tests.inprocess import (
    CANDIDATE,
    FALLBACK,
    ScriptedStream,
    completion,
    in_process_gateway,
    routes_text,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
CHAT_SPAN = "POST /v1/chat/completions"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


def provider_for(exporter: InMemorySpanExporter, **options: Any) -> TracerProvider:
    provider = TracerProvider(**options)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


class Upstream:
    """Answers every call with ``answer(request)``; keeps each request's headers and model."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[str, httpx.Headers]] = []
        self.current_spans: list[int] = []
        """The span current in the gateway while it called (an HTTP client's instrumentation
        would make its span a child of this one)."""
        self._answer = answer or (lambda request: httpx.Response(200, json=completion()))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        self.calls.append((model, request.headers))
        self.current_spans.append(trace.get_current_span().get_span_context().span_id)
        response: httpx.Response = self._answer(request)
        return response


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def hexid(value: int, digits: int) -> str:
    return format(value, f"0{digits}x")


def the_server_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    return server


def traceparent_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{hexid(ctx.trace_id, 32)}-{hexid(ctx.span_id, 16)}-{hexid(ctx.trace_flags, 2)}"


async def test_a_plain_request_is_a_server_span_in_the_callers_trace_with_one_client_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json=completion(model="cand-model-0613")))
    async with in_process_gateway(tmp_path, upstream, tracer_provider=provider_for(exporter)) as g:
        response = await g.chat(
            headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc", "x-request-id": "r1"}
        )
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    server = the_server_span(spans)
    assert server.name == CHAT_SPAN
    assert hexid(server.context.trace_id, 32) == TRACE_ID
    assert server.parent is not None
    assert hexid(server.parent.span_id, 16) == CALLER_SPAN
    assert server.parent.is_remote
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200
    assert attrs["gateway.route"] == "triage"
    assert attrs["gateway.variant"] == "cand"
    assert attrs["gateway.decision"] == "rollout"
    assert attrs["gateway.rollout_id"]
    assert attrs["gateway.request_id"] == "r1"
    assert server.status.status_code == StatusCode.UNSET

    (client,) = by_name(spans, f"chat {CANDIDATE}")
    assert client.kind == SpanKind.CLIENT
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert dict(client.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": CANDIDATE,
        "gen_ai.response.model": "cand-model-0613",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 1,
        "server.address": "up.test",
        "server.port": 80,
        "gateway.upstream": "up",
        "gateway.route": "triage",
        "gateway.variant": "cand",
        "gateway.decision": "rollout",
        "gateway.rollout_id": attrs["gateway.rollout_id"],
    }
    assert client.status.status_code == StatusCode.UNSET
    assert client.start_time is not None
    assert server.start_time is not None
    assert server.start_time <= client.start_time

    # The upstream was called in the caller's trace, as the child of the client span.
    ((_, sent),) = upstream.calls
    assert sent["traceparent"] == traceparent_of(client)
    assert sent["tracestate"] == "vendor=abc"
    assert upstream.current_spans == [client.context.span_id]


async def test_a_failover_is_two_client_spans_under_the_server_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["model"] == CANDIDATE:
            return httpx.Response(500, json={"error": {"message": "down"}})
        return httpx.Response(200, json=completion())

    upstream = Upstream(answer)
    async with in_process_gateway(tmp_path, upstream, tracer_provider=provider_for(exporter)) as g:
        response = await g.chat(headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    assert response.headers["x-gateway-decision"] == "failover"
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (failed,) = by_name(spans, f"chat {CANDIDATE}")
    (answered,) = by_name(spans, f"chat {FALLBACK}")
    for span in (failed, answered):
        assert span.kind == SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == server.context.span_id
    assert failed.end_time is not None
    assert answered.start_time is not None
    assert failed.end_time <= answered.start_time
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "upstream 'up' answered HTTP 500"
    assert failed.attributes is not None
    assert answered.attributes is not None
    assert failed.attributes["error.type"] == "500"
    assert failed.attributes["gateway.decision"] == "rollout"
    assert "gen_ai.usage.input_tokens" not in failed.attributes
    assert answered.attributes["gateway.decision"] == "failover"
    assert answered.attributes["gateway.variant"] == "fall"
    assert "error.type" not in answered.attributes
    assert server.attributes is not None
    assert server.attributes["gateway.decision"] == "failover"
    assert server.attributes["gateway.variant"] == "fall"
    assert server.attributes["gateway.failover_reason"] == "5xx"
    # Each attempt told its upstream its own span.
    assert [(m, h["traceparent"]) for m, h in upstream.calls] == [
        (CANDIDATE, traceparent_of(failed)),
        (FALLBACK, traceparent_of(answered)),
    ]


async def test_a_stream_span_ends_with_the_stream_and_carries_its_usage(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def chunk(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({"model": "cand-model-0613", **payload}).encode() + b"\n\n"

    events = [
        chunk({"choices": [{"index": 0, "delta": {"content": "bil"}}]}),
        chunk({"choices": [{"index": 0, "delta": {"content": "ling"}}]}),
        chunk({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
        b"data: [DONE]\n\n",
    ]

    finished_mid_stream: list[int] = []

    class Watched(ScriptedStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for part in super().__aiter__():
                if part == events[-1]:  # about to end: no span may have ended yet
                    finished_mid_stream.append(len(exporter.get_finished_spans()))
                yield part

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Watched([*events])
        )

    async with in_process_gateway(
        tmp_path, Upstream(answer), tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.chat({"stream": True}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    assert response.content.endswith(b"data: [DONE]\n\n")
    assert finished_mid_stream == [0]
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (client,) = by_name(spans, f"chat {CANDIDATE}")
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert client.end_time is not None
    assert server.end_time is not None
    assert client.end_time <= server.end_time
    assert client.attributes is not None
    assert client.attributes["gen_ai.response.model"] == "cand-model-0613"
    assert client.attributes["gen_ai.usage.input_tokens"] == 7
    assert client.attributes["gen_ai.usage.output_tokens"] == 2
    assert client.status.status_code == StatusCode.UNSET


async def test_a_stream_broken_off_marks_its_spans_as_failed(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "bil"}}]}\n\n'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=ScriptedStream([first])
        )

    async with in_process_gateway(
        tmp_path, Upstream(answer), tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.chat({"stream": True})
    assert response.status_code == 200  # the head went out before the upstream broke off
    assert b"stream_interrupted" in response.content
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (client,) = by_name(spans, f"chat {CANDIDATE}")
    assert client.status.status_code == StatusCode.ERROR
    assert client.attributes is not None
    assert server.attributes is not None
    assert client.attributes["error.type"] == "stream_interrupted"
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "stream_interrupted"
    assert server.attributes["http.response.status_code"] == 200


async def test_a_shadow_call_is_a_client_span_of_its_own_in_the_request_trace(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    upstream = Upstream()
    routes = routes_text() + "    shadow: {share: 1.0, max_concurrency: 4}\n"
    async with in_process_gateway(
        tmp_path, upstream, routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.chat(headers={"traceparent": TRACEPARENT})
        assert response.headers["x-gateway-decision"] == "shadow"
        await asyncio.gather(*g.gw.shadow._tasks)
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (served,) = by_name(spans, f"chat {FALLBACK}")
    (shadow,) = by_name(spans, f"chat {CANDIDATE}")
    assert served.attributes is not None
    assert shadow.attributes is not None
    assert served.attributes["gateway.decision"] == "shadow"
    assert served.attributes["gateway.variant"] == "fall"
    assert shadow.kind == SpanKind.CLIENT
    assert shadow.parent is not None
    assert shadow.parent.span_id == server.context.span_id
    assert hexid(shadow.context.trace_id, 32) == TRACE_ID
    assert shadow.attributes["gateway.decision"] == "shadow"
    assert shadow.attributes["gateway.variant"] == "cand"
    assert shadow.attributes["gen_ai.usage.output_tokens"] == 1
    assert dict(upstream.calls)[CANDIDATE]["traceparent"] == traceparent_of(shadow)


async def test_a_responses_shadow_call_is_a_chat_client_span_with_its_usage(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        return httpx.Response(
            200,
            json={
                "id": f"resp_{model}",
                "object": "response",
                "model": model,
                "output": [],
                "usage": {"input_tokens": 6, "output_tokens": 2},
            },
        )

    upstream = Upstream(answer)
    routes = routes_text() + "    shadow: {share: 1.0, max_concurrency: 4}\n"
    auth = {"authorization": "Bearer sk-inproc-client-7f3a", "traceparent": TRACEPARENT}
    async with in_process_gateway(
        tmp_path, upstream, routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.client.post(
            "/v1/responses", json={"model": "triage", "input": "hi"}, headers=auth
        )
        assert response.headers["x-gateway-decision"] == "shadow"
        await asyncio.gather(*g.gw.shadow._tasks)
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (shadow,) = by_name(spans, f"chat {CANDIDATE}")
    assert shadow.parent is not None
    assert shadow.parent.span_id == server.context.span_id
    assert shadow.attributes is not None
    assert shadow.attributes["gateway.decision"] == "shadow"
    assert shadow.attributes["gen_ai.response.model"] == CANDIDATE
    assert shadow.attributes["gen_ai.usage.input_tokens"] == 6
    assert shadow.attributes["gen_ai.usage.output_tokens"] == 2
    assert dict(upstream.calls)[CANDIDATE]["traceparent"] == traceparent_of(shadow)


async def test_an_unsampled_caller_gets_no_spans_but_its_trace_reaches_the_upstream(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    upstream = Upstream()
    provider = provider_for(exporter, sampler=ParentBased(TraceIdRatioBased(1.0)))
    async with in_process_gateway(tmp_path, upstream, tracer_provider=provider) as g:
        response = await g.chat(headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-00"})
    assert response.status_code == 200
    assert exporter.get_finished_spans() == ()
    ((_, sent),) = upstream.calls
    assert sent["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert sent["traceparent"].endswith("-00")


async def test_without_a_caller_trace_the_server_span_starts_one(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    upstream = Upstream()
    async with in_process_gateway(tmp_path, upstream, tracer_provider=provider_for(exporter)) as g:
        await g.chat()
        models = await g.client.get("/v1/models", headers={"authorization": "Bearer nope"})
    assert models.status_code == 401
    spans = exporter.get_finished_spans()
    chat = by_name(spans, CHAT_SPAN)[0]
    assert chat.parent is None
    (client,) = by_name(spans, f"chat {CANDIDATE}")
    ((_, sent),) = upstream.calls
    assert sent["traceparent"] == traceparent_of(client)
    # Litestar's /v1 endpoints are traced too, named by their route.
    (listing,) = by_name(spans, "GET /v1/models")
    assert listing.attributes is not None
    assert listing.attributes["http.response.status_code"] == 401
    assert listing.status.status_code == StatusCode.UNSET  # a 4xx is the client's error


async def test_a_rejected_request_has_a_server_span_and_no_client_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    upstream = Upstream()
    async with in_process_gateway(tmp_path, upstream, tracer_provider=provider_for(exporter)) as g:
        response = await g.chat({"model": "nope"}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 404
    (server,) = exporter.get_finished_spans()
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 404
    assert "gateway.route" not in server.attributes
    assert upstream.calls == []


# -- tracing off ---------------------------------------------------------------------------


async def test_with_tracing_off_the_callers_trace_headers_are_forwarded_as_they_came(
    tmp_path: Path,
) -> None:
    upstream = Upstream()
    async with in_process_gateway(tmp_path, upstream) as g:
        assert g.gw.tracing is None
        await g.chat(
            headers={
                "traceparent": TRACEPARENT,
                "tracestate": "vendor=abc",
                "baggage": "tenant=acme",
                "x-other": "not forwarded",
            }
        )
        await g.chat()
    (_, traced), (_, plain) = upstream.calls
    assert traced["traceparent"] == TRACEPARENT
    assert traced["tracestate"] == "vendor=abc"
    assert traced["baggage"] == "tenant=acme"
    assert "x-other" not in traced
    for name in ("traceparent", "tracestate", "baggage"):
        assert name not in plain


async def test_with_tracing_off_a_shadow_call_forwards_the_callers_trace_too(
    tmp_path: Path,
) -> None:
    upstream = Upstream()
    routes = routes_text() + "    shadow: {share: 1.0, max_concurrency: 4}\n"
    async with in_process_gateway(tmp_path, upstream, routes=routes) as g:
        await g.chat(headers={"traceparent": TRACEPARENT})
        await asyncio.gather(*g.gw.shadow._tasks)
    assert {m: h["traceparent"] for m, h in upstream.calls} == {
        FALLBACK: TRACEPARENT,
        CANDIDATE: TRACEPARENT,
    }


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console,otlp"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            ["otlp"],
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["console"]),
    ],
)
def test_exporters_come_from_otel_traces_exporter(
    environ: dict[str, str], names: list[str]
) -> None:
    assert exporter_names(environ) == names


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unknown exporter jaeger"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "http/json",
        ),
    ],
)
def test_unsupported_exporters_are_config_errors(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        exporter_names(environ)


def test_error_type_is_the_upstream_status_or_the_gateway_code() -> None:
    status = UpstreamStatusError("x", upstream="up", upstream_status=503)
    assert error_type(status) == "503"
    assert error_type(UpstreamTimeoutError("x", upstream="up")) == "upstream_timeout"
    assert error_type(asyncio.CancelledError()) == "CancelledError"


# -- log lines -------------------------------------------------------------------------------


def log_lines(captured: bytes) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith(b"{")]
    return [line for line in lines if line.get("event") != "gateway.started"]


async def test_every_log_line_of_a_traced_request_carries_its_trace_and_span_ids(
    tmp_path: Path, exporter: InMemorySpanExporter, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["x-request-id"] == "boom":
            raise RuntimeError("a bug")  # the app's boundary logs it and answers 500
        return httpx.Response(200, json=completion())

    async with in_process_gateway(
        tmp_path, Upstream(answer), tracer_provider=provider_for(exporter)
    ) as g:
        ok = await g.chat(headers={"traceparent": TRACEPARENT, "x-request-id": "fine"})
        broken = await g.chat(headers={"x-request-id": "boom"})
    assert (ok.status_code, broken.status_code) == (200, 500)
    servers = {
        s.attributes["http.response.status_code"]: s
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.SERVER and s.attributes is not None
    }
    lines = [
        line
        for line in log_lines(capsysbinary.readouterr().out)
        if line["event"] != "gateway.stopped"
    ]
    assert [line["event"] for line in lines] == [
        "request.completed",
        "request.unhandled_exception",
    ]
    fine, unhandled = lines
    assert fine["trace_id"] == TRACE_ID
    assert fine["span_id"] == hexid(servers[200].context.span_id, 16)
    assert unhandled["trace_id"] == hexid(servers[500].context.trace_id, 32)
    assert unhandled["span_id"] == hexid(servers[500].context.span_id, 16)
    # Outside a request (start-up, shutdown) there is no span, and no ids.
    assert "trace_id" not in log_lines(b'{"event": "x"}')[0]


async def test_with_tracing_off_log_lines_carry_no_trace_ids(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    async with in_process_gateway(tmp_path, Upstream()) as g:
        await g.chat(headers={"traceparent": TRACEPARENT})
    (completed,) = [
        line
        for line in log_lines(capsysbinary.readouterr().out)
        if line["event"] == "request.completed"
    ]
    assert "trace_id" not in completed
    assert "span_id" not in completed


async def test_the_provider_and_address_come_from_the_upstreams_config(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    other = "  other:\n    base_url: https://api.mistral.ai/v1\n    provider: mistral_ai\n"
    routes = routes_text(candidate_upstream="other", extra_upstreams=other)
    async with in_process_gateway(
        tmp_path, Upstream(), routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        await g.chat()
    (client,) = by_name(exporter.get_finished_spans(), f"chat {CANDIDATE}")
    assert client.attributes is not None
    assert client.attributes["gen_ai.provider.name"] == "mistral_ai"
    assert client.attributes["server.address"] == "api.mistral.ai"
    assert client.attributes["server.port"] == 443
    assert client.attributes["gateway.upstream"] == "other"


_PROBE = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from gateway.telemetry.tracing import provider_from_environment

if sys.argv[1] == "instrumented":  # as opentelemetry-instrument leaves the process
    trace.set_tracer_provider(TracerProvider())
before = trace.get_tracer_provider()
provider, owned = provider_from_environment(dict(a.split("=", 1) for a in sys.argv[2:]))
name = None if provider is None else str(provider.resource.attributes["service.name"])
service = name and name.split(":")[0]
current = trace.get_tracer_provider()
print(type(provider).__name__, owned, provider is before, current is provider, service)
"""


@pytest.mark.parametrize(
    ("argv", "printed"),
    [
        # Built from the environment, owned, and made the process's provider.
        (
            ["plain", "OTEL_TRACES_EXPORTER=console"],
            "TracerProvider True False True llm-flag-gateway",
        ),
        # Under opentelemetry-instrument: its provider is used, not replaced nor shut down.
        (["instrumented"], "TracerProvider False True True unknown_service"),
    ],
)
def test_the_provider_comes_from_the_environment_or_the_process(
    argv: list[str], printed: str
) -> None:
    """In a child process: the global tracer provider can be set once per process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.strip() == printed


def test_an_unknown_exporter_stops_the_gateway_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build_gateway`` is what ``gateway serve`` and ``check-config`` run first."""
    from gateway.app import build_gateway
    from gateway.settings import Settings

    path = tmp_path / "routes.yaml"
    path.write_text(routes_text())
    settings = Settings(
        _env_file=None,
        config=path,
        allow_open_access=True,
        flag_store=f"sqlite:///{tmp_path}/flags.db",
    )
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="unknown exporter zipkin"):
        build_gateway(settings)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert build_gateway(settings).tracing is None


async def test_pass_through_endpoints_pass_the_trace_on(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    """/v1/embeddings: the caller's headers as they came with tracing off; with tracing on the
    context of the call's own client span, a child of the server span."""
    routes = routes_text() + "passthrough:\n  up: [emb]\n"
    raw = b'{"model": "emb", "input": "a"}'
    auth = {"authorization": "Bearer sk-inproc-client-7f3a", "traceparent": TRACEPARENT}
    seen: list[httpx.Headers] = []
    current: list[int] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        current.append(trace.get_current_span().get_span_context().span_id)
        return httpx.Response(
            200,
            json={"object": "list", "data": [], "model": "emb-v2", "usage": {"prompt_tokens": 4}},
        )

    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    async with in_process_gateway(tmp_path / "off", upstream, routes=routes) as g:
        assert (await g.client.post("/v1/embeddings", content=raw, headers=auth)).is_success
    async with in_process_gateway(
        tmp_path / "on", upstream, routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        assert (await g.client.post("/v1/embeddings", content=raw, headers=auth)).is_success
    off, on = seen
    assert off["traceparent"] == TRACEPARENT
    spans = exporter.get_finished_spans()
    (server,) = by_name(spans, "POST /v1/embeddings")
    (client,) = by_name(spans, "embeddings emb")
    assert hexid(server.context.trace_id, 32) == TRACE_ID
    assert client.kind == SpanKind.CLIENT
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert on["traceparent"] == traceparent_of(client)
    assert current[1] == client.context.span_id
    assert dict(client.attributes or {}) == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "emb",
        "gen_ai.response.model": "emb-v2",
        "gen_ai.usage.input_tokens": 4,
        "server.address": "up.test",
        "server.port": 80,
        "gateway.upstream": "up",
        "gateway.route": "emb",
        "gateway.variant": "passthrough",
        "gateway.decision": "passthrough",
    }
    assert client.status.status_code == StatusCode.UNSET


async def test_a_pass_through_completion_stream_is_a_text_completion_span_ending_with_it(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    routes = routes_text() + "passthrough:\n  up: [inst]\n"
    events = [
        b'data: {"object": "text_completion", "choices": [{"index": 0, "text": "hi"}]}\n\n',
        b'data: {"object": "text_completion", "choices": [], '
        b'"usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\n',
        b"data: [DONE]\n\n",
    ]
    seen: list[httpx.Headers] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=ScriptedStream([*events])
        )

    body = {"model": "inst", "prompt": "say hi", "stream": True}
    auth = {"authorization": "Bearer sk-inproc-client-7f3a"}
    async with in_process_gateway(
        tmp_path, upstream, routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.client.post("/v1/completions", json=body, headers=auth)
    assert response.status_code == 200
    assert response.content.endswith(b"data: [DONE]\n\n")
    spans = exporter.get_finished_spans()
    server = the_server_span(spans)
    (client,) = by_name(spans, "text_completion inst")
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert client.attributes is not None
    assert client.attributes["gen_ai.operation.name"] == "text_completion"
    assert client.attributes["gen_ai.usage.input_tokens"] == 5
    assert client.attributes["gen_ai.usage.output_tokens"] == 2
    assert client.status.status_code == StatusCode.UNSET
    (sent,) = seen
    assert sent["traceparent"] == traceparent_of(client)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(500, json={"error": {"message": "down"}}), "500"),
        (httpx.Response(200, content=b"not json"), "upstream_invalid_response"),
    ],
)
async def test_a_failed_pass_through_call_marks_its_client_span(
    tmp_path: Path, exporter: InMemorySpanExporter, answer: httpx.Response, kind: str
) -> None:
    routes = routes_text() + "passthrough:\n  up: [emb]\n"

    async def upstream(request: httpx.Request) -> httpx.Response:
        return answer

    auth = {"authorization": "Bearer sk-inproc-client-7f3a"}
    async with in_process_gateway(
        tmp_path, upstream, routes=routes, tracer_provider=provider_for(exporter)
    ) as g:
        response = await g.client.post(
            "/v1/embeddings", json={"model": "emb", "input": "a"}, headers=auth
        )
    assert response.status_code == 502
    (client,) = by_name(exporter.get_finished_spans(), "embeddings emb")
    assert client.status.status_code == StatusCode.ERROR
    assert client.attributes is not None
    assert client.attributes["error.type"] == kind
    assert "gen_ai.usage.input_tokens" not in client.attributes
