"""Request handling in process: what reaches the client and the metrics for odd requests."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.inprocess import CLIENT_KEY, completion, in_process_gateway


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
