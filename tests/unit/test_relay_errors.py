"""Error replies in process: no secret relayed, the routing headers, Allow on a 405."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.inprocess import (
    ADMIN_KEY,
    CLIENT_KEY,
    ScriptedStream,
    in_process_gateway,
    routes_text,
    sse,
)

UPSTREAM_KEY = "sk-upstream-very-secret-0c1d"


def echoing(status: int) -> object:
    """An upstream that echoes the request's Authorization header (and, for good measure, the
    gateway's client and admin keys) in its error body."""

    async def upstream(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        message = f"Invalid header 'Authorization: {auth}' (also seen: {CLIENT_KEY}, {ADMIN_KEY})"
        return httpx.Response(
            status, json={"error": {"message": message, "type": "invalid_request_error"}}
        )

    return upstream


@pytest.mark.parametrize("status", [400, 401, 422, 429])
async def test_an_upstream_error_echoing_the_upstream_key_is_relayed_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """The upstream's key (and any client or admin key) is replaced by [redacted] in the error
    relayed to the client; the rest of the upstream's message is kept."""
    monkeypatch.setenv("H3_UPSTREAM_KEY", UPSTREAM_KEY)
    routes = routes_text(weight=0, upstream_extra="    api_key_env: H3_UPSTREAM_KEY\n")
    async with in_process_gateway(tmp_path, echoing(status), routes=routes) as g:  # type: ignore[arg-type]
        response = await g.chat()
        assert response.status_code >= 400
        for secret in (UPSTREAM_KEY, CLIENT_KEY, ADMIN_KEY):
            assert secret not in response.text
        if status != 401:  # 401 is the gateway's own misconfiguration: its own message, a 502
            assert "Bearer [redacted]" in response.json()["error"]["message"]


async def test_an_error_event_mid_stream_echoing_a_key_is_relayed_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream error event in a stream is relayed as it came, minus the secrets."""
    monkeypatch.setenv("H3_UPSTREAM_KEY", UPSTREAM_KEY)
    error = {"error": {"message": f"key {UPSTREAM_KEY} over quota"}}
    stream = ScriptedStream(
        [sse("bill", done=False), b"data: " + json.dumps(error).encode() + b"\n\n"]
    )

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})

    routes = routes_text(weight=0, upstream_extra="    api_key_env: H3_UPSTREAM_KEY\n")
    async with in_process_gateway(tmp_path, upstream, routes=routes) as g:
        response = await g.chat({"stream": True})
        assert response.status_code == 200
        assert UPSTREAM_KEY not in response.text
        assert "key [redacted] over quota" in response.text


async def failing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500, json={"error": {"message": "boom"}})


async def test_an_upstream_error_reply_carries_route_variant_and_decision(tmp_path: Path) -> None:
    """A 502 after routing says which route, variant and decision it came from."""
    async with in_process_gateway(tmp_path, failing, routes=routes_text(weight=0)) as g:
        response = await g.chat()
        assert response.status_code == 502
        assert response.headers["x-gateway-route"] == "triage"
        assert response.headers["x-gateway-variant"] == "fall"
        assert response.headers["x-gateway-decision"] == "rollout"


async def test_an_error_before_the_variant_is_chosen_carries_only_the_route(
    tmp_path: Path,
) -> None:
    """An unknown forced variant fails after the route is known, before any variant."""
    async with in_process_gateway(tmp_path, failing) as g:
        response = await g.chat(headers={"x-gateway-variant": "nope"})
        assert response.status_code in (400, 403)
        assert response.headers["x-gateway-route"] == "triage"
        assert "x-gateway-variant" not in response.headers
        assert "x-gateway-decision" not in response.headers


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"]
)
async def test_a_wrong_method_is_405_with_allow(tmp_path: Path, path: str) -> None:
    """GET on a POST endpoint (the raw data plane's included): 405 in OpenAI's envelope,
    with the Allow header."""
    async with in_process_gateway(tmp_path, failing) as g:
        response = await g.client.get(path, headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert response.status_code == 405
        assert "POST" in response.headers["allow"]
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
