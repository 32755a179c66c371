"""CORS on the data plane, in-process: preflights answered and headers on every ``/v1/``
answer (the raw chat and pass-through paths, Litestar's, errors) for allowed origins only;
nothing at all when CORS is off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.support import AUTH, TICKET
from tests.e2e.test_passthrough import EMBED, passthrough_routes
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import ADMIN_KEY

APP = "https://app.example"
EVIL = "https://evil.example"
CHAT = {"model": "support-triage", "messages": [{"role": "user", "content": TICKET}]}


@pytest.fixture(scope="module")
def simulator(loop_thread: LoopThread) -> Iterator[InProcessSimulator]:
    with in_process_simulator(loop_thread) as simulator:
        yield simulator


def _gateway(
    loop_thread: LoopThread,
    tmp_path_factory: pytest.TempPathFactory,
    simulator: InProcessSimulator,
    origins: str | None,
) -> Iterator[InProcessGatewayUnderTest]:
    env = {"GATEWAY_CORS_ALLOW_ORIGINS": origins} if origins else {}
    tmp = tmp_path_factory.mktemp("cors")
    routes = passthrough_routes(simulator.url)
    with start_in_process(loop_thread, tmp, routes, simulator, env=env) as gw:
        yield gw


@pytest.fixture(scope="module")
def gateway(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory, simulator: InProcessSimulator
) -> Iterator[InProcessGatewayUnderTest]:
    yield from _gateway(loop_thread, tmp_path_factory, simulator, f'["{APP}"]')


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def preflight(gw: InProcessGatewayUnderTest, path: str, origin: str) -> httpx.Response:
    return gw.http.options(
        path,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
    )


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/embeddings", "/v1/models/support-triage"]
)
def test_preflight_from_an_allowed_origin_is_answered(
    gateway: InProcessGatewayUnderTest, path: str
) -> None:
    response = preflight(gateway, path, APP)
    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": "authorization, content-type, x-stainless-os",
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "origin"


def test_answers_to_an_allowed_origin_carry_the_headers_errors_included(
    gateway: InProcessGatewayUnderTest,
) -> None:
    origin = {"origin": APP}
    answers = {
        "chat": gateway.http.post("/v1/chat/completions", json=CHAT, headers={**AUTH, **origin}),
        "embeddings": gateway.http.post(
            "/v1/embeddings", json={"model": EMBED, "input": "x"}, headers={**AUTH, **origin}
        ),
        "models": gateway.http.get("/v1/models", headers={**AUTH, **origin}),
        "no key": gateway.http.post("/v1/chat/completions", json=CHAT, headers=origin),
        "unknown path": gateway.http.get("/v1/nothing", headers={**AUTH, **origin}),
    }
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses == {
        "chat": 200,
        "embeddings": 200,
        "models": 200,
        "no key": 401,
        "unknown path": 404,
    }
    for name, response in answers.items():
        assert response.headers["access-control-allow-origin"] == APP, name
        assert "origin" in response.headers["vary"].lower(), name
        exposed = response.headers["access-control-expose-headers"].split(", ")
        assert "x-request-id" in exposed, name
    exposed = answers["chat"].headers["access-control-expose-headers"].split(", ")
    assert {"x-gateway-variant", "x-gateway-decision", "x-gateway-overhead-ms"} <= set(exposed)


def test_another_origin_gets_no_cors_headers(gateway: InProcessGatewayUnderTest) -> None:
    assert cors_headers(preflight(gateway, "/v1/chat/completions", EVIL)) == {}
    answer = gateway.http.post("/v1/chat/completions", json=CHAT, headers={**AUTH, "origin": EVIL})
    assert answer.status_code == 200
    assert cors_headers(answer) == {}
    assert cors_headers(gateway.http.post("/v1/chat/completions", json=CHAT, headers=AUTH)) == {}


def test_the_admin_api_is_left_out(gateway: InProcessGatewayUnderTest) -> None:
    response = gateway.http.get(
        "/admin/routes", headers={"authorization": f"Bearer {ADMIN_KEY}", "origin": APP}
    )
    assert cors_headers(response) == {}
    assert cors_headers(preflight(gateway, "/admin/routes", APP)) == {}


def test_cors_off_by_default(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory, simulator: InProcessSimulator
) -> None:
    for gw in _gateway(loop_thread, tmp_path_factory, simulator, None):
        # Litestar answers OPTIONS itself (204 with Allow), but without CORS headers a browser
        # refuses the cross-origin call.
        assert cors_headers(preflight(gw, "/v1/chat/completions", APP)) == {}
        answer = gw.http.post("/v1/chat/completions", json=CHAT, headers={**AUTH, "origin": APP})
        assert answer.status_code == 200
        assert cors_headers(answer) == {}


def test_any_origin(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory, simulator: InProcessSimulator
) -> None:
    for gw in _gateway(loop_thread, tmp_path_factory, simulator, '["*"]'):
        assert preflight(gw, "/v1/embeddings", EVIL).headers["access-control-allow-origin"] == "*"
        answer = gw.http.post("/v1/chat/completions", json=CHAT, headers={**AUTH, "origin": EVIL})
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "vary" not in answer.headers
