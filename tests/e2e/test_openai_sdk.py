"""End to end over real TCP: gateway and simulator processes, the official openai SDK as client."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.processes import (
    CLIENT_KEY,
    GatewayProcess,
    SimulatorProcess,
    routes_yaml,
    start_gateway,
)

pytestmark = pytest.mark.e2e

TICKET = "I was charged twice for my subscription, please refund the extra charge."


@pytest.fixture(scope="module")
def gateway(
    simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with start_gateway(tmp_path_factory.mktemp("gw"), routes_yaml(simulator.url)) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayProcess, sim: SimulatorProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def aclient(gateway: GatewayProcess, sim: SimulatorProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0)


def test_sync_non_streaming_answer_carries_variant_headers_and_usage(
    client: openai.OpenAI,
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="support-triage", messages=[{"role": "user", "content": TICKET}], user="alice"
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "billing"
    assert raw.headers["x-gateway-route"] == "support-triage"
    assert raw.headers["x-gateway-variant"] in ("finetuned", "prompted")
    assert raw.headers["x-gateway-decision"] == "rollout"
    assert float(raw.headers["x-gateway-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"]
    assert completion.model == "support-triage"  # response_model: route (the default)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0


def test_prompted_variant_sends_long_prompt_and_few_shots(client: openai.OpenAI) -> None:
    """The fallback's prompt (system file + 20 few-shot messages) costs far more input tokens."""
    by_variant: dict[str, int] = {}
    for i in range(40):
        raw = client.chat.completions.with_raw_response.create(
            model="support-triage",
            messages=[{"role": "user", "content": TICKET}],
            user=f"subject-{i}",
        )
        usage = raw.parse().usage
        assert usage is not None
        by_variant[raw.headers["x-gateway-variant"]] = usage.prompt_tokens
    assert set(by_variant) == {"finetuned", "prompted"}
    assert by_variant["prompted"] > 10 * by_variant["finetuned"]


def test_same_subject_sticks_to_one_variant(client: openai.OpenAI) -> None:
    variants = {
        client.chat.completions.with_raw_response.create(
            model="support-triage",
            messages=[{"role": "user", "content": TICKET}],
            extra_headers={"x-gateway-subject": "sticky-user-7"},
        ).headers["x-gateway-variant"]
        for _ in range(10)
    }
    assert len(variants) == 1


def test_client_request_id_is_kept(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="support-triage",
        messages=[{"role": "user", "content": TICKET}],
        extra_headers={"x-request-id": "trace-abc-123"},
    )
    assert raw.headers["x-request-id"] == "trace-abc-123"


def test_sync_streaming_relays_chunks_and_hides_usage_not_asked_for(
    client: openai.OpenAI,
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="support-triage",
        messages=[{"role": "user", "content": "The app crashes with error 500 on start."}],
        stream=True,
    ) as response:
        assert response.headers["x-gateway-variant"] in ("finetuned", "prompted")
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "technical"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_sync_streaming_with_include_usage_gets_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="support-triage",
            messages=[{"role": "user", "content": "Reset my password please, I am locked out."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "account"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0


async def test_async_non_streaming_and_streaming(aclient: openai.AsyncOpenAI) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(
        model="support-triage", messages=[{"role": "user", "content": TICKET}]
    )
    assert raw.headers["x-gateway-variant"] in ("finetuned", "prompted")
    assert raw.parse().choices[0].message.content == "billing"
    stream = await aclient.chat.completions.create(
        model="support-triage",
        messages=[{"role": "user", "content": TICKET}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "billing"
    assert usage is not None
    assert usage.completion_tokens > 0


def test_models_lists_the_routes(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["support-triage"]
    assert models.data[0].object == "model"


def test_unknown_model_is_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


def test_wrong_key_is_401_in_openai_envelope(gateway: GatewayProcess) -> None:
    bad = openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(
            model="support-triage", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(info.value)


def test_eval_key_forces_a_variant_and_app_key_may_not(gateway: GatewayProcess) -> None:
    from tests.processes import EVAL_KEY

    evaluator = openai.OpenAI(base_url=gateway.base_url, api_key=EVAL_KEY, max_retries=0)
    for variant in ("finetuned", "prompted"):
        raw = evaluator.chat.completions.with_raw_response.create(
            model="support-triage",
            messages=[{"role": "user", "content": TICKET}],
            extra_headers={"x-gateway-variant": variant},
        )
        assert raw.headers["x-gateway-variant"] == variant
        assert raw.headers["x-gateway-decision"] == "override"
    app = openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        app.chat.completions.create(
            model="support-triage",
            messages=[{"role": "user", "content": TICKET}],
            extra_headers={"x-gateway-variant": "finetuned"},
        )


def test_example_scripts_print_labels_from_both_variants(gateway: GatewayProcess) -> None:
    """README's examples run against a gateway and show answers of both variants."""
    import os
    import subprocess
    import sys

    from tests.processes import ROOT

    env = {**os.environ, "GATEWAY_URL": gateway.base_url, "GATEWAY_API_KEY": CLIENT_KEY}
    out = subprocess.run(
        [sys.executable, "-m", "examples.classify_tickets"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert len(rows) == 8
    assert {row[0] for row in rows} <= {"billing", "technical", "account"}
    assert {row[1] for row in rows} == {"finetuned", "prompted"}
    mix = subprocess.run(
        [sys.executable, "-m", "examples.traffic", "--requests", "40"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "rollout" in mix
    assert sum(int(line.split()[0]) for line in mix.splitlines()) == 40
