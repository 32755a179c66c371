"""The quality guard end to end: a candidate that breaks the contract is rolled back by itself.

Each test starts its own gateway (``GATEWAY_GUARD_TICK_S=0.05``, ``min_samples: 20``) against
the session's simulator, makes the candidate misbehave with ``sim.set_behaviour`` and sends
traffic with distinct subjects until the guard acts. Then it checks what everybody sees: the
flag (``GET /admin/flags``), the next requests' ``x-gateway-decision``, the audit with the
guard's evidence, ``gateway_rollbacks_total``, the CLI's ``release``, a second replica on Redis,
the webhook, and the latency SLO.

The gateway, the simulator and the CLI run in-process (``tests.inprocess_sim``,
``tests.cli_inprocess``; the webhook is still a real HTTP server on 127.0.0.1, port 0). The two
replicas on Redis stay processes over TCP.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import quick_http
from tests.cli_inprocess import CliRun, run_cli
from tests.e2e.support import AUTH, TICKET, AnyGateway, metric_value, wait_for
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    start_in_process,
)
from tests.processes import (
    ADMIN_KEY,
    CANDIDATE_MODEL,
    SHARED_REDIS,
    GatewaySpec,
    SimulatorProcess,
    routes_yaml,
    start_gateways,
)

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
LABELS = {"billing", "technical", "account"}
GUARD_ENV = {"GATEWAY_GUARD_TICK_S": "0.05"}
ENFORCE = "guard: {min_samples: 20}"
TRIP_TIMEOUT_S = 30.0


def ask(client: httpx.Client, gw: AnyGateway, subject: str) -> httpx.Response:
    """One ordinary (non-streaming) chat request for ``subject``; must be answered 200."""
    response = client.post(
        gw.base_url + "/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
        headers={**AUTH, "x-gateway-subject": subject},
    )
    assert response.status_code == 200, response.text
    return response


def admin_get(gw: AnyGateway, path: str, **params: Any) -> Any:
    response = gw.http.get(gw.url + path, headers=ADMIN, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def flag_of(gw: AnyGateway) -> dict[str, Any]:
    flag: dict[str, Any] = admin_get(gw, f"/admin/flags/{ROUTE}")
    return flag


def guard_state(gw: AnyGateway) -> dict[str, Any]:
    """The route's ``guard`` object in ``GET /admin/routes``."""
    routes = admin_get(gw, "/admin/routes")
    state: dict[str, Any] = next(r for r in routes if r["name"] == ROUTE)["guard"]
    return state


def drive_until_rolled_back(client: httpx.Client, gw: AnyGateway, prefix: str) -> None:
    """Send batches of requests (a new subject each) until the stored flag is rolled back."""
    sent = 0

    def batch_then_rolled_back() -> bool:
        nonlocal sent
        for _ in range(10):
            ask(client, gw, f"{prefix}-{sent}")
            sent += 1
        return bool(flag_of(gw)["status"] == "rolled_back")

    wait_for(batch_then_rolled_back, "the guard to roll the flag back", TRIP_TIMEOUT_S)


def decisions(client: httpx.Client, gw: AnyGateway, prefix: str, n: int) -> list[str]:
    """The ``x-gateway-decision`` of ``n`` requests with new subjects."""
    return [ask(client, gw, f"{prefix}-{i}").headers["x-gateway-decision"] for i in range(n)]


def run_flags_cli(*args: str, gw: InProcessGatewayUnderTest) -> CliRun:
    """``gateway flags *args`` in this process, its admin client bridged to ``gw``."""
    env = {"GATEWAY_URL": gw.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY}
    return run_cli("flags", *args, env=env, gateways={gw.url: gw})


def test_guard_rolls_back_a_candidate_breaking_the_contract_and_release_rearms_it(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """60% invalid labels at 50% weight: the guard rolls back (once, audited with evidence);
    the fallback serves; the CLI's release re-arms with a new rollout id and clean counters;
    a healthy candidate is then left alone."""
    sim = in_sim
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.6)
    routes = routes_yaml(sim.url, weight=50_000, route_extra=ENFORCE)
    with (
        start_in_process(loop_thread, tmp_path, routes, sim, env=GUARD_ENV) as gw,
        gw.client(timeout=10) as client,
    ):
        first_rollout = flag_of(gw)["rollout_id"]
        drive_until_rolled_back(client, gw, "bad")

        # The next requests are answered by the fallback, with a valid label.
        for i in range(10):
            response = ask(client, gw, f"after-{i}")
            assert response.headers["x-gateway-decision"] == "rolled_back"
            assert response.headers["x-gateway-variant"] == "prompted"
            assert response.json()["choices"][0]["message"]["content"] in LABELS

        # The audit holds one guard rollback with the numbers that decided it.
        entries = admin_get(gw, "/admin/audit", route=ROUTE)["data"]
        by_guard = [e for e in entries if e["trigger"] == "guard"]
        assert len(by_guard) == 1, entries
        entry = by_guard[0]
        assert entry["action"] == "rollback"
        assert entry["actor"] == "guard"
        assert entry["reason"].startswith("guard: ")
        assert entry["after"]["status"] == "rolled_back"
        evidence = entry["evidence"]
        assert evidence["rollout_id"] == first_rollout
        assert evidence["rule"] in ("ceiling", "regression", "recent")
        assert evidence["min_samples"] == 20
        assert {"ceiling", "margin", "alpha", "why"} <= set(evidence)
        cand, fb = evidence["candidate"], evidence["fallback"]
        assert cand["n"] >= 20
        assert 0 < cand["failures"] <= cand["n"]
        assert cand["rate"] == pytest.approx(cand["failures"] / cand["n"])
        assert 0 <= cand["lower"] <= cand["rate"] <= cand["upper"] <= 1
        assert {"n", "failures", "rate", "lower", "upper"} <= set(fb)
        if evidence["rule"] == "ceiling":
            assert cand["lower"] > evidence["ceiling"]

        assert (
            metric_value(gw.metrics(), "gateway_rollbacks_total", route=ROUTE, trigger="guard") == 1
        )

        # Fixed candidate; a person re-arms the flag with the CLI.
        sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.0)
        run = run_flags_cli("release", ROUTE, "--reason", "candidate retrained", "--json", gw=gw)
        assert run.code == 0, run.err
        released = json.loads(run.out)
        assert released["status"] == "active"
        new_rollout = released["rollout_id"]
        assert new_rollout != first_rollout
        assert flag_of(gw)["rollout_id"] == new_rollout

        state = guard_state(gw)
        assert state["rollout_id"] == new_rollout
        assert state["status"] == "watching"
        assert state["verdict"]["candidate"]["n"] == 0
        assert state["verdict"]["fallback"]["n"] == 0

        # Healthy traffic on the new rollout: counted, never rolled back.
        seen = decisions(client, gw, "good", 100)
        assert set(seen) == {"rollout"}
        state = guard_state(gw)
        assert state["rollout_id"] == new_rollout
        assert state["verdict"]["candidate"]["n"] >= 20
        assert state["verdict"]["candidate"]["failures"] == 0
        # The verdict is a pure function of these counts: no tick can trip on them.
        assert state["verdict"]["rule"] is None
        assert state["status"] == "watching"
        assert flag_of(gw)["status"] == "active"
        assert (
            metric_value(gw.metrics(), "gateway_rollbacks_total", route=ROUTE, trigger="guard") == 1
        )


@pytest.mark.e2e
def test_a_guard_rollback_tripped_by_one_replica_is_served_by_the_other(
    sim: SimulatorProcess, tmp_path: Path, redis_namespace: str
) -> None:
    """Two replicas on one Redis namespace; only A sees the bad traffic, one guard trips (the
    guards decide on route-wide counts shared through the store, so either may be first), and
    the rollback is served by both, B included, to their next requests; it is counted once."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.6)
    env = {
        **GUARD_ENV,
        "GATEWAY_FLAG_STORE": SHARED_REDIS,
        "GATEWAY_FLAG_STORE_NAMESPACE": redis_namespace,
    }
    routes = routes_yaml(sim.url, weight=50_000, route_extra=ENFORCE)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        start_gateways(
            GatewaySpec(tmp_path / "a", routes, env), GatewaySpec(tmp_path / "b", routes, env)
        ) as (a, b),
        quick_http.client(timeout=10) as client,
    ):
        assert "rolled_back" not in decisions(client, b, "b-before", 10)
        drive_until_rolled_back(client, a, "a-bad")

        count = 0

        def b_serves_rollback() -> bool:
            nonlocal count
            count += 1
            return ask(client, b, f"b-probe-{count}").headers["x-gateway-decision"] == (
                "rolled_back"
            )

        wait_for(b_serves_rollback, "replica B to serve the rollback")
        assert set(decisions(client, b, "b-after", 10)) == {"rolled_back"}
        assert set(decisions(client, a, "a-after", 10)) == {"rolled_back"}
        assert flag_of(b)["status"] == "rolled_back"
        trips = [
            metric_value(gw.metrics(), "gateway_rollbacks_total", trigger="guard") for gw in (a, b)
        ]
        assert sorted(trips) == [0, 1], trips  # one guard rolled back, once


class _Webhook:
    """A tiny HTTP server in a thread on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/guard"
        # shutdown() waits for the loop's next poll: 20 ms, not the default 500.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> _Webhook:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_guard_rollback_posts_one_json_notice_to_the_webhook(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """GATEWAY_GUARD_WEBHOOK_URL gets one POST with route, rollout id and evidence."""
    sim = in_sim
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
    routes = routes_yaml(sim.url, weight=100_000, route_extra=ENFORCE)
    with _Webhook() as hook:
        env = {**GUARD_ENV, "GATEWAY_GUARD_WEBHOOK_URL": hook.url}
        with (
            start_in_process(loop_thread, tmp_path, routes, sim, env=env) as gw,
            gw.client(timeout=10) as client,
        ):
            rollout = flag_of(gw)["rollout_id"]
            drive_until_rolled_back(client, gw, "hook")
            wait_for(lambda: hook.bodies, "the webhook POST")
            decisions(client, gw, "hook-after", 10)  # more traffic: still one notice
            flag_version = flag_of(gw)["version"]
        assert len(hook.bodies) == 1, hook.bodies
    notice = hook.bodies[0]
    assert notice["event"] == "gateway.guard.rollback"
    assert notice["route"] == ROUTE
    assert notice["rollout_id"] == rollout
    assert notice["flag_version"] == flag_version
    assert notice["reason"].startswith("guard: ")
    evidence = notice["evidence"]
    assert evidence["rollout_id"] == rollout
    assert evidence["rule"] == "ceiling"
    assert evidence["candidate"]["n"] >= 20
    assert evidence["candidate"]["failures"] == evidence["candidate"]["n"]


def test_answers_slower_than_the_latency_slo_count_as_guard_failures(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """``latency_slo_s: 0.02`` and a candidate that waits 40 ms before answering: every
    candidate outcome fails (no clock race: the wait is a floor); in observe mode the guard
    records the trip but the flag stays active."""
    sim = in_sim
    sim.set_behaviour(CANDIDATE_MODEL, latency_ms=40)
    routes = routes_yaml(
        sim.url,
        weight=100_000,
        route_extra="guard: {mode: observe, min_samples: 20, latency_slo_s: 0.02}",
    )
    with (
        start_in_process(loop_thread, tmp_path, routes, sim, env=GUARD_ENV) as gw,
        gw.client(timeout=10) as client,
    ):
        seen = decisions(client, gw, "slow", 25)
        assert set(seen) == {"rollout"}
        state = wait_for(
            lambda: (s := guard_state(gw))["status"] == "tripped" and s,
            "the guard to record its verdict",
        )
        assert state["mode"] == "observe"
        cand = state["verdict"]["candidate"]
        assert cand["n"] >= 20
        assert cand["failures"] == cand["n"]
        assert state["verdict"]["rule"] == "ceiling"
        # Observe mode: no rollback, the candidate keeps serving.
        assert flag_of(gw)["status"] == "active"
        assert ask(client, gw, "slow-after").headers["x-gateway-decision"] == "rollout"
        assert metric_value(gw.metrics(), "gateway_rollbacks_total", route=ROUTE) == 0
