"""The guard on three replicas sharing one Redis (a private ``redis-server``, never the shared one).

One Redis and three gateway processes for the module; each test releases the route to a fresh
rollout at weight 50% first. Traffic goes round-robin over the replicas with a new subject per
request, so about half of it is the candidate's. The simulator's candidate answers 50% invalid
labels; the guard (the routes file's defaults: ceiling 0.20, alpha 0.05, ``min_samples: 50``)
decides on the route-wide totals of all three replicas.

What is proven: every replica serves ``rolled_back`` within 100 candidate answers in total (one
replica alone needs about 50); with Redis stopped during that traffic each replica latches
itself, and once Redis is back the rollback lands exactly once.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import quick_http
from tests.e2e.support import AUTH, TICKET, wait_for
from tests.processes import (
    ADMIN_KEY,
    CANDIDATE_MODEL,
    GatewayProcess,
    GatewaySpec,
    SimulatorProcess,
    routes_yaml,
    start_gateways,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
REPLICAS = 3
MAX_CANDIDATE_ANSWERS = 100
MAX_ANSWERS_AFTER_A_LATE_BREAK = 150
REQUEST_BUDGET = 1_000
"""Every traffic loop stops after this many requests, whatever happens."""


class Cluster:
    """Three gateways on one private Redis, and the simulator they call."""

    def __init__(self, redis: RedisServer, gateways: list[GatewayProcess], sim: SimulatorProcess):
        self.redis = redis
        self.gateways = gateways
        self.sim = sim
        self.http = quick_http.client(timeout=15)

    def ask(self, gw: GatewayProcess) -> httpx.Response:
        response = self.http.post(
            gw.base_url + "/chat/completions",
            json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
            headers={**AUTH, "x-gateway-subject": uuid.uuid4().hex},
        )
        assert response.status_code == 200, response.text
        return response

    def admin(self, gw: GatewayProcess, method: str, path: str, **body: Any) -> Any:
        """One admin call; a 503 (the store reconnecting after a test restarted Redis) is
        retried for a bounded time."""
        deadline = time.monotonic() + 30
        while True:
            response = self.http.request(method, gw.url + path, headers=ADMIN, json=body or None)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert response.status_code < 300, response.text
        return response.json()

    def shared_candidate_outcomes(self) -> int:
        """The fewest route-wide candidate outcomes any replica's guard has seen."""
        seen: list[int] = []
        for gw in self.gateways:
            for route in self.admin(gw, "GET", "/admin/routes"):
                if route["name"] == ROUTE:
                    seen.append(int(route["guard"]["verdict"]["candidate"]["n"]))
        return min(seen)

    def flag(self, gw: GatewayProcess) -> dict[str, Any]:
        flag: dict[str, Any] = self.admin(gw, "GET", f"/admin/flags/{ROUTE}")
        return flag

    def fresh_rollout(self, weight: int = 50_000) -> str:
        """Healthy candidate, route rolled back by hand and released to ``weight`` in a new
        rollout; every replica serving that rollout."""
        self.sim.reset()
        first = self.gateways[0]
        if self.flag(first)["status"] != "rolled_back":
            self.admin(first, "POST", f"/admin/flags/{ROUTE}/rollback", reason="test: reset")
        self.admin(
            first,
            "POST",
            f"/admin/flags/{ROUTE}/release",
            reason="test: new rollout",
            weight=weight,
        )
        rollout: str = self.flag(first)["rollout_id"]

        def everyone_serves_it() -> bool:
            return all(self.readiness_rollout(gw) == rollout for gw in self.gateways)

        wait_for(everyone_serves_it, "every replica to serve the new rollout", 30)
        return rollout

    def readiness_rollout(self, gw: GatewayProcess) -> str | None:
        routes = self.admin(gw, "GET", "/admin/routes")
        for route in routes:
            if route["name"] == ROUTE and route["flag"] is not None:
                rollout: str = route["flag"]["rollout_id"]
                return rollout
        return None

    def break_candidate(self) -> None:
        self.sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.5)

    def drive_until_all_rolled_back(self, on_candidate: Any = None) -> int:
        """Round-robin traffic until each replica, in one round, answered ``rolled_back``;
        returns the candidate answers served in total."""
        candidate_answers = 0
        streak = 0
        for sent, gw in enumerate(itertools.cycle(self.gateways)):
            assert sent < REQUEST_BUDGET, f"no rollback within {REQUEST_BUDGET} requests"
            response = self.ask(gw)
            if response.headers["x-gateway-variant"] == "finetuned":
                candidate_answers += 1
                if on_candidate is not None:
                    on_candidate(candidate_answers)
            streak = streak + 1 if response.headers["x-gateway-decision"] == "rolled_back" else 0
            if streak >= REPLICAS:
                return candidate_answers
        raise AssertionError("unreachable")

    def guard_rollbacks(self) -> list[dict[str, Any]]:
        entries = self.admin(self.gateways[0], "GET", "/admin/audit", route=ROUTE)["data"]
        return [e for e in entries if e["trigger"] == "guard"]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorProcess
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    with RedisServer(tmp / "redis") as redis:
        env = {
            "GATEWAY_FLAG_STORE": redis.url,
            "GATEWAY_FLAG_POLL_INTERVAL_S": "0.05",
            "GATEWAY_GUARD_TICK_S": "0.02",
            "GATEWAY_GUARD_FLUSH_S": "0.02",
        }
        for name in "abc":
            (tmp / name).mkdir()
        routes = routes_yaml(simulator.url, weight=50_000, route_extra="guard: {min_samples: 50}")
        specs = [
            GatewaySpec(tmp / name, routes, {**env, "GATEWAY_REPLICA_ID": name}) for name in "abc"
        ]
        with start_gateways(*specs) as gateways:
            cluster = Cluster(redis, gateways, simulator)
            yield cluster
            cluster.http.close()
            simulator.reset()


def test_a_broken_candidate_is_stopped_on_every_replica_within_100_candidate_answers(
    cluster: Cluster,
) -> None:
    """50% invalid at weight 50%, round-robin over 3 replicas: the evidence is route-wide, so
    it takes about as many candidate answers as on one replica; one guard rollback is audited,
    with route-wide counts above any one replica's share."""
    rollout = cluster.fresh_rollout()
    cluster.break_candidate()
    answers = cluster.drive_until_all_rolled_back()
    assert answers <= MAX_CANDIDATE_ANSWERS, answers
    [entry, *_] = cluster.guard_rollbacks()
    assert entry["evidence"]["rollout_id"] == rollout
    assert entry["evidence"]["replica"] in {"a", "b", "c"}
    assert entry["evidence"]["candidate"]["n"] > 50 // REPLICAS * 2
    for gw in cluster.gateways:
        assert cluster.flag(gw)["status"] == "rolled_back"


def test_with_redis_stopped_each_replica_latches_and_the_rollback_lands_once_it_is_back(
    cluster: Cluster,
) -> None:
    """Redis dies after 45 candidate answers, once every replica has shared them: each
    replica's guard goes on with the last totals plus its own outcomes, latches itself when it
    trips, and every replica serves rolled_back within 100 candidate answers in total. The
    rollback write is retried; with Redis back (from its last snapshot) it lands exactly once.

    While the store is down nothing is shared, so each replica needs its own outcomes for the
    part of the evidence that was not shared yet: an outage that starts before the break costs
    up to ``replicas x min_samples`` candidate answers (each replica still stops on its own).
    """
    rollout = cluster.fresh_rollout()
    before = len(cluster.guard_rollbacks())
    cluster.break_candidate()

    def stop_redis_at_45(answers: int) -> None:
        if answers == 45:
            # Every replica has exchanged its counts: the 45 outcomes are route-wide evidence
            # (on a busy machine the exchanges may lag the traffic by a few requests).
            wait_for(lambda: cluster.shared_candidate_outcomes() >= 45, "shared evidence", 30)
            cluster.redis.save()
            cluster.redis.kill()

    answers = cluster.drive_until_all_rolled_back(on_candidate=stop_redis_at_45)
    assert answers <= MAX_CANDIDATE_ANSWERS, answers
    assert cluster.redis.proc is None  # the rollback happened while Redis was down
    for gw in cluster.gateways:
        ready = cluster.http.get(gw.url + "/readyz").json()
        assert ready["guard"]["pending_rollbacks"] == [ROUTE]

    cluster.redis.restart(keep_data=True)

    def landed() -> bool:
        """Every replica's flag (read from the store: 503 while the reconnect is under way)
        rolled back, and no rollback pending."""
        for gw in cluster.gateways:
            response = cluster.http.get(gw.url + f"/admin/flags/{ROUTE}", headers=ADMIN)
            if response.status_code != 200 or response.json()["status"] != "rolled_back":
                return False
            if cluster.http.get(gw.url + "/readyz").json()["guard"]["pending_rollbacks"]:
                return False
        return True

    wait_for(landed, "the pending rollbacks to land", 60)
    new = cluster.guard_rollbacks()[: len(cluster.guard_rollbacks()) - before]
    assert [e["evidence"]["rollout_id"] for e in new] == [rollout]


def test_a_late_break_after_1000_healthy_answers_is_stopped_within_150_candidate_answers(
    cluster: Cluster,
) -> None:
    """The candidate answers 1,000 requests well (weight 100%, round-robin), then breaks to
    50% invalid: the recent rule catches it within 150 candidate answers of the break, on
    every replica, where counts over the whole rollout would take about 250."""
    cluster.fresh_rollout(weight=100_000)
    for gw, _ in zip(itertools.cycle(cluster.gateways), range(1_000), strict=False):
        assert cluster.ask(gw).headers["x-gateway-variant"] == "finetuned"
    cluster.break_candidate()
    answers = cluster.drive_until_all_rolled_back()
    assert answers <= MAX_ANSWERS_AFTER_A_LATE_BREAK, answers
    [entry, *_] = cluster.guard_rollbacks()
    assert entry["evidence"]["rule"] == "recent"
    assert entry["reason"].startswith("guard: recent rule")
