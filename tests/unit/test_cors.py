"""The CORS policy (pure parts) and its setting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.api.cors import CorsPolicy
from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings

APP = b"https://app.example"


def test_off_without_origins() -> None:
    assert CorsPolicy.from_settings([], 600) is None


def test_only_listed_origins_are_allowed_exactly() -> None:
    policy = CorsPolicy(["https://app.example", "http://localhost:5173/"], 600)
    assert policy.allowed(APP)
    assert policy.allowed(b"http://localhost:5173")
    assert not policy.allowed(b"https://app.example.evil")
    assert not policy.allowed(b"http://app.example")
    assert not policy.allowed(b"null")


def test_preflight_echoes_requested_headers_for_a_listed_origin() -> None:
    policy = CorsPolicy(["https://app.example"], 90)
    headers = dict(policy.preflight_headers(APP, b"authorization, content-type, x-stainless-os"))
    assert headers == {
        b"access-control-allow-origin": APP,
        b"vary": b"origin",
        b"access-control-allow-methods": b"GET, POST, OPTIONS",
        b"access-control-allow-headers": b"authorization, content-type, x-stainless-os",
        b"access-control-max-age": b"90",
    }


def test_any_origin_answers_star_without_vary() -> None:
    policy = CorsPolicy(["*"], 600)
    assert policy.allowed(b"https://anything.example")
    headers = dict(policy.response_headers(b"https://anything.example", []))
    assert headers == {b"access-control-allow-origin": b"*"}


def test_responses_expose_the_gateway_headers_they_carry() -> None:
    policy = CorsPolicy(["https://app.example"], 600)
    response = [
        (b"content-type", b"application/json"),
        (b"x-request-id", b"req_1"),
        (b"x-gateway-variant", b"finetuned"),
        (b"retry-after", b"1"),
    ]
    headers = dict(policy.response_headers(APP, response))
    assert (
        headers[b"access-control-expose-headers"] == b"x-request-id, x-gateway-variant, retry-after"
    )
    assert headers[b"access-control-allow-origin"] == APP


def _scope(method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/v1/models", "headers": headers}


def test_apply_answers_a_preflight_and_leaves_other_origins_alone() -> None:
    policy = CorsPolicy(["https://app.example"], 600)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    preflight = [(b"origin", APP), (b"access-control-request-method", b"POST")]
    assert asyncio.run(policy.apply(_scope("OPTIONS", preflight), send)) is None
    assert sent[0]["status"] == 204
    other = [(b"origin", b"https://evil.example"), (b"access-control-request-method", b"POST")]
    assert asyncio.run(policy.apply(_scope("OPTIONS", other), send)) is send
    assert asyncio.run(policy.apply(_scope("GET", []), send)) is send
    assert len(sent) == 2  # the 204's start and body only


def test_setting_reads_a_json_list_and_refuses_what_is_not_an_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().cors_allow_origins == []
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_ORIGINS", '["https://app.example/", "*"]')
    assert load_settings().cors_allow_origins == ["https://app.example", "*"]
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_ORIGINS", '["https://app.example/path"]')
    with pytest.raises(ConfigError, match="GATEWAY_CORS_ALLOW_ORIGINS"):
        load_settings()
