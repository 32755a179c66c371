"""Shadow calls in process against a scripted upstream: what the candidate is asked for each
operation (chat completions, the Responses API), how its answer is compared, when it is not
asked, and how the call is accounted (GenAI metrics, tokens and cost).

Every test waits for the shadow tasks themselves (``gw.shadow._tasks``), no clock involved.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inprocess import (
    CANDIDATE,
    CLIENT_KEY,
    FALLBACK,
    InProcessGateway,
    completion,
    in_process_gateway,
    routes_text,
)

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
SHADOW = "    shadow: {share: 1.0, max_concurrency: 4}\n"
PRICES = f"prices:\n  {CANDIDATE}: {{input: 2, output: 8}}\n  {FALLBACK}: {{input: 1, output: 4}}\n"
COMPARISONS = "gateway_shadow_comparisons_total"
CALL = {"type": "function_call", "name": "label", "arguments": '{"label": "billing"}'}


def response_json(
    model: str, output: list[dict[str, Any]], tokens: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": model,
        "output": output,
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1]},
    }


def text_output(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    ]


def response_events(model: str, text: str) -> bytes:
    """A complete Responses API stream answering ``text``."""
    done = response_json(model, text_output(text), (5, 1))
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": {**done, "status": "in_progress", "output": []}}),
        ("response.output_text.delta", {"delta": text, "output_index": 0}),
        ("response.completed", {"response": done}),
    ]
    out = b""
    for number, (kind, fields) in enumerate(events):
        data = json.dumps({"type": kind, "sequence_number": number, **fields})
        out += f"event: {kind}\ndata: {data}\n\n".encode()
    return out


class Upstream:
    """Answers each model from ``answers`` (path -> model -> response maker); keeps every
    call's path and body."""

    def __init__(self, answers: dict[str, dict[str, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((request.url.path, body))
        make = self.answers[request.url.path][body["model"]]
        response: httpx.Response = make(body)
        return response

    def asked(self, model: str) -> list[tuple[str, dict[str, Any]]]:
        return [(path, body) for path, body in self.calls if body["model"] == model]


async def shadows_done(g: InProcessGateway) -> None:
    await asyncio.gather(*g.gw.shadow._tasks)


async def respond(g: InProcessGateway, **body: Any) -> httpx.Response:
    sent = {"model": "triage", "input": "refund me", **body}
    response = await g.client.post("/v1/responses", json=sent, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-decision"] == "shadow"
    assert response.headers["x-gateway-variant"] == "fall"
    return response


@pytest.mark.parametrize("stream", [False, True])
async def test_a_responses_request_is_mirrored_as_a_responses_request(
    tmp_path: Path, stream: bool
) -> None:
    """The candidate is asked the same Responses API request (its variant applied, never
    streamed), at ``/responses``; its function call is compared with the fallback's."""

    def fallback(body: dict[str, Any]) -> httpx.Response:
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=response_events(FALLBACK, "billing"),
            )
        return httpx.Response(200, json=response_json(FALLBACK, text_output("billing"), (5, 1)))

    upstream = Upstream(
        {
            "/v1/responses": {
                FALLBACK: fallback,
                CANDIDATE: lambda body: httpx.Response(
                    200, json=response_json(CANDIDATE, text_output("billing"), (7, 2))
                ),
            }
        }
    )
    routes = routes_text().replace(
        f"model: {CANDIDATE}}}", f'model: {CANDIDATE}, system_prompt: "Label it."}}'
    )
    async with in_process_gateway(tmp_path, upstream, routes=routes + SHADOW) as g:
        await respond(g, instructions="mine", stream=stream, metadata={"k": "v"})
        await shadows_done(g)
        assert g.metric(COMPARISONS, route="triage", result="agree") == 1
        assert g.metric(COMPARISONS, route="triage", result="disagree") == 0
        state = g.gw.quality.guard.state("triage")
        assert state is not None
        assert state["shadow"] == {"agree": 1, "disagree": 0}
    assert upstream.asked(CANDIDATE) == [
        (
            "/v1/responses",
            {
                "model": CANDIDATE,
                "input": "refund me",
                "instructions": "Label it.",
                "stream": False,
                "metadata": {"k": "v"},
            },
        )
    ]


async def test_function_calls_are_compared_and_judged_on_a_responses_shadow_call(
    tmp_path: Path,
) -> None:
    """The fallback calls ``label``; a candidate calling it with equal arguments (another key
    order) agrees, one calling another function disagrees and fails ``tool_call_name``."""
    answers = iter(
        [
            [{**CALL, "arguments": '{ "label" : "billing" }'}],
            [{**CALL, "name": "escalate"}],
        ]
    )
    upstream = Upstream(
        {
            "/v1/responses": {
                FALLBACK: lambda body: httpx.Response(
                    200, json=response_json(FALLBACK, [CALL], (5, 1))
                ),
                CANDIDATE: lambda body: httpx.Response(
                    200, json=response_json(CANDIDATE, next(answers), (5, 1))
                ),
            }
        }
    )
    contract = "    contract: {tool_calls: {allowed: {label: null}}}\n"
    async with in_process_gateway(
        tmp_path, upstream, routes=routes_text() + SHADOW + contract
    ) as g:
        for _ in range(2):
            await respond(g)
            await shadows_done(g)
        assert g.metric(COMPARISONS, route="triage", result="agree") == 1
        assert g.metric(COMPARISONS, route="triage", result="disagree") == 1
        checks = "gateway_quality_checks_total"
        assert g.metric(checks, variant="cand", check="tool_call_name", result="pass") == 1
        assert g.metric(checks, variant="cand", check="tool_call_name", result="fail") == 1


async def test_a_candidate_without_the_responses_api_is_skipped_and_chat_still_mirrored(
    tmp_path: Path,
) -> None:
    """The candidate's upstream says ``responses_api: false``: a Responses API request is
    answered by the fallback and its shadow call counted ``skipped`` (never sent); chat
    completions on the same route are still mirrored."""
    old = "  old:\n    base_url: http://old.test/v1\n    responses_api: false\n"
    upstream = Upstream(
        {
            "/v1/responses": {
                FALLBACK: lambda body: httpx.Response(
                    200, json=response_json(FALLBACK, text_output("billing"), (5, 1))
                )
            },
            "/v1/chat/completions": {
                FALLBACK: lambda body: httpx.Response(200, json=completion()),
                CANDIDATE: lambda body: httpx.Response(200, json=completion(model=CANDIDATE)),
            },
        }
    )
    routes = routes_text(candidate_upstream="old", extra_upstreams=old) + SHADOW
    async with in_process_gateway(tmp_path, upstream, routes=routes) as g:
        await respond(g)
        await shadows_done(g)
        assert g.metric(COMPARISONS, route="triage", result="skipped") == 1
        assert upstream.asked(CANDIDATE) == []
        assert (await g.chat()).headers["x-gateway-decision"] == "shadow"
        await shadows_done(g)
        assert g.metric(COMPARISONS, route="triage", result="agree") == 1
        assert [path for path, _ in upstream.asked(CANDIDATE)] == ["/v1/chat/completions"]


def gen_ai(operation: str = "chat", **labels: str) -> dict[str, str]:
    return {
        "gen_ai_operation_name": operation,
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": CANDIDATE,
        "route": "triage",
        "variant": "cand",
        **labels,
    }


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_a_shadow_call_is_in_the_gen_ai_metrics_and_its_spend_in_tokens_and_cost(
    tmp_path: Path, path: str
) -> None:
    """Under the candidate's labels: one ``gen_ai_client_operation_duration_seconds`` and its
    token usage; its tokens and cost in ``gateway_tokens_total`` / ``gateway_cost_usd_total``
    and alone in ``gateway_shadow_*``; no served request of the candidate."""
    upstream = Upstream(
        {
            "/v1/chat/completions": {
                FALLBACK: lambda body: httpx.Response(200, json=completion()),
                CANDIDATE: lambda body: httpx.Response(200, json=completion(model=CANDIDATE)),
            },
            "/v1/responses": {
                FALLBACK: lambda body: httpx.Response(
                    200, json=response_json(FALLBACK, text_output("billing"), (5, 1))
                ),
                CANDIDATE: lambda body: httpx.Response(
                    200, json=response_json(CANDIDATE, text_output("billing"), (3, 1))
                ),
            },
        }
    )
    async with in_process_gateway(tmp_path, upstream, routes=routes_text() + SHADOW + PRICES) as g:
        assert g.metric("gateway_shadow_cost_usd_total", route="triage", variant="cand") == 0
        if path == "/v1/responses":
            await respond(g)
        else:
            assert (await g.chat()).headers["x-gateway-decision"] == "shadow"
        await shadows_done(g)
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert g.metric(duration, **gen_ai(error_type="")) == 1
        usage = "gen_ai_client_token_usage_sum"
        assert g.metric(usage, **gen_ai(gen_ai_token_type="input")) == 3
        assert g.metric(usage, **gen_ai(gen_ai_token_type="output")) == 1
        cost = (3 * 2 + 1 * 8) / 1e6
        for prefix in ("gateway", "gateway_shadow"):
            tokens = f"{prefix}_tokens_total"
            assert g.metric(tokens, route="triage", variant="cand", type="input") == 3
            assert g.metric(tokens, route="triage", variant="cand", type="output") == 1
            spent = g.metric(f"{prefix}_cost_usd_total", route="triage", variant="cand")
            assert spent == pytest.approx(cost)
        assert g.metric("gateway_shadow_cost_usd_total", variant="fall") == 0
        assert g.metric("gateway_requests_total", variant="cand") == 0


async def test_a_failed_shadow_call_is_a_gen_ai_duration_with_its_error_type(
    tmp_path: Path,
) -> None:
    """An upstream 500 to the shadow call: ``error_type`` is the status the gateway would have
    answered (502), as for a served call; no tokens, no cost."""
    upstream = Upstream(
        {
            "/v1/chat/completions": {
                FALLBACK: lambda body: httpx.Response(200, json=completion()),
                CANDIDATE: lambda body: httpx.Response(500, json={"error": {"message": "x"}}),
            }
        }
    )
    async with in_process_gateway(tmp_path, upstream, routes=routes_text() + SHADOW + PRICES) as g:
        await g.chat()
        await shadows_done(g)
        assert g.metric(COMPARISONS, route="triage", result="error") == 1
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert g.metric(duration, **gen_ai(error_type="502")) == 1
        assert g.metric(duration, **gen_ai(error_type="")) == 0
        assert g.metric("gen_ai_client_token_usage_count", **gen_ai()) == 0
        assert g.metric("gateway_shadow_cost_usd_total", variant="cand") == 0
