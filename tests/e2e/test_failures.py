"""Failure paths end to end: every failure is a clean OpenAI error, and the gateway lives on.

The gateway and the simulator run in-process (``tests.inprocess_sim``: both ASGI apps in one
event loop, streamed like a server would, read timeouts enforced); the simulator injects the
upstream's faults, the gateway is started with the routes file each case needs. One test is over
real TCP (gateway in-process, its own transport): a refused connection and the upstream coming
back on its port. Each failure test checks the status, the error envelope (no stack trace, no
key) and that the next ordinary request is answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.support import (
    AUTH,
    TICKET,
    AnyGateway,
    assert_error_envelope,
    assert_serves_normally,
    chat,
    metric_value,
    wait_for,
)
from tests.inprocess_sim import (
    REAL_TRANSPORT,
    AsgiStreamTransport,
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    RefusingTransport,
    serve_on_port,
    start_in_process,
)
from tests.processes import (
    CANDIDATE_MODEL,
    CLIENT_KEY,
    FALLBACK_MODEL,
    free_port,
    routes_yaml,
)

ROUTE = "support-triage"
MAX_BODY_BYTES = 2048
STREAM_BODY: dict[str, Any] = {
    "model": ROUTE,
    "messages": [{"role": "user", "content": TICKET}],
    "stream": True,
}


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    """This test's own simulator, in-process."""
    return in_sim


@pytest.fixture
def direct(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    """Weight 0: every request goes straight to the fallback, so nothing can fail over.

    Request bodies are limited to 2 KiB (every other test here sends far less).
    """
    routes = routes_yaml(sim.url, weight=0, timeout_s=0.5)
    env = {"GATEWAY_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with start_in_process(loop_thread, tmp_path / "direct", routes, sim, env=env) as gw:
        yield gw


@pytest.fixture
def failover(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    """Weight 100000: every request goes to the candidate; failover on every reason."""
    routes = routes_yaml(sim.url, weight=100_000, timeout_s=0.5)
    with start_in_process(loop_thread, tmp_path / "failover", routes, sim) as gw:
        yield gw


@pytest.fixture
def no_5xx_failover(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    """Weight 100000, failing over only on connect and timeout (not on 5xx or 429)."""
    routes = routes_yaml(sim.url, weight=100_000, timeout_s=0.5, failover_on="[connect, timeout]")
    with start_in_process(loop_thread, tmp_path / "no-5xx-failover", routes, sim) as gw:
        yield gw


def sse_events(body: str) -> list[str]:
    """The ``data`` of each SSE event in a raw stream body."""
    return [line[len("data: ") :] for line in body.split("\n") if line.startswith("data: ")]


def error_events(body: str) -> list[dict[str, Any]]:
    """The ``error`` objects of the stream's error events."""
    out = []
    for data in sse_events(body):
        if data == "[DONE]":
            continue
        event = json.loads(data)
        if "error" in event:
            out.append(event["error"])
    return out


def failovers(gw: AnyGateway, reason: str) -> float:
    return metric_value(gw.metrics(), "gateway_failovers_total", route=ROUTE, reason=reason)


def completed_event(gw: AnyGateway, request_id: str) -> dict[str, Any]:
    """The one ``request.completed`` log event of ``request_id`` (waits for it to be written)."""
    events = wait_for(
        lambda: [e for e in gw.log_events("request.completed") if e["request_id"] == request_id],
        f"request.completed of {request_id}",
    )
    assert len(events) == 1, events
    return events[0]


# --- the upstream cannot be reached or is too slow -------------------------------------------


@pytest.mark.e2e
def test_refused_upstream_is_502_connect_error_and_recovers_when_it_comes_back(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Over real TCP: the gateway (in-process, its upstream's own transport) meets a refused
    connection, then the simulator comes back on that port (uvicorn in this process)."""
    port = free_port()
    routes = routes_yaml(f"http://127.0.0.1:{port}", weight=0)
    upstreams = {"simulator": REAL_TRANSPORT}
    with start_in_process(loop_thread, tmp_path, routes, None, upstreams=upstreams) as gw:
        for _ in range(2):  # a second failure is as clean as the first; nothing is wedged
            assert_error_envelope(
                chat(gw), 502, code="upstream_connect_error", error_type="upstream_error"
            )
        assert gw.http.get("/healthz").status_code == 200
        with serve_on_port(loop_thread, sim.app, port):
            assert_serves_normally(gw)


def test_connect_failure_of_the_candidate_fails_over_to_the_fallback(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    dead = "http://dead.test/v1"  # answered by a transport that refuses every connection
    routes = routes_yaml(
        sim.url,
        weight=100_000,
        extra_upstreams=f"  dead:\n    base_url: {dead}\n    timeout_s: 1\n",
    )
    candidate_upstream = f'upstream: simulator\n        model: "{CANDIDATE_MODEL}"'
    assert candidate_upstream in routes
    routes = routes.replace(
        candidate_upstream, f'upstream: dead\n        model: "{CANDIDATE_MODEL}"'
    )
    with start_in_process(
        loop_thread, tmp_path, routes, sim, upstreams={"dead": RefusingTransport()}
    ) as gw:
        response = chat(gw)
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-decision"] == "failover"
        assert response.headers["x-gateway-variant"] == "prompted"
        assert failovers(gw, "connect") == 1


def test_upstream_slower_than_timeout_is_504(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, latency_ms=1500)
    assert_error_envelope(chat(direct), 504, code="upstream_timeout")
    sim.reset()
    assert_serves_normally(direct)


# --- the upstream answers an error status ----------------------------------------------------


@pytest.mark.parametrize(
    ("upstream_status", "status", "code"),
    [(500, 502, "upstream_status_500"), (503, 503, "upstream_status_503")],
)
def test_upstream_5xx_is_mapped_to_502_or_kept_as_503(
    direct: InProcessGatewayUnderTest,
    sim: InProcessSimulator,
    upstream_status: int,
    status: int,
    code: str,
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, error_rate=1, error_status=upstream_status)
    assert_error_envelope(chat(direct), status, code=code)
    sim.reset()
    assert_serves_normally(direct)


def test_upstream_429_is_relayed_with_retry_after(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, error_rate=1, error_status=429)
    response = chat(direct)
    assert_error_envelope(response, 429, code="rate_limit_exceeded")
    assert response.headers["retry-after"] == "1"
    client = direct.openai()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=ROUTE, messages=[{"role": "user", "content": TICKET}])
    sim.reset()
    assert_serves_normally(direct)


def test_garbage_json_from_upstream_is_502_invalid_response(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, garbage_rate=1)
    assert_error_envelope(chat(direct), 502, code="upstream_invalid_response")
    sim.reset()
    assert_serves_normally(direct)


# --- failover to the fallback ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ({"error_rate": 1, "error_status": 500}, "5xx"),
        ({"error_rate": 1, "error_status": 503}, "5xx"),
        ({"error_rate": 1, "error_status": 429}, "429"),
        ({"latency_ms": 1500}, "timeout"),
        ({"garbage_rate": 1}, "invalid_response"),
    ],
    ids=["500", "503", "429", "timeout", "garbage"],
)
def test_failing_candidate_is_answered_by_the_fallback_in_the_same_request(
    failover: InProcessGatewayUnderTest,
    sim: InProcessSimulator,
    behaviour: dict[str, Any],
    reason: str,
) -> None:
    sim.set_behaviour(CANDIDATE_MODEL, **behaviour)
    before = failovers(failover, reason)
    client = failover.openai()
    raw = client.chat.completions.with_raw_response.create(
        model=ROUTE,
        messages=[{"role": "user", "content": TICKET}],
    )
    assert raw.parse().choices[0].message.content == "billing"
    assert raw.parse().model == ROUTE  # response_model: route (the default)
    assert raw.headers["x-gateway-decision"] == "failover"
    assert raw.headers["x-gateway-variant"] == "prompted"
    assert failovers(failover, reason) == before + 1
    models = sim.stats()["models"]
    assert models[CANDIDATE_MODEL]["requests"] == 1
    assert models[FALLBACK_MODEL]["requests"] == 1
    event = completed_event(failover, raw.headers["x-request-id"])
    assert event["status"] == 200
    assert event["decision"] == "failover"
    assert event["variant"] == "prompted"
    assert event["failover_reason"] == reason
    assert event["failed_variant"] == "finetuned"


def test_streaming_request_fails_over_before_the_first_byte(
    failover: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(CANDIDATE_MODEL, error_rate=1, error_status=500)
    client = failover.openai()
    with client.chat.completions.with_streaming_response.create(
        model=ROUTE, messages=[{"role": "user", "content": TICKET}], stream=True
    ) as response:
        assert response.headers["x-gateway-decision"] == "failover"
        assert response.headers["x-gateway-variant"] == "prompted"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "billing"


@pytest.mark.parametrize(
    ("upstream_status", "status"), [(500, 502), (429, 429)], ids=["500", "429"]
)
def test_no_failover_when_the_reason_is_not_in_failover_on(
    no_5xx_failover: InProcessGatewayUnderTest,
    sim: InProcessSimulator,
    upstream_status: int,
    status: int,
) -> None:
    sim.set_behaviour(CANDIDATE_MODEL, error_rate=1, error_status=upstream_status)
    response = chat(no_5xx_failover)
    assert_error_envelope(response, status)
    assert FALLBACK_MODEL not in sim.stats()["models"]
    text = no_5xx_failover.metrics()
    assert metric_value(text, "gateway_failovers_total") == 0
    assert (
        metric_value(
            text,
            "gateway_requests_total",
            route=ROUTE,
            variant="finetuned",
            decision="rollout",
            status=str(status),
        )
        == 1
    )
    sim.reset()
    response = chat(no_5xx_failover)
    assert response.status_code == 200
    assert response.headers["x-gateway-variant"] == "finetuned"


# --- streams that break ----------------------------------------------------------------------


def test_streaming_request_failing_before_the_first_byte_gets_a_json_error_not_sse(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, error_rate=1, error_status=500)
    assert_error_envelope(chat(direct, STREAM_BODY), 502, code="upstream_status_500")
    sim.reset()
    assert_serves_normally(direct)


def test_stream_cut_by_the_upstream_ends_in_an_error_event_not_a_silent_truncation(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, cut_stream_after=1)
    response = chat(direct, STREAM_BODY)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert "[DONE]" not in events
    errors = error_events(response.text)
    assert len(errors) == 1, response.text
    assert set(errors[0]) == {"message", "type", "param", "code"}
    assert errors[0]["code"] in ("stream_interrupted", "upstream_connect_error")
    assert json.loads(events[-1]) == {"error": errors[0]}  # the error is the last word

    client = direct.openai()
    stream = client.chat.completions.create(
        model=ROUTE, messages=[{"role": "user", "content": TICKET}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    sim.reset()
    assert_serves_normally(direct)


def test_garbage_event_mid_stream_ends_in_an_error_event(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, garbage_rate=1)
    response = chat(direct, STREAM_BODY)
    assert response.status_code == 200
    assert "[DONE]" not in sse_events(response.text)
    assert "{garbage" not in response.text  # the broken event is not relayed
    errors = error_events(response.text)
    assert [e["code"] for e in errors] == ["upstream_invalid_response"], response.text
    sim.reset()
    assert_serves_normally(direct)


def test_upstream_stalling_mid_stream_past_the_timeout_ends_in_an_error_event(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, chunk_delay_ms=1500)  # timeout_s is 0.5
    response = chat(direct, STREAM_BODY)
    assert response.status_code == 200
    assert "[DONE]" not in sse_events(response.text)
    assert [e["code"] for e in error_events(response.text)] == ["upstream_timeout"]
    sim.reset()
    assert_serves_normally(direct)


def test_client_disconnect_mid_stream_closes_the_upstream_stream_and_logs_499(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    sim.set_behaviour(FALLBACK_MODEL, chunk_delay_ms=300, stream_chunks=20)
    request_id = "disconnect-mid-stream"
    with (
        direct.client(timeout=10) as http,
        http.stream(
            "POST",
            direct.base_url + "/chat/completions",
            json=STREAM_BODY,
            headers={**AUTH, "x-request-id": request_id},
        ) as response,
    ):
        assert response.status_code == 200
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert json.loads(first[len("data: ") :])["choices"]
    # Closed after one event of a 20 x 300 ms stream: the gateway must hang up upstream too.
    wait_for(
        lambda: sim.stats()["models"][FALLBACK_MODEL]["streams_disconnected"] == 1,
        "the simulator to see its stream disconnected",
    )
    assert sim.stats()["models"][FALLBACK_MODEL]["streams_completed"] == 0
    event = completed_event(direct, request_id)
    assert event["status"] == 499
    assert event["client_disconnected"] is True
    assert event["stream"] is True
    assert metric_value(direct.metrics(), "gateway_inflight_requests", route=ROUTE) == 0
    sim.reset()
    assert_serves_normally(direct)


def test_client_gone_before_the_upstream_answered_closes_the_upstream_stream_and_logs_499(
    direct: InProcessGatewayUnderTest, sim: InProcessSimulator
) -> None:
    # 2 s before the upstream's first byte: ample time to hang up first, even on a loaded
    # machine (the stream then starts and meets the disconnect, which the simulator counts).
    sim.set_behaviour(FALLBACK_MODEL, latency_ms=2000, chunk_delay_ms=100, stream_chunks=20)
    request_id = "gone-before-headers"
    app = direct.ipg.app
    request = httpx.Request(
        "POST",
        direct.base_url + "/chat/completions",
        json=STREAM_BODY,
        headers={**AUTH, "x-request-id": request_id},
        extensions={"timeout": {"read": 10.0}},
    )
    # The client's connection in-process: cancelling the call hangs up (http.disconnect).
    call = direct.loop.submit(AsgiStreamTransport(app).handle_async_request(request))
    # Hang up while the upstream is still in its latency, before any response byte.
    wait_for(
        lambda: sim.stats()["models"].get(FALLBACK_MODEL, {}).get("requests") == 1,
        "the request to reach the upstream",
    )
    assert not call.done()
    call.cancel()
    wait_for(
        lambda: sim.stats()["models"][FALLBACK_MODEL]["streams_disconnected"] == 1,
        "the gateway to close the upstream stream",
    )
    event = completed_event(direct, request_id)
    assert event["status"] == 499
    assert event["client_disconnected"] is True
    assert metric_value(direct.metrics(), "gateway_inflight_requests", route=ROUTE) == 0
    sim.reset()
    assert_serves_normally(direct)


# --- the client's request is wrong ------------------------------------------------------------


def test_malformed_json_is_400_invalid_request_error(direct: InProcessGatewayUnderTest) -> None:
    response = chat(direct, content=b'{"model": "support-triage", "messages": [')
    assert_error_envelope(response, 400, error_type="invalid_request_error")
    assert_serves_normally(direct)


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", 3), ("messages", "x"), ("stream", "yes")],
)
def test_wrong_field_type_is_400_naming_the_field(
    direct: InProcessGatewayUnderTest, field: str, value: object
) -> None:
    body = {"model": ROUTE, "messages": [{"role": "user", "content": TICKET}], field: value}
    response = chat(direct, body)
    assert_error_envelope(response, 400, error_type="invalid_request_error", param=field)
    assert_serves_normally(direct)


def test_empty_messages_is_400(direct: InProcessGatewayUnderTest) -> None:
    response = chat(direct, {"model": ROUTE, "messages": []})
    assert_error_envelope(response, 400, error_type="invalid_request_error", param="messages")
    assert_serves_normally(direct)


def test_body_over_the_limit_is_413_payload_too_large(direct: InProcessGatewayUnderTest) -> None:
    big = {"model": ROUTE, "messages": [{"role": "user", "content": "x" * 10_240}]}
    assert_error_envelope(chat(direct, big), 413, code="payload_too_large")
    assert_serves_normally(direct)


def test_missing_or_wrong_key_is_401_and_no_key_reaches_the_log(
    direct: InProcessGatewayUnderTest,
) -> None:
    wrong_key = "sk-wrong-3b1f7e0c9a"
    assert_error_envelope(chat(direct, authorization=None), 401, code="invalid_api_key")
    response = chat(direct, authorization=f"Bearer {wrong_key}")
    assert_error_envelope(response, 401, code="invalid_api_key")
    assert wrong_key not in response.text
    assert_serves_normally(direct)
    wait_for(
        lambda: any(e["status"] == 401 for e in direct.log_events("request.completed")),
        "the 401 to be logged",
    )
    log = direct.log_path.read_text()
    assert wrong_key not in log
    assert CLIENT_KEY not in log
