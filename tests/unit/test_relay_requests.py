"""Request handling in process: what reaches the client and the metrics for odd requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.openai import MAX_SUBJECT_CHARS
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


async def test_a_client_gone_during_a_unary_call_cancels_the_upstream_call_and_records_499(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client hangs up while the upstream is still thinking: the upstream call is
    cancelled at once (not awaited to its end), the request is recorded as 499 with
    client_disconnected, and the guard counts nothing against the candidate."""
    arrived = asyncio.Event()
    cancelled = asyncio.Event()

    async def thinking(request: httpx.Request) -> httpx.Response:
        arrived.set()
        try:
            await asyncio.Event().wait()  # never answers by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with in_process_gateway(tmp_path, thinking) as g:
        observed: list[Any] = []
        monkeypatch.setattr(g.gw.quality.guard, "observe", lambda *a: observed.append(a))
        body = json.dumps({"model": "triage", "messages": [{"role": "user", "content": "x"}]})
        gone = asyncio.Event()
        messages = [{"type": "http.request", "body": body.encode(), "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"gateway.test"),
                (b"authorization", f"Bearer {CLIENT_KEY}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", b"gone-unary"),
            ],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        call = asyncio.create_task(g.app(scope, receive, send))  # type: ignore[arg-type]
        await asyncio.wait_for(arrived.wait(), 10)
        gone.set()
        await asyncio.wait_for(cancelled.wait(), 10)
        await asyncio.wait_for(call, 10)
        assert g.metric("gateway_requests_total", status="499", variant="cand") == 1
        assert g.metric("gateway_inflight_requests") == 0
        assert observed == []
    completed = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if '"request.completed"' in line
    ]
    assert [(e["request_id"], e["status"], e.get("client_disconnected")) for e in completed] == [
        ("gone-unary", 499, True)
    ]


async def test_an_overlong_subject_header_is_a_400_naming_the_header(tmp_path: Path) -> None:
    """A 1 MB x-gateway-subject is refused (400, param names the header), not bucketed; a
    subject of the maximum length is fine."""
    async with in_process_gateway(tmp_path, ok) as g:
        response = await g.chat(headers={"x-gateway-subject": "u" * 1_000_000})
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "x-gateway-subject")
        assert g.metric("gateway_requests_total", status="400") == 1
        fine = await g.chat(headers={"x-gateway-subject": "u" * MAX_SUBJECT_CHARS})
        assert fine.status_code == 200
