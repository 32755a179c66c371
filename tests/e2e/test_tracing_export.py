"""Traces leave a served gateway as a platform team would collect them (one real process).

``gateway serve`` runs with ``OTEL_TRACES_EXPORTER=otlp,console`` and
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a stand-in collector: a loopback HTTP server that
decodes OTLP/HTTP protobuf export requests (``opentelemetry-proto``) and also plays the
upstream, recording the ``traceparent`` it was sent. The client is the official ``openai`` SDK
sending a caller's ``traceparent``. After the gateway stops (its spans are flushed on shutdown),
the collector must hold the gateway's server span inside the caller's trace and its GenAI
client span, and the console exporter must have printed the same spans on stderr.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.inprocess import completion
from tests.processes import CANDIDATE_MODEL, routes_yaml, start_gateway

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


class Collector:
    """An OTLP/HTTP trace receiver on ``/v1/traces`` and a chat completions upstream on
    ``/v1/chat/completions``, on one loopback port."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.upstream_traceparents: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/v1/traces":
                    collector.receive(body)
                    self._answer(ExportTraceServiceResponse().SerializeToString(), "protobuf")
                else:
                    collector.upstream_traceparents.append(self.headers["traceparent"])
                    answer = completion("billing", model=CANDIDATE_MODEL)
                    self._answer(json.dumps(answer).encode(), "json")

            def _answer(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("content-type", f"application/{kind}")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            self.resources.append(resource)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    thread = threading.Thread(target=collector.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()
        collector.server.server_close()
        thread.join()


@pytest.mark.e2e
def test_a_served_gateway_exports_its_hop_inside_the_callers_trace(
    tmp_path: Path, collector: Collector
) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "gateway-under-test",
    }
    routes = routes_yaml(collector.url, weight=100_000)
    with start_gateway(tmp_path, routes, env=env) as gateway:
        answer = gateway.openai().chat.completions.create(
            model="support-triage",
            messages=[{"role": "user", "content": "I was charged twice"}],
            extra_headers={"traceparent": TRACEPARENT},
        )
        log_path = gateway.log_path
    assert answer.choices[0].message.content == "billing"

    # The collector: the server span in the caller's trace, the client span under it.
    assert {"service.name": "gateway-under-test"}.items() <= collector.resources[0].items()
    by_name = {span["name"]: span for span in collector.spans}
    server = by_name["POST /v1/chat/completions"]
    client = by_name[f"chat {CANDIDATE_MODEL}"]
    assert server["trace_id"] == TRACE_ID
    assert server["parent_span_id"] == "b7ad6b7169203331"
    assert server["attributes"]["gateway.route"] == "support-triage"
    assert client["trace_id"] == TRACE_ID
    assert client["parent_span_id"] == server["span_id"]
    assert client["attributes"]["gen_ai.operation.name"] == "chat"
    assert client["attributes"]["gen_ai.provider.name"] == "openai"
    assert client["attributes"]["gen_ai.request.model"] == CANDIDATE_MODEL
    assert client["attributes"]["gen_ai.usage.input_tokens"] == 3
    assert collector.upstream_traceparents == [f"00-{TRACE_ID}-{client['span_id']}-01"]

    # The console exporter printed the same spans, one JSON object per line, on stderr.
    printed = [
        json.loads(line) for line in log_path.read_text().splitlines() if line.startswith('{"name"')
    ]
    assert {span["name"] for span in printed} == set(by_name)
    (console_client,) = [s for s in printed if s["name"] == f"chat {CANDIDATE_MODEL}"]
    assert console_client["context"]["span_id"] == "0x" + client["span_id"]
    assert console_client["kind"] == "SpanKind.CLIENT"
    # Log lines of the request carry its server span's ids.
    (completed,) = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if '"request.completed"' in line
    ]
    assert completed["trace_id"] == TRACE_ID
    assert completed["span_id"] == server["span_id"]
