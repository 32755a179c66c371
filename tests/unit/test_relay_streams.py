"""The stream relay in process: event size cap, and what happens before the 200 is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inprocess import (
    CANDIDATE,
    FALLBACK,
    ScriptedStream,
    in_process_gateway,
    routes_text,
    sse,
)

STREAM: dict[str, Any] = {"stream": True}


def error_events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.split("\n"):
        if line.startswith("data: {"):
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                out.append(event["error"])
    return out


async def test_an_event_over_the_size_cap_ends_the_stream_with_an_error_and_closes_upstream(
    tmp_path: Path,
) -> None:
    """An event larger than GATEWAY_UPSTREAM__MAX_EVENT_BYTES (here 4 KiB) is never buffered
    whole: the client gets the events before it and an error event, the upstream stream is
    closed without being read to its end, and the event is counted per upstream."""
    big = [b"data: {" + b"x" * 1024] + [b"y" * 1024] * 100
    body = ScriptedStream([sse("bill", done=False), *big, b"\n\n", sse("ing")])

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    async with in_process_gateway(
        tmp_path, upstream, upstream_settings={"max_event_bytes": 4096}
    ) as g:
        response = await g.chat(STREAM)
        assert response.status_code == 200
        assert '"bill"' in response.text
        assert [e["code"] for e in error_events(response.text)] == ["upstream_event_too_large"]
        assert "[DONE]" not in response.text
        assert body.closed
        assert body.read < len(body.chunks) // 2
        assert g.metric("gateway_upstream_events_too_large_total", upstream="up") == 1
        assert g.metric("gateway_requests_total", status="502") == 1


def sse_response(
    stream: httpx.AsyncByteStream | bytes, content_type: str = "text/event-stream"
) -> httpx.Response:
    """A 200 response with ``stream`` as its body, unread (as a real transport returns it)."""
    if isinstance(stream, bytes):
        stream = ScriptedStream([stream])
    return httpx.Response(200, headers={"content-type": content_type}, stream=stream)


def by_model(candidate: httpx.Response, fallback: httpx.Response | None = None) -> Any:
    """An upstream answering the candidate model with ``candidate``, the fallback with
    ``fallback`` (default: a good stream); it records the models it was asked for."""
    asked: list[str] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        asked.append(model)
        if model == CANDIDATE:
            return candidate
        return fallback if fallback is not None else sse_response(sse("bill", "ing"))

    upstream.asked = asked  # type: ignore[attr-defined]
    return upstream


INVALID_STARTS = {
    "html": (b"<html><body>\n\n<h1>502 Bad Gateway</h1>\n\n</body></html>", "text/html"),
    "garbage": (b"data: {garbage\n\n", "text/event-stream"),
    "json-error-200": (b'{"error": {"message": "overloaded"}}', "application/json"),
    "error-event": (b'data: {"error": {"message": "overloaded"}}\n\n', "text/event-stream"),
    "empty": (b"", "text/event-stream"),
    "comments-only": (b": ping\n\n: ping\n\n", "text/event-stream"),
}


@pytest.mark.parametrize("start", list(INVALID_STARTS), ids=list(INVALID_STARTS))
async def test_a_stream_that_starts_invalid_fails_over_before_the_200(
    tmp_path: Path, start: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate's first answer is not a chat completion stream (HTML, garbage, a JSON
    error or an error event with status 200, nothing): the fallback answers the same request
    and the candidate's failure is counted for the guard once, as for a unary failover."""
    upstream = by_model(sse_response(*INVALID_STARTS[start]))
    async with in_process_gateway(tmp_path, upstream) as g:
        observed: list[tuple[str, bool]] = []
        original = g.gw.quality.guard.observe

        def spy(route: str, rollout_id: str, role: Any, failed: bool) -> None:
            observed.append((role, failed))
            original(route, rollout_id, role, failed)

        monkeypatch.setattr(g.gw.quality.guard, "observe", spy)
        response = await g.chat(STREAM)
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-decision"] == "failover"
        assert response.headers["x-gateway-variant"] == "fall"
        assert '"bill"' in response.text
        assert response.text.endswith("data: [DONE]\n\n")
        assert error_events(response.text) == []
        assert upstream.asked == [CANDIDATE, FALLBACK]
        assert g.metric("gateway_failovers_total", reason="invalid_response") == 1
        assert observed == [("candidate", True), ("fallback", False)]


async def test_a_stream_that_starts_invalid_without_failover_is_a_json_502(
    tmp_path: Path,
) -> None:
    """With no failover possible (the fallback itself answers HTML), the client gets a 502
    JSON error, not a 200 stream with an error inside."""
    html = sse_response(*INVALID_STARTS["html"])
    async with in_process_gateway(
        tmp_path, by_model(html, html), routes=routes_text(weight=0)
    ) as g:
        response = await g.chat(STREAM)
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "upstream_invalid_response"


async def test_comments_before_the_first_event_are_relayed_in_order(tmp_path: Path) -> None:
    """Keep-alive comments before the first data event are kept and sent first."""
    body = b": keep-alive\n\n" + sse("bill")
    async with in_process_gateway(tmp_path, by_model(sse_response(body))) as g:
        response = await g.chat(STREAM)
        assert response.status_code == 200
        assert response.headers["x-gateway-decision"] == "rollout"
        assert response.text.startswith(": keep-alive\n\ndata: ")
        assert response.text.endswith("data: [DONE]\n\n")


async def test_a_stream_with_no_first_event_before_the_deadline_fails_over_as_timeout(
    tmp_path: Path,
) -> None:
    """Headers, then only keep-alive comments: the read timeout (2 s) never fires, the deadline
    to the first event (0.3 s here) does; the candidate fails over with reason timeout."""
    trickle = ScriptedStream([x for _ in range(100) for x in (b": ping\n\n", 0.05)])
    routes = routes_text(
        candidate_upstream="slow",
        extra_upstreams="  slow: {base_url: http://slow.test/v1, timeout_s: 2, deadline_s: 0.3}\n",
    )
    async with in_process_gateway(tmp_path, by_model(sse_response(trickle)), routes=routes) as g:
        response = await g.chat(STREAM)
        assert response.status_code == 200
        assert response.headers["x-gateway-decision"] == "failover"
        assert g.metric("gateway_failovers_total", reason="timeout") == 1
        assert trickle.closed
        assert trickle.read < 50
