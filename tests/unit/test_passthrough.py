"""The pass-through relay against scripted upstreams (in-process, no sockets): what goes up,
redaction, upstream failures, a client leaving mid-stream; and the pure route look-up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.passthrough import passthrough_route
from gateway.config import load_config
from gateway.errors import InvalidRequestError, ModelNotFoundError
from tests.inprocess import CLIENT_KEY, ScriptedStream, in_process_gateway, routes_text

SECRET = "sk-upstream-secret-4242"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
ROUTES = (
    routes_text(upstream_extra="    api_key_env: PT_UPSTREAM_KEY\n")
    + "passthrough:\n  up: [emb, inst]\n"
    + "prices:\n  emb: {input: 0.1, output: 0}\n  inst: {input: 1, output: 2}\n"
)


@pytest.fixture(autouse=True)
def upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PT_UPSTREAM_KEY", SECRET)


def text_event(text: str, **extra: Any) -> bytes:
    chunk = {"object": "text_completion", "choices": [{"index": 0, "text": text}], **extra}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def test_route_lookup_is_pure_and_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    routes = load_config(path).routes
    assert passthrough_route(routes, "emb", "embeddings").name == "emb"
    with pytest.raises(ModelNotFoundError):
        passthrough_route(routes, "nope", "embeddings")
    with pytest.raises(InvalidRequestError) as caught:
        passthrough_route(routes, "triage", "completions")
    assert caught.value.code == "model_not_supported"
    assert caught.value.param == "model"


async def test_the_body_goes_up_as_sent_to_the_same_path_with_the_upstream_key(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"object": "list", "data": [], "usage": {"prompt_tokens": 7}}
        )

    raw = b'{"model": "emb", "input": ["a", "b"], "dimensions": 3,  "user": "u1"}'
    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        response = await ipg.client.post(
            "/v1/embeddings", content=raw, headers={**AUTH, "x-request-id": "pt-1"}
        )
        assert response.status_code == 200
        assert ipg.metric("gateway_tokens_total", route="emb", type="input") == 7
        assert ipg.metric("gateway_cost_usd_total", route="emb") == pytest.approx(7 * 0.1 / 1e6)
    (request,) = seen
    assert request.url.path == "/v1/embeddings"
    assert request.content == raw
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-request-id"] == "pt-1"
    assert response.headers["x-request-id"] == "pt-1"


async def test_upstream_errors_echoing_the_key_are_redacted(tmp_path: Path) -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(
            400, json={"error": {"message": f"bad request with {echoed}", "type": "x"}}
        )

    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        response = await ipg.client.post(
            "/v1/embeddings", json={"model": "emb", "input": "x"}, headers=AUTH
        )
    assert response.status_code == 400
    assert SECRET not in response.text
    assert "[redacted]" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (httpx.ConnectError("refused"), 502, "upstream_connect_error"),
        (httpx.ReadTimeout("slow"), 504, "upstream_timeout"),
    ],
)
async def test_transport_failures_become_openai_errors(
    tmp_path: Path, error: Exception, status: int, code: str
) -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        raise error

    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        response = await ipg.client.post(
            "/v1/completions", json={"model": "inst", "prompt": "x"}, headers=AUTH
        )
        assert ipg.metric("gateway_requests_total", route="inst", status=str(status)) == 1
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["x-gateway-variant"] == "passthrough"


async def test_a_stream_asks_for_usage_and_relays_a_redacted_error_event(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        error = {"error": {"message": f"overloaded {SECRET}", "type": "server_error"}}
        body = text_event("bill") + b"data: " + json.dumps(error).encode() + b"\n\n"
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=ScriptedStream([body])
        )

    body = {"model": "inst", "prompt": "x", "stream": True, "stream_options": {"other": 1}}
    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        response = await ipg.client.post("/v1/completions", json=body, headers=AUTH)
        assert ipg.metric("gateway_requests_total", route="inst", status="502") == 1
    assert response.status_code == 200
    assert sent[0]["stream_options"] == {"other": 1, "include_usage": True}
    assert sent[0]["prompt"] == "x"
    assert "bill" in response.text
    assert SECRET not in response.text
    assert "[redacted]" in response.text
    assert "[DONE]" not in response.text


async def test_a_client_leaving_mid_stream_closes_the_upstream_and_is_a_499(
    tmp_path: Path,
) -> None:
    upstream_body = ScriptedStream([text_event("bi"), 30.0, text_event("lling")])

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=upstream_body
        )

    request_body = json.dumps({"model": "inst", "prompt": "x", "stream": True}).encode()
    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        first_chunk = asyncio.Event()
        gone = asyncio.Event()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                first_chunk.set()

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/completions",
            "headers": [(b"authorization", AUTH["authorization"].encode())],
        }
        serving = asyncio.create_task(ipg.app(scope, receive, send))  # type: ignore[arg-type]
        await asyncio.wait_for(first_chunk.wait(), 10)
        gone.set()
        await asyncio.wait_for(serving, 10)
        assert ipg.metric("gateway_requests_total", route="inst", status="499") == 1
        assert ipg.metric("gateway_inflight_requests", route="inst") == 0
    assert upstream_body.closed


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": 7}, "model"),
        ({"model": "inst", "stream": "yes"}, "stream"),
        (
            {"model": "inst", "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options",
        ),
        ([], None),
    ],
)
async def test_a_malformed_head_is_a_400_naming_the_field(
    tmp_path: Path, body: Any, param: str | None
) -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing goes up")

    async with in_process_gateway(tmp_path, upstream, routes=ROUTES) as ipg:
        response = await ipg.client.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
