"""``/v1/responses`` in process against scripted upstreams: what is sent where, and an
upstream that does not know the endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.inprocess import CANDIDATE, CLIENT_KEY, in_process_gateway, routes_text

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def response_json(text: str = "billing") -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": CANDIDATE,
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 9, "output_tokens": 1, "total_tokens": 10},
    }


async def test_the_request_goes_to_the_upstreams_responses_endpoint_with_the_variant_applied(
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json=response_json())

    routes = routes_text().replace(
        f"model: {CANDIDATE}}}",
        f'model: {CANDIDATE}, system_prompt: "Label it.", params: {{temperature: 0}}}}',
    )
    async with in_process_gateway(tmp_path, upstream, routes=routes) as g:
        body = {
            "model": "triage",
            "input": [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}],
            "instructions": "mine",
            "temperature": 1.0,
            "metadata": {"k": "v"},
        }
        response = await g.client.post("/v1/responses", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        # relayed unchanged but for the model (response_model: route) and what changed
        assert response.json() == {**response_json(), "model": "triage"}
        assert response.headers["x-gateway-variant"] == "cand"
        assert response.headers["x-gateway-overridden"] == "instructions,input.system,temperature"
    assert seen == [
        (
            "/v1/responses",
            {
                "model": CANDIDATE,
                "input": [{"role": "user", "content": "hi"}],
                "instructions": "Label it.",
                "temperature": 0,
                "metadata": {"k": "v"},
            },
        )
    ]


async def test_an_upstream_answering_404_is_a_502_that_names_the_likely_cause(
    tmp_path: Path,
) -> None:
    """No failover on a 404 (the fallback would not know the endpoint either); the message
    says the upstream may lack the Responses API and how to mark it."""

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not Found"})

    async with in_process_gateway(tmp_path, upstream, routes=routes_text(weight=0)) as g:
        response = await g.client.post(
            "/v1/responses", json={"model": "triage", "input": "hi"}, headers=AUTH
        )
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_status_404"
        assert "may not offer the Responses API" in error["message"]
        assert "responses_api: false" in error["message"]
        chat = await g.chat()
        assert chat.status_code == 502
        assert "Responses API" not in chat.text
