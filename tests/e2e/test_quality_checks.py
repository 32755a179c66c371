"""Contract checks in the request path, end to end.

A streamed answer is checked after it has been relayed, so the client gets the upstream's
content unchanged while ``gateway_quality_checks_total`` and the log event record the failure.
A non-streamed answer that breaks the contract is replaced by the fallback's when the route says
``on_violation: fallback``. The gateway and the simulator run in-process (``tests.inprocess_sim``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.tools.simulator.classifier import INVALID_LABELS
from tests.e2e.support import TICKET, chat, metric_value, wait_for
from tests.inprocess_sim import InProcessSimulator, LoopThread, start_in_process
from tests.processes import CANDIDATE_MODEL, FALLBACK_MODEL, routes_yaml

ROUTE = "support-triage"
LABELS = {"billing", "technical", "account"}


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    """This test's own simulator, in-process."""
    return in_sim


def stream_content(response: httpx.Response) -> tuple[str, list[str]]:
    """The concatenated delta content of an SSE answer and its ``data:`` payloads."""
    payloads = [
        line.removeprefix("data: ")
        for line in response.text.split("\n")
        if line.startswith("data: ")
    ]
    parts = []
    for payload in payloads:
        if payload == "[DONE]":
            continue
        event = json.loads(payload)
        assert "error" not in event, event
        for choice in event["choices"]:
            parts.append(choice["delta"].get("content") or "")
    return "".join(parts), payloads


def test_streamed_answers_failing_the_contract_reach_the_client_unchanged_and_are_counted(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Candidate at 100% answering invalid labels, no guard: every stream carries the
    simulator's own (invalid) answer and ends in [DONE]; the label check's failures are counted
    per stream and the log event names the failed check."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0, stream_chunks=3)
    routes = routes_yaml(sim.url, weight=100_000)
    n = 8
    with start_in_process(loop_thread, tmp_path, routes, sim) as gw:
        for i in range(n):
            body = {
                "model": ROUTE,
                "stream": True,
                "messages": [{"role": "user", "content": TICKET}],
            }
            response = chat(gw, body, headers={"x-request-id": f"stream-{i}"})
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-gateway-variant"] == "finetuned"
            content, payloads = stream_content(response)
            assert content in INVALID_LABELS  # the simulator's answer, not a replacement
            assert payloads[-1] == "[DONE]"
            assert payloads.count("[DONE]") == 1
            assert len(payloads) == 1 + 3 + 1 + 1  # role, 3 content chunks, finish, [DONE]

        def failed_checks() -> float:
            return metric_value(
                gw.metrics(),
                "gateway_quality_checks_total",
                route=ROUTE,
                variant="finetuned",
                check="labels",
                result="fail",
            )

        wait_for(lambda: failed_checks() == n, f"{n} failed label checks", 5)
        text = gw.metrics()
        assert (
            metric_value(
                text, "gateway_quality_checks_total", check="labels", result="pass", route=ROUTE
            )
            == 0
        )
        # Failing the contract is not an error: the requests are counted as 200s.
        assert (
            metric_value(
                text, "gateway_requests_total", route=ROUTE, variant="finetuned", status="200"
            )
            == n
        )

        def stream_events() -> list[dict[str, object]]:
            return [
                e
                for e in gw.log_events("request.completed")
                if str(e.get("request_id", "")).startswith("stream-")
            ]

        wait_for(lambda: len(stream_events()) == n, f"{n} log events", 5)
        for event in stream_events():
            assert event["stream"] is True
            assert event["status"] == 200
            assert event["checks_failed"] == ["labels"]


def test_violation_fallback_answers_from_the_fallback_when_the_candidate_breaks_the_contract(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """``on_violation: fallback``: an invalid candidate label never reaches the client; the
    fallback's valid label does, with ``x-gateway-decision: violation``."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
    routes = routes_yaml(sim.url, weight=100_000, route_extra="on_violation: fallback")
    n = 5
    with start_in_process(loop_thread, tmp_path, routes, sim) as gw:
        for i in range(n):
            response = chat(gw, headers={"x-request-id": f"violation-{i}"})
            assert response.status_code == 200, response.text
            assert response.headers["x-gateway-decision"] == "violation"
            assert response.headers["x-gateway-variant"] == "prompted"
            body = response.json()
            assert body["model"] == ROUTE  # response_model: route (the default)
            assert body["choices"][0]["message"]["content"] == "billing"

        stats = sim.stats()["models"]
        assert stats[CANDIDATE_MODEL]["requests"] == n  # the candidate was asked (and paid)
        assert stats[FALLBACK_MODEL]["requests"] == n
        text = gw.metrics()
        checks = "gateway_quality_checks_total"
        assert metric_value(text, checks, variant="finetuned", check="labels", result="fail") == n
        assert metric_value(text, checks, variant="prompted", check="labels", result="pass") == n
        assert (
            metric_value(text, "gateway_requests_total", decision="violation", variant="prompted")
            == n
        )
        events = [
            e
            for e in gw.log_events("request.completed")
            if str(e.get("request_id", "")).startswith("violation-")
        ]
        assert len(events) == n
        for event in events:
            assert event["decision"] == "violation"
            assert event["variant"] == "prompted"
            assert "checks_failed" not in event  # the answer the client got passed
