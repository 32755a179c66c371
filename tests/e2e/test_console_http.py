"""The console's HTTP side in process: login, session cookie, CSRF, logout, the figures, and
pages that load nothing from elsewhere (the console and ``/admin/openapi``).

Each test builds its own gateway (``tests.inprocess``: route ``triage``, SQLite store, an
in-process upstream) and talks to it through httpx's ASGI transport, whose cookie jar plays
the browser's part. The real browser is in ``tests/browser/test_console.py``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gateway.settings import ConsoleSettings
from tests.inprocess import (
    ADMIN_KEY,
    CLIENT_KEY,
    InProcessGateway,
    completion,
    in_process_gateway,
)

ROUTE = "triage"
CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]{64})">')
URL_ATTR = re.compile(r"""(?:src|href|action)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


async def answer(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion())


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(tmp_path, answer) as gateway:
        yield gateway


async def log_in(client: httpx.AsyncClient, key: str = ADMIN_KEY, name: str = "alice") -> str:
    """Log in through the form; return the page's CSRF token."""
    response = await client.post("/admin/ui/login", data={"key": key, "name": name})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin/ui"
    page = await client.get("/admin/ui")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def assert_no_flag_data(response: httpx.Response) -> None:
    for secret in ("rollout_id", "weight", ROUTE, "csrf-token"):
        assert secret not in response.text


async def test_without_a_session_the_page_redirects_and_the_api_is_401(
    gw: InProcessGateway,
) -> None:
    """No cookie: the console redirects to the login page; the admin API and the figures are
    401 with OpenAI's envelope; none of them shows flag data."""
    page = await gw.client.get("/admin/ui")
    assert page.status_code == 303
    assert page.headers["location"] == "/admin/ui/login"
    assert_no_flag_data(page)
    for path in ("/admin/routes", "/admin/ui/stats", f"/admin/flags/{ROUTE}", "/admin/audit"):
        response = await gw.client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert_no_flag_data(response)
    login = await gw.client.get("/admin/ui/login")
    assert login.status_code == 200
    assert 'name="key"' in login.text
    assert_no_flag_data(login)


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        (CLIENT_KEY, 403, "not an admin key"),
        ("sk-wrong", 401, "Incorrect admin key"),
        ("", 401, "Enter an admin key"),
    ],
    ids=["client-key", "unknown-key", "empty"],
)
async def test_login_refuses_other_keys_without_a_cookie(
    gw: InProcessGateway, key: str, status: int, message: str
) -> None:
    """A client key, a wrong key or none: the form again with the reason, no cookie, and the
    console still redirects."""
    response = await gw.client.post("/admin/ui/login", data={"key": key})
    assert response.status_code == status
    assert message in response.text
    assert "set-cookie" not in response.headers
    assert key not in response.text or not key
    assert (await gw.client.get("/admin/ui")).status_code == 303


async def test_login_sets_a_strict_http_only_cookie(gw: InProcessGateway) -> None:
    """The session cookie is HttpOnly, SameSite=Strict, scoped to /admin, expires, and is not
    Secure on plain http; the page is sent with a strict CSP and no caching."""
    response = await gw.client.post("/admin/ui/login", data={"key": ADMIN_KEY})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gateway_console=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/admin;" in cookie.lower() + ";"
    assert "secure" not in attributes
    page = await gw.client.get("/admin/ui")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"


async def test_the_cookie_is_secure_on_https(gw: InProcessGateway) -> None:
    """Over https (``secure_cookie: auto``) the cookie carries Secure."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gw.app),  # type: ignore[arg-type]
        base_url="https://gateway.test",
    ) as client:
        response = await client.post("/admin/ui/login", data={"key": ADMIN_KEY})
    assert "; secure" in response.headers["set-cookie"].lower()


async def test_cookie_writes_need_the_csrf_token(gw: InProcessGateway) -> None:
    """With the cookie: reads work; a write without the CSRF token or with a wrong one is 403
    csrf_failed and changes nothing; with the token it lands, audited as the person."""
    token = await log_in(gw.client)
    routes = await gw.client.get("/admin/routes")
    assert routes.status_code == 200
    version = routes.json()[0]["flag"]["version"]
    body = {"reason": "console test", "weight": 12_000}
    for headers in ({}, {"x-csrf-token": "0" * 64}, {"x-csrf-token": token[:-1]}):
        refused = await gw.client.patch(f"/admin/flags/{ROUTE}", json=body, headers=headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
        rollback = await gw.client.post(
            f"/admin/flags/{ROUTE}/rollback", json={"reason": "x"}, headers=headers
        )
        assert rollback.status_code == 403
    flag = (await gw.client.get(f"/admin/flags/{ROUTE}")).json()
    assert flag["version"] == version
    done = await gw.client.patch(
        f"/admin/flags/{ROUTE}", json=body, headers={"x-csrf-token": token}
    )
    assert done.status_code == 200
    assert done.json()["weight"] == 12_000
    assert done.json()["updated_by"] == "ops (alice)"
    audit = (await gw.client.get("/admin/audit", params={"route": ROUTE})).json()["data"]
    assert audit[0]["actor"] == "ops (alice)"


async def test_a_stale_version_from_the_console_is_a_409_with_the_current_flag(
    gw: InProcessGateway,
) -> None:
    """The console sends the version it shows; a change made meanwhile wins and the console's
    write gets 409 with ``current`` (what the page shows in its banner)."""
    token = await log_in(gw.client)
    version = (await gw.client.get(f"/admin/flags/{ROUTE}")).json()["version"]
    moved = await gw.client.patch(
        f"/admin/flags/{ROUTE}",
        json={"reason": "someone else", "weight": 1_000},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert moved.status_code == 200
    stale = await gw.client.post(
        f"/admin/flags/{ROUTE}/rollback",
        json={"reason": "from the console", "version": version},
        headers={"x-csrf-token": token},
    )
    assert stale.status_code == 409
    assert stale.json()["current"]["version"] == moved.json()["version"]
    assert stale.json()["current"]["status"] == "active"


async def test_logout_needs_the_token_and_ends_the_session(gw: InProcessGateway) -> None:
    """Logout without the CSRF token is 403 and the session lives on; with it the cookie is
    cleared and the old cookie, sent again, is refused everywhere."""
    token = await log_in(gw.client)
    old = gw.client.cookies["gateway_console"]
    refused = await gw.client.post("/admin/ui/logout", data={})
    assert refused.status_code == 403
    assert (await gw.client.get("/admin/routes")).status_code == 200
    out = await gw.client.post("/admin/ui/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert out.headers["location"] == "/admin/ui/login"
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert "gateway_console" not in gw.client.cookies
    replay = {"cookie": f"gateway_console={old}"}
    assert (await gw.client.get("/admin/routes", headers=replay)).status_code == 401
    page = await gw.client.get("/admin/ui", headers=replay)
    assert page.status_code == 303
    assert_no_flag_data(page)


async def test_a_client_key_never_gets_in_even_beside_a_session(gw: InProcessGateway) -> None:
    """The bearer path is unchanged: a client key is 403 on every admin endpoint, also when a
    valid session cookie rides along."""
    token = await log_in(gw.client)
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-csrf-token": token}
    for method, path in (("GET", "/admin/routes"), ("GET", "/admin/ui/stats")):
        response = await gw.client.request(method, path, headers=headers)
        assert response.status_code == 403, path
    patch = await gw.client.patch(
        f"/admin/flags/{ROUTE}", json={"reason": "x", "weight": 1}, headers=headers
    )
    assert patch.status_code == 403


async def test_stats_give_this_replicas_figures_to_sessions_and_bearer_keys(
    gw: InProcessGateway,
) -> None:
    """``/admin/ui/stats``: per route the decision mix and per variant requests, tokens,
    latency and cost, for a bearer admin key as for a session."""
    for _ in range(3):
        assert (await gw.chat()).status_code == 200
    bearer = await gw.client.get(
        "/admin/ui/stats", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert bearer.status_code == 200
    data = bearer.json()
    assert data["replica"] == gw.gw.replica
    route = data["routes"][ROUTE]
    assert route["decisions"] == {"rollout": 3}
    assert route["variants"]["cand"]["requests"] == 3
    assert route["variants"]["cand"]["input_tokens"] == 9
    assert route["variants"]["fall"]["requests"] == 0
    await log_in(gw.client)
    assert (await gw.client.get("/admin/ui/stats")).json()["routes"] == data["routes"]


async def test_pages_load_nothing_from_elsewhere(gw: InProcessGateway) -> None:
    """The login page, the console and ``/admin/openapi`` reference only the gateway's own
    paths, and those assets are served."""
    pages = [await gw.client.get("/admin/ui/login")]
    await log_in(gw.client)
    pages.append(await gw.client.get("/admin/ui"))
    pages.append(await gw.client.get("/admin/openapi"))
    for page in pages:
        assert page.status_code == 200
        urls = URL_ATTR.findall(page.text)
        assert urls, page.url
        for url in urls:
            if url.startswith("data:"):  # inline (the empty favicon), fetched from nowhere
                continue
            assert url.startswith("/"), (page.url, url)
            assert not url.startswith("//"), (page.url, url)
            if url.startswith(("/admin/ui/static", "/admin/openapi-assets")):
                asset = await gw.client.get(url)
                assert asset.status_code == 200, url
        assert "https://" not in page.text.replace("http://www.w3.org", "")
    spec = await gw.client.get("/admin/openapi/openapi.json")
    assert spec.status_code == 200
    assert "/admin/routes" in spec.json()["paths"]
    script = await gw.client.get("/admin/ui/static/console.js")
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", script.text) == []


async def test_a_session_works_on_every_replica_sharing_the_secret(tmp_path: Path) -> None:
    """With ``GATEWAY_CONSOLE__SESSION_SECRET`` set alike, a cookie opened on one replica is
    accepted by another (same admin keys); a replica with its own random secret refuses it."""
    shared = ConsoleSettings(session_secret=SecretStr("x" * 40))
    for name in "abc":
        (tmp_path / name).mkdir()
    async with (
        in_process_gateway(tmp_path / "a", answer, console=shared) as first,
        in_process_gateway(tmp_path / "b", answer, console=shared) as second,
        in_process_gateway(tmp_path / "c", answer) as other,
    ):
        await log_in(first.client)
        cookie = {"cookie": f"gateway_console={first.client.cookies['gateway_console']}"}
        assert (await second.client.get("/admin/routes", headers=cookie)).status_code == 200
        assert (await second.client.get("/admin/ui", headers=cookie)).status_code == 200
        assert (await other.client.get("/admin/routes", headers=cookie)).status_code == 401
        assert (await other.client.get("/admin/ui", headers=cookie)).status_code == 303


@pytest.mark.parametrize(
    ("env", "refresh_ms"), [({}, "2000"), ({"console": {"refresh_s": 0.5}}, "500")]
)
async def test_the_page_carries_its_refresh_interval(
    tmp_path: Path, env: dict[str, Any], refresh_ms: str
) -> None:
    """GATEWAY_CONSOLE__REFRESH_S (default 2 s) reaches the page's script as a meta tag."""
    async with in_process_gateway(tmp_path, answer, **env) as gateway:
        await log_in(gateway.client)
        page = await gateway.client.get("/admin/ui")
        assert f'<meta name="refresh-ms" content="{refresh_ms}">' in page.text


async def test_login_attempts_are_rate_limited_per_client_address(tmp_path: Path) -> None:
    """GATEWAY_CONSOLE__LOGIN_ATTEMPTS_PER_MINUTE=3: three attempts from one address (right or
    wrong) are answered; the next ones, even with the right key, are the form again with 429,
    a readable message, Retry-After and no cookie. The form itself (GET) and another address
    are not limited. The window is a minute from the first attempt: no clock race for a few
    in-process requests."""
    async with in_process_gateway(
        tmp_path, answer, console={"login_attempts_per_minute": 3}
    ) as gateway:
        for key in ("sk-wrong", "", CLIENT_KEY):
            response = await gateway.client.post("/admin/ui/login", data={"key": key})
            assert response.status_code in (401, 403), response.text
        for key in ("sk-wrong", ADMIN_KEY):
            refused = await gateway.client.post("/admin/ui/login", data={"key": key})
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("text/html")
            assert "Too many login attempts from your address" in refused.text
            assert 'id="login-form"' in refused.text  # the browser shows the form again
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert refused.headers["ratelimit-limit"] == "3"
            assert refused.headers["cache-control"] == "no-store"
            assert "content-security-policy" in refused.headers
            assert "set-cookie" not in refused.headers
        assert (await gateway.client.get("/admin/ui/login")).status_code == 200
        assert (await gateway.client.get("/admin/ui")).status_code == 303
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway.app, client=("192.0.2.7", 40000)),  # type: ignore[arg-type]
            base_url="http://gateway.test",
        ) as elsewhere:
            await log_in(elsewhere)


async def test_login_rate_limit_zero_means_no_limit(tmp_path: Path) -> None:
    """GATEWAY_CONSOLE__LOGIN_ATTEMPTS_PER_MINUTE=0 turns the limit off."""
    async with in_process_gateway(
        tmp_path, answer, console={"login_attempts_per_minute": 0}
    ) as gateway:
        for _ in range(12):
            response = await gateway.client.post("/admin/ui/login", data={"key": "sk-wrong"})
            assert response.status_code == 401
        await log_in(gateway.client)
