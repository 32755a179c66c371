"""The admin HTTP API end to end: bad input, keys, conflicts, and the shapes of its answers.

One gateway for the module (two routes, SQLite store), in-process against an in-process
simulator (``tests.inprocess_sim``). Every refusal is checked for its status
and OpenAI's error envelope; a 409 also carries ``current``, the flag as stored now. Tests that
change a flag say what they expect relative to the version they read first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support import AUTH, TICKET, AnyGateway, assert_error_envelope
from tests.inprocess_sim import LoopThread, in_process_simulator, start_in_process
from tests.processes import ADMIN_KEY, CLIENT_KEY, routes_yaml

ROUTE = "support-triage"
OTHER = "refund-policy"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ENVELOPE_FIELDS = {"message", "type", "param", "code"}

SECOND_ROUTE = f"""
  {OTHER}:
    description: Second route, for the audit filter.
    variants:
      finetuned:
        upstream: simulator
        model: "ft:sim-mini:acme:support-classifier:v1"
        system_prompt: "Answer with one label."
      prompted:
        upstream: simulator
        model: sim-mini
        system_prompt: "Answer with one label: billing, technical or account."
    candidate: finetuned
    fallback: prompted
    flag: {{enabled: true, weight: 0}}
"""

# (method, path, body) of every admin endpoint, for the key checks.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/routes", None),
    ("GET", f"/admin/flags/{ROUTE}", None),
    ("PATCH", f"/admin/flags/{ROUTE}", {"weight": 1, "reason": "r"}),
    ("POST", f"/admin/flags/{ROUTE}/rollback", {"reason": "r"}),
    ("POST", f"/admin/flags/{ROUTE}/release", {"reason": "r"}),
    ("GET", "/admin/audit", None),
]
ENDPOINT_IDS = ["routes", "get-flag", "patch", "rollback", "release", "audit"]


@pytest.fixture(scope="module")
def gateway(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnyGateway]:
    with in_process_simulator(loop_thread) as simulator:
        routes = routes_yaml(simulator.url, weight=50_000, extra=SECOND_ROUTE)
        tmp = tmp_path_factory.mktemp("admin")
        with start_in_process(loop_thread, tmp, routes, simulator) as gw:
            yield gw


def call(
    gw: AnyGateway,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    """One admin request, with the admin key unless ``headers`` says otherwise."""
    sent = ADMIN if headers is None else headers
    if content is not None:
        sent = {**sent, "content-type": "application/json"}
    return gw.http.request(
        method,
        gw.url + path,
        json=body if content is None else None,
        content=content,
        headers=sent,
        params=params,
        timeout=10,
    )


def flag_of(gw: AnyGateway, route: str = ROUTE) -> dict[str, Any]:
    response = call(gw, "GET", f"/admin/flags/{route}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def assert_conflict(response: httpx.Response, code: str = "version_conflict") -> dict[str, Any]:
    """409 ``code`` with the envelope plus ``current``; returns ``current``."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert set(body) == {"error", "current"}, body
    assert set(body["error"]) == ENVELOPE_FIELDS
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    current: dict[str, Any] = body["current"]
    assert current["route"] == ROUTE
    return current


def ensure_active(gw: AnyGateway) -> None:
    """Release the route if an earlier test left it rolled back."""
    if flag_of(gw)["status"] == "rolled_back":
        response = call(gw, "POST", f"/admin/flags/{ROUTE}/release", {"reason": "test reset"})
        assert response.status_code == 200, response.text


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"enabled": "no", "reason": "r"}, "enabled"),
        ({"weight": "ten", "reason": "r"}, "weight"),
        ({"weight": 1.5, "reason": "r"}, "weight"),
        ({"weight": 1, "reason": 5}, "reason"),
        ({"candidate_subjects": "alice", "reason": "r"}, "candidate_subjects"),
        ({"fallback_keys": [1, 2], "reason": "r"}, "fallback_keys"),
        ({"weight": 1, "reason": "r", "version": [3]}, "version"),
    ],
    ids=["enabled-str", "weight-str", "weight-float", "reason-int", "list-str", "list-int", "ver"],
)
def test_patch_with_a_wrong_type_is_400_naming_the_field(
    gateway: AnyGateway, body: dict[str, Any], param: str
) -> None:
    """A field of the wrong type is 400 invalid_request_error, naming the field; nothing
    changes."""
    before = flag_of(gateway)["version"]
    error = assert_error_envelope(
        call(gateway, "PATCH", f"/admin/flags/{ROUTE}", body),
        400,
        error_type="invalid_request_error",
    )
    assert param in error["message"] or error["param"] == param, error
    assert flag_of(gateway)["version"] == before


def test_patch_with_an_unknown_field_is_400_naming_it(gateway: AnyGateway) -> None:
    """A field the API does not know (a typo like ``weigth``) is 400, not silently ignored."""
    error = assert_error_envelope(
        call(gateway, "PATCH", f"/admin/flags/{ROUTE}", {"weigth": 10, "reason": "typo"}), 400
    )
    assert "weigth" in error["message"]


@pytest.mark.parametrize(
    "path", [f"/admin/flags/{ROUTE}/rollback", f"/admin/flags/{ROUTE}/release"]
)
def test_rollback_and_release_with_an_unknown_field_are_400(gateway: AnyGateway, path: str) -> None:
    """Rollback and release bodies refuse unknown fields too."""
    assert_error_envelope(call(gateway, "POST", path, {"reason": "r", "force": True}), 400)


def test_malformed_json_is_400(gateway: AnyGateway) -> None:
    """A body that is not JSON is 400 with the envelope."""
    assert_error_envelope(
        call(gateway, "PATCH", f"/admin/flags/{ROUTE}", content=b'{"weight": '), 400
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/flags/no-such-route", None),
        ("PATCH", "/admin/flags/no-such-route", {"weight": 1, "reason": "r"}),
        ("POST", "/admin/flags/no-such-route/rollback", {"reason": "r"}),
        ("POST", "/admin/flags/no-such-route/release", {"reason": "r"}),
    ],
    ids=["get", "patch", "rollback", "release"],
)
def test_unknown_route_is_404(
    gateway: AnyGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A route the routes file does not define is 404 route_not_found, naming the route."""
    error = assert_error_envelope(call(gateway, method, path, body), 404, code="route_not_found")
    assert "no-such-route" in error["message"]


def test_audit_of_an_unknown_route_is_404(gateway: AnyGateway) -> None:
    """The audit log's route filter accepts only known routes."""
    response = call(gateway, "GET", "/admin/audit", params={"route": "no-such-route"})
    assert_error_envelope(response, 404, code="route_not_found")


@pytest.mark.parametrize("weight", [-1, 100_001, 10**9])
def test_weight_out_of_range_is_422(gateway: AnyGateway, weight: int) -> None:
    """A weight outside 0..100000 is 422 naming ``weight``; the flag does not change."""
    before = flag_of(gateway)
    error = assert_error_envelope(
        call(gateway, "PATCH", f"/admin/flags/{ROUTE}", {"weight": weight, "reason": "r"}),
        422,
        code="unprocessable_entity",
        param="weight",
    )
    assert "100000" in error["message"]
    assert flag_of(gateway) == before


def test_release_weight_out_of_range_is_422(gateway: AnyGateway) -> None:
    """A release's resume weight outside 0..100000 is 422, and the flag stays rolled back."""
    ensure_active(gateway)
    assert call(gateway, "POST", f"/admin/flags/{ROUTE}/rollback", {"reason": "r"}).is_success
    response = call(
        gateway, "POST", f"/admin/flags/{ROUTE}/release", {"reason": "r", "weight": 100_001}
    )
    assert_error_envelope(response, 422, param="weight")
    assert flag_of(gateway)["status"] == "rolled_back"
    ensure_active(gateway)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", f"/admin/flags/{ROUTE}", {"weight": 1}),
        ("PATCH", f"/admin/flags/{ROUTE}", {"weight": 1, "reason": "   "}),
        ("PATCH", f"/admin/flags/{ROUTE}", None),
        ("POST", f"/admin/flags/{ROUTE}/rollback", {}),
        ("POST", f"/admin/flags/{ROUTE}/rollback", None),
        ("POST", f"/admin/flags/{ROUTE}/release", {"weight": 0}),
    ],
    ids=["patch", "patch-blank", "patch-no-body", "rollback", "rollback-no-body", "release"],
)
def test_missing_reason_is_422(
    gateway: AnyGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every change needs a reason: none (or no body at all) is 422 naming ``reason``."""
    ensure_active(gateway)
    before = flag_of(gateway)
    error = assert_error_envelope(call(gateway, method, path, body), 422, param="reason")
    assert "reason" in error["message"].lower()
    assert flag_of(gateway) == before


def test_patch_with_nothing_to_change_is_422(gateway: AnyGateway) -> None:
    """A reason alone changes nothing and does not bump the version."""
    before = flag_of(gateway)["version"]
    response = call(gateway, "PATCH", f"/admin/flags/{ROUTE}", {"reason": "just because"})
    assert_error_envelope(response, 422)
    assert flag_of(gateway)["version"] == before


# -- compare-and-set ----------------------------------------------------------------------------


def test_if_match_with_the_current_version_succeeds_and_returns_the_new_etag(
    gateway: AnyGateway,
) -> None:
    """If-Match "<version>" (also weak W/"<version>") is accepted when it is the stored
    version; the answer carries the new version as ETag."""
    version = flag_of(gateway)["version"]
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{ROUTE}",
        {"weight": 40_000, "reason": "ramp"},
        headers={**ADMIN, "if-match": f'"{version}"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == version + 1
    assert response.headers["etag"] == f'"{version + 1}"'
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{ROUTE}",
        {"weight": 50_000, "reason": "ramp"},
        headers={**ADMIN, "if-match": f'W/"{version + 1}"'},
    )
    assert response.status_code == 200, response.text


def test_stale_if_match_is_409_with_the_current_state(gateway: AnyGateway) -> None:
    """A PATCH whose If-Match is an old version is 409 carrying the flag as stored; the flag
    is not changed."""
    first = call(gateway, "PATCH", f"/admin/flags/{ROUTE}", {"weight": 30_000, "reason": "a"})
    assert first.status_code == 200, first.text
    stale = first.json()["version"] - 1
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{ROUTE}",
        {"weight": 99_000, "reason": "b"},
        headers={**ADMIN, "if-match": f'"{stale}"'},
    )
    current = assert_conflict(response)
    assert current == first.json()
    assert flag_of(gateway) == first.json()


def test_stale_version_in_the_body_is_409(gateway: AnyGateway) -> None:
    """``version`` in the body works like If-Match."""
    current = flag_of(gateway)
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{ROUTE}",
        {"weight": 1, "reason": "r", "version": current["version"] + 5},
    )
    assert assert_conflict(response) == current


def test_stale_if_match_on_rollback_is_409_and_does_not_roll_back(gateway: AnyGateway) -> None:
    """Rollback honours If-Match too."""
    ensure_active(gateway)
    current = flag_of(gateway)
    response = call(
        gateway,
        "POST",
        f"/admin/flags/{ROUTE}/rollback",
        {"reason": "r"},
        headers={**ADMIN, "if-match": f'"{current["version"] - 1}"'},
    )
    assert assert_conflict(response)["status"] == "active"
    assert flag_of(gateway)["status"] == "active"


@pytest.mark.parametrize("value", ["three", '"3.5"', "*", '""'])
def test_malformed_if_match_is_400(gateway: AnyGateway, value: str) -> None:
    """An If-Match that is not a version number is 400 naming If-Match."""
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{ROUTE}",
        {"weight": 1, "reason": "r"},
        headers={**ADMIN, "if-match": value},
    )
    assert_error_envelope(response, 400, param="If-Match")


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_no_key_is_401(
    gateway: AnyGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Every admin endpoint without a key is 401 invalid_api_key."""
    response = call(gateway, method, path, body, headers={})
    assert_error_envelope(response, 401, code="invalid_api_key")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_wrong_key_is_401(
    gateway: AnyGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """An unknown key is 401, and the answer does not echo it."""
    response = call(gateway, method, path, body, headers={"authorization": "Bearer sk-wrong-123"})
    assert_error_envelope(response, 401, code="invalid_api_key")
    assert "sk-wrong-123" not in response.text


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_client_key_is_403(
    gateway: AnyGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """A data-plane (client) key never reaches the control plane: 403 permission_denied."""
    response = call(gateway, method, path, body, headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert_error_envelope(response, 403, code="permission_denied")


def test_keys_are_checked_before_the_body(gateway: AnyGateway) -> None:
    """Without a valid admin key, a malformed body or parameter is still 401/403, so that
    callers without a key learn nothing about the API's validation."""
    path = f"/admin/flags/{ROUTE}"
    assert_error_envelope(call(gateway, "PATCH", path, {"weight": "x"}, headers={}), 401)
    assert_error_envelope(call(gateway, "PATCH", path, content=b"{nope", headers={}), 401)
    client = {"authorization": f"Bearer {CLIENT_KEY}"}
    assert_error_envelope(call(gateway, "PATCH", path, {"bogus": 1}, headers=client), 403)
    response = call(gateway, "GET", "/admin/audit", params={"limit": 0}, headers={})
    assert_error_envelope(response, 401)


def test_admin_key_is_refused_on_the_data_plane(gateway: AnyGateway) -> None:
    """The admin key is not a client key: chat completions with it are refused."""
    response = gateway.http.post(
        gateway.base_url + "/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
        headers=ADMIN,
    )
    assert response.status_code in {401, 403}
    assert ADMIN_KEY not in response.text


# -- rollback and release -----------------------------------------------------------------------


def test_rollback_twice_is_409_and_release_rearms_with_a_new_rollout_id(
    gateway: AnyGateway,
) -> None:
    """Rollback latches (the data plane serves the fallback, ``rolled_back``); a second
    rollback is 409 already_rolled_back; release re-arms with a new rollout id."""
    ensure_active(gateway)
    before = flag_of(gateway)
    rolled = call(gateway, "POST", f"/admin/flags/{ROUTE}/rollback", {"reason": "bad labels"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "rolled_back"
    assert rolled.json()["version"] == before["version"] + 1

    chat = gateway.http.post(
        gateway.base_url + "/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
        headers=AUTH,
    )
    assert chat.headers["x-gateway-decision"] == "rolled_back"
    assert chat.headers["x-gateway-variant"] == "prompted"

    again = call(gateway, "POST", f"/admin/flags/{ROUTE}/rollback", {"reason": "again"})
    assert assert_conflict(again, "already_rolled_back") == rolled.json()

    released = call(gateway, "POST", f"/admin/flags/{ROUTE}/release", {"reason": "fixed"})
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "active"
    assert released.json()["rollout_id"] != before["rollout_id"]
    assert released.json()["version"] == before["version"] + 2


def test_release_when_active_is_409(gateway: AnyGateway) -> None:
    """Releasing a flag that is not rolled back is 409 not_rolled_back with the current
    (active) state."""
    ensure_active(gateway)
    current = flag_of(gateway)
    response = call(gateway, "POST", f"/admin/flags/{ROUTE}/release", {"reason": "r"})
    assert assert_conflict(response, "not_rolled_back") == current


# -- shapes -------------------------------------------------------------------------------------


def test_get_routes_lists_each_route_with_variants_flag_and_counters(
    gateway: AnyGateway,
) -> None:
    """GET /admin/routes: a list of routes, each with candidate/fallback, variants (upstream,
    model, role, request and error counters), the flag as this replica serves it, and guard."""
    response = call(gateway, "GET", "/admin/routes")
    assert response.status_code == 200, response.text
    routes = {r["name"]: r for r in response.json()}
    assert set(routes) == {ROUTE, OTHER}
    route = routes[ROUTE]
    assert set(route) == {
        "name",
        "description",
        "candidate",
        "fallback",
        "variants",
        "flag",
        "guard",
        "replicas",
        "ramp",
    }
    assert route["ramp"] is None  # no ramp: in the routes file (tests/e2e/test_ramp.py)
    assert (route["candidate"], route["fallback"]) == ("finetuned", "prompted")
    assert set(route["variants"]) == {"finetuned", "prompted"}
    for name, variant in route["variants"].items():
        assert set(variant) == {"upstream", "model", "role", "requests", "errors"}
        assert variant["role"] == {"finetuned": "candidate", "prompted": "fallback"}[name]
        assert variant["upstream"] == "simulator"
        assert isinstance(variant["requests"], int)
        assert isinstance(variant["errors"], int)
    assert route["flag"] == flag_of(gateway)
    assert routes[OTHER]["description"] == "Second route, for the audit filter."
    assert routes[OTHER]["flag"]["weight"] == 0


def test_get_flag_shape_and_etag(gateway: AnyGateway) -> None:
    """GET /admin/flags/{route}: the whole flag state, with its version as ETag."""
    response = call(gateway, "GET", f"/admin/flags/{OTHER}")
    assert response.status_code == 200
    state = response.json()
    assert {
        "route",
        "enabled",
        "weight",
        "status",
        "salt",
        "rollout_id",
        "version",
        "targeting",
        "updated_by",
        "updated_at",
        "reason",
    } <= set(state)
    assert response.headers["etag"] == f'"{state["version"]}"'
    assert set(state["targeting"]) == {
        "candidate_subjects",
        "fallback_subjects",
        "candidate_keys",
        "fallback_keys",
    }


def test_patch_targeting_lists_replace_and_show_in_get(gateway: AnyGateway) -> None:
    """Targeting lists given in a PATCH replace the stored lists; the subject is then served
    as targeted."""
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{OTHER}",
        {"candidate_subjects": ["vip-1", "vip-2"], "reason": "beta users"},
    )
    assert response.status_code == 200, response.text
    assert sorted(response.json()["targeting"]["candidate_subjects"]) == ["vip-1", "vip-2"]
    response = call(
        gateway,
        "PATCH",
        f"/admin/flags/{OTHER}",
        {"candidate_subjects": ["vip-3"], "reason": "beta users, round 2"},
    )
    assert response.json()["targeting"]["candidate_subjects"] == ["vip-3"]
    chat = gateway.http.post(
        gateway.base_url + "/chat/completions",
        json={"model": OTHER, "messages": [{"role": "user", "content": TICKET}]},
        headers={**AUTH, "x-gateway-subject": "vip-3"},
    )
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-gateway-decision"] == "targeted"
    assert chat.headers["x-gateway-variant"] == "finetuned"


def test_audit_filters_by_route_newest_first_with_actor_and_reason(
    gateway: AnyGateway,
) -> None:
    """GET /admin/audit?route=...: that route's changes only, newest first, each with who
    (key name and x-gateway-actor), why, the trigger, the action and before/after states."""
    for weight in (10, 20):
        response = call(
            gateway,
            "PATCH",
            f"/admin/flags/{OTHER}",
            {"weight": weight, "reason": f"to {weight}"},
            headers={**ADMIN, "x-gateway-actor": "alice"},
        )
        assert response.status_code == 200, response.text
    assert call(gateway, "PATCH", f"/admin/flags/{ROUTE}", {"weight": 7, "reason": "x"}).is_success

    response = call(gateway, "GET", "/admin/audit", params={"route": OTHER, "limit": 2})
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    assert [e["route"] for e in entries] == [OTHER, OTHER]
    assert [e["reason"] for e in entries] == ["to 20", "to 10"]
    newest = entries[0]
    assert {"route", "at", "actor", "trigger", "action", "reason", "before", "after", "id"} <= set(
        newest
    )
    assert newest["actor"] == "ops (alice)"
    assert (newest["trigger"], newest["action"]) == ("manual", "set")
    assert newest["before"]["weight"] == 10
    assert newest["after"]["weight"] == 20
    assert newest["after"]["version"] == newest["before"]["version"] + 1

    everything = call(gateway, "GET", "/admin/audit").json()["data"]
    assert {e["route"] for e in everything} == {ROUTE, OTHER}
    assert everything[0]["route"] == ROUTE
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
def test_audit_limit_out_of_range_is_400(gateway: AnyGateway, limit: str) -> None:
    """``limit`` must be an integer 1..1000."""
    response = call(gateway, "GET", "/admin/audit", params={"limit": limit})
    assert_error_envelope(response, 400, param="limit")


def test_openapi_document_lists_the_admin_paths(gateway: AnyGateway) -> None:
    """/admin/openapi/openapi.json documents every admin path and method (and nothing of the
    data plane's operations endpoints)."""
    response = gateway.http.get(gateway.url + "/admin/openapi/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {
        "/admin/routes": {"get"},
        "/admin/flags/{route}": {"get", "patch"},
        "/admin/flags/{route}/rollback": {"post"},
        "/admin/flags/{route}/release": {"post"},
        "/admin/audit": {"get"},
    }.items() <= {path: set(ops) - {"parameters"} for path, ops in paths.items()}.items()
    assert "/metrics" not in paths
    assert "/readyz" not in paths
    get_flag = paths["/admin/flags/{route}"]["get"]["responses"]["200"]
    assert "x-gateway-flag-source" in get_flag["headers"]
    replica = document["components"]["schemas"]["ReplicaView"]
    assert {"replica", "version", "source", "generation", "age_s", "lagging"} <= set(
        replica["properties"]
    )
