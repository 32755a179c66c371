"""Request handling in process: what reaches the client and the metrics for odd requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inprocess import (
    CLIENT_KEY,
    ScriptedStream,
    completion,
    in_process_gateway,
    routes_text,
)


async def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion())


async def test_a_2kb_body_nested_1000_deep_is_a_counted_400_not_a_500(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,000 levels of nesting: 400 invalid_request_error in OpenAI's envelope, counted in
    gateway_requests_total, and no error-level log line with a traceback."""
    raw = b'{"model": "triage", "messages": [{"role": "user", "content": "x"}], "x": '
    raw += b"[" * 1000 + b"]" * 1000 + b"}"
    assert len(raw) < 2100
    async with in_process_gateway(tmp_path, ok) as g:
        response = await g.client.post(
            "/v1/chat/completions",
            content=raw,
            headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert g.metric("gateway_requests_total", status="400") == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert '"level":"error"' not in out


def trickle_upstream(stream: ScriptedStream) -> Any:
    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream, headers={"content-type": "application/json"})

    return upstream


async def test_a_trickling_unary_answer_ends_at_the_deadline_as_a_504(tmp_path: Path) -> None:
    """One byte every 50 ms never trips the 2 s read timeout; the upstream's 0.3 s deadline
    ends the call: 504 upstream_timeout, the upstream closed, counted with status 504."""
    stream = ScriptedStream([x for _ in range(100) for x in (b" ", 0.05)])
    routes = routes_text(weight=0, upstream_extra="    deadline_s: 0.3\n")
    async with in_process_gateway(tmp_path, trickle_upstream(stream), routes=routes) as g:
        response = await g.chat()
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "upstream_timeout"
        assert "deadline" in response.json()["error"]["message"]
        assert stream.closed
        assert stream.read < 50
        assert g.metric("gateway_requests_total", status="504") == 1


async def test_a_candidate_past_its_deadline_fails_over_with_reason_timeout(
    tmp_path: Path,
) -> None:
    """The candidate's upstream trickles past its deadline; the fallback answers."""
    stream = ScriptedStream([x for _ in range(100) for x in (b" ", 0.05)])

    async def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow.test":
            return httpx.Response(200, stream=stream)
        return httpx.Response(200, json=completion())

    routes = routes_text(
        candidate_upstream="slow",
        extra_upstreams="  slow: {base_url: http://slow.test/v1, timeout_s: 2, deadline_s: 0.3}\n",
    )
    async with in_process_gateway(tmp_path, upstream, routes=routes) as g:
        response = await g.chat()
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-decision"] == "failover"
        assert g.metric("gateway_failovers_total", reason="timeout") == 1
