"""The store never silently forgets, end to end: real gateway processes on a Redis of this
module's own, which the tests restart empty or roll back to an older RDB snapshot, and a
gateway whose SQLite file is deleted under it.

Three gateways (A, B, C) run for the whole module on the private Redis. The route starts at
weight 100000 in the routes file, so a replica that fell back to the routes file (or adopted a
forgotten store) would answer from the candidate (``finetuned``); while the flag is rolled
back every answer must come from the fallback (``prompted``). Every wait polls a condition
with a bounded deadline; traffic loops are bounded in count and time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import quick_http
from tests.e2e.support import AUTH, TICKET, metric_value, wait_for
from tests.processes import (
    ADMIN_KEY,
    GatewayProcess,
    GatewaySpec,
    SimulatorProcess,
    routes_yaml,
    start_gateway,
    start_gateways,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROUTE = "support-triage"
NAMESPACE = "chaos"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CANDIDATE, FALLBACK = "finetuned", "prompted"
WAIT_S = 20.0


def gateway_env(url: str, replica: str) -> dict[str, str]:
    return {
        "GATEWAY_FLAG_STORE": url,
        "GATEWAY_FLAG_STORE_NAMESPACE": NAMESPACE,
        "GATEWAY_FLAG_POLL_INTERVAL_S": "0.1",
        "GATEWAY_FLAG_HEARTBEAT_S": "0.5",
        "GATEWAY_REPLICA_ID": replica,
    }


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("chaos-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    simulator: SimulatorProcess,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, GatewayProcess]]:
    """Gateways gw-a, gw-b and gw-c on the private Redis, for the whole module."""
    routes = routes_yaml(simulator.url, weight=100_000)
    names = ("gw-a", "gw-b", "gw-c")
    specs = [
        GatewaySpec(tmp_path_factory.mktemp(name), routes, gateway_env(redis_server.url, name))
        for name in names
    ]
    with start_gateways(*specs) as gateways:
        yield dict(zip(names, gateways, strict=True))


# -- helpers -------------------------------------------------------------------------------------


def admin(gw: GatewayProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    return quick_http.request(method, gw.url + path, json=body, headers=ADMIN, timeout=10)


def flag(gw: GatewayProcess) -> dict[str, Any]:
    response = admin(gw, "GET", f"/admin/flags/{ROUTE}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def readiness(gw: GatewayProcess) -> dict[str, Any]:
    data: dict[str, Any] = quick_http.get(gw.url + "/readyz", timeout=5).json()
    return data


def served_version(gw: GatewayProcess) -> int | None:
    version = readiness(gw)["flag_store"]["routes"][ROUTE]["version"]
    return None if version is None else int(version)


def answer(gw: GatewayProcess, subject: str = "chaos-subject") -> tuple[str, str]:
    """(variant, decision) of one chat request."""
    response = quick_http.post(
        gw.base_url + "/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
        headers={**AUTH, "x-gateway-subject": subject},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-variant"], response.headers["x-gateway-decision"]


def audit(gw: GatewayProcess, limit: int = 50) -> list[dict[str, Any]]:
    response = admin(gw, "GET", f"/admin/audit?route={ROUTE}&limit={limit}")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def all_serve(gateways: list[GatewayProcess], version: int) -> bool:
    return all(served_version(gw) == version for gw in gateways)


def to_active(gw: GatewayProcess, weight: int) -> dict[str, Any]:
    """Release if rolled back, then set ``weight`` (enabled); the new flag."""
    if flag(gw)["status"] == "rolled_back":
        body = {"reason": "chaos test: reset", "weight": weight}
        response = admin(gw, "POST", f"/admin/flags/{ROUTE}/release", body)
        assert response.status_code == 200, response.text
    body = {"reason": "chaos test: reset", "weight": weight, "enabled": True}
    response = admin(gw, "PATCH", f"/admin/flags/{ROUTE}", body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


class FallbackOnly:
    """A thread asking every gateway in turn, at most ``limit`` requests or ``seconds``; it
    records every variant served (the test then asserts no candidate answer)."""

    def __init__(self, gateways: list[GatewayProcess], limit: int = 2_000, seconds: float = 60):
        self.gateways = gateways
        self.limit = limit
        self.seconds = seconds
        self.served: list[tuple[str, str, str]] = []  # (gateway url, variant, decision)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        i = 0
        while not self._stop.is_set() and i < self.limit and time.monotonic() < deadline:
            gw = self.gateways[i % len(self.gateways)]
            try:
                variant, decision = answer(gw, subject=f"subject-{i % 97}")
                self.served.append((gw.url, variant, decision))
            except (AssertionError, httpx.HTTPError) as exc:
                self.failures.append(f"{gw.url}: {exc}")
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> FallbackOnly:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def candidate_answers(self) -> list[tuple[str, str, str]]:
        return [s for s in self.served if s[1] == CANDIDATE]


def roll_back_and_wait(gateways: list[GatewayProcess], reason: str) -> dict[str, Any]:
    response = admin(gateways[0], "POST", f"/admin/flags/{ROUTE}/rollback", {"reason": reason})
    assert response.status_code == 200, response.text
    rolled: dict[str, Any] = response.json()
    wait_for(lambda: all_serve(gateways, rolled["version"]), "every replica rolled back", WAIT_S)
    return rolled


# -- Redis restarted empty -------------------------------------------------------------------------


def test_redis_restarted_empty_is_re_seeded_and_a_new_replica_stays_rolled_back(
    sim: SimulatorProcess,
    replicas: dict[str, GatewayProcess],
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Rolled back on 3 replicas; Redis restarts with no data: no replica ever answers from the
    candidate, the flag is restored (audited once, with the replica id and the generations) and
    a 4th replica started afterwards serves rolled_back, not the routes file's 100%. Later writes
    are applied on all four; release is accepted."""
    gateways = list(replicas.values())
    assert readiness(gateways[0])["flag_store"]["persistence"] == "none"
    assert gateways[0].log_events("flags.store_not_persistent")
    to_active(gateways[0], 100_000)
    rolled = roll_back_and_wait(gateways, "chaos: broken candidate")
    generation = readiness(gateways[0])["flag_store"]["generation"]

    with FallbackOnly(gateways) as traffic:
        wait_for(lambda: len(traffic.served) >= 30, "traffic before the restart", WAIT_S)
        redis_server.restart()  # empty
        t0 = time.monotonic()
        wait_for(
            lambda: all(
                readiness(gw)["flag_store"]["generation"] not in (None, generation)
                for gw in gateways
            ),
            "every replica on the re-seeded store's new generation",
            WAIT_S,
        )
        resynced_ms = (time.monotonic() - t0) * 1000
        seen = len(traffic.served)
        wait_for(lambda: len(traffic.served) >= seen + 30, "traffic after the restore", WAIT_S)

    print(
        f"redis restarted empty: every replica re-synced {resynced_ms:.0f} ms after Redis "
        f"answered; {len(traffic.served)} answers, {len(traffic.candidate_answers())} from the "
        "candidate"
    )
    record_property("empty_restart_resync_ms", round(resynced_ms))
    assert traffic.candidate_answers() == []
    assert {s[2] for s in traffic.served} == {"rolled_back"}
    restores = [e for e in audit(gateways[1]) if e["action"] == "restore"]
    assert len(restores) == 1, restores
    [restore] = restores
    assert restore["trigger"] == "replica"
    assert restore["actor"] in replicas
    assert restore["after"]["version"] == rolled["version"]
    assert restore["after"]["status"] == "rolled_back"
    assert restore["evidence"]["generation_known"] == generation
    # None, or the new generation when another replica claimed it first.
    assert restore["evidence"]["generation_seen"] in (None, restore["evidence"]["generation"])
    assert restore["evidence"]["generation"] != generation
    assert restore["evidence"]["store_version"] is None
    restorer = replicas[restore["actor"]]
    assert metric_value(restorer.metrics(), "gateway_flag_store_restores_total", route=ROUTE) == 1
    assert restorer.log_events("flags.store_restored")
    assert [e["entry"]["action"] for e in restorer.log_events("flag.audit")][-1] == "restore"

    with start_gateway(
        tmp_path, routes_yaml(sim.url, weight=100_000), env=gateway_env(redis_server.url, "gw-d")
    ) as late:
        everyone = [*gateways, late]
        wait_for(lambda: served_version(late) == rolled["version"], "gw-d loaded", WAIT_S)
        assert readiness(late)["flag_store"]["source"] == "store"
        assert {answer(late, f"s-{i}")[0] for i in range(20)} == {FALLBACK}

        # Later writes are applied everywhere (0 of 3 replicas applied them before).
        body = {"fallback_subjects": ["vip-complainer"], "reason": "chaos: after the restore"}
        patched = admin(gateways[2], "PATCH", f"/admin/flags/{ROUTE}", body)
        assert patched.status_code == 200, patched.text
        version = patched.json()["version"]
        assert version == rolled["version"] + 1
        wait_for(lambda: all_serve(everyone, version), "all four at the new version", WAIT_S)

        def heartbeats() -> dict[str, Any]:
            route = admin(late, "GET", "/admin/routes").json()[0]
            return {r["replica"]: (r["version"], r["lagging"]) for r in route["replicas"]}

        wait_for(
            lambda: (
                heartbeats() == dict.fromkeys(["gw-a", "gw-b", "gw-c", "gw-d"], (version, False))
            ),
            "every replica's heartbeat at the new version in GET /admin/routes",
            WAIT_S,
        )

        released = admin(late, "POST", f"/admin/flags/{ROUTE}/release", {"reason": "chaos: fixed"})
        assert released.status_code == 200, released.text
        assert released.json()["status"] == "active"


# -- Redis restored from an older snapshot -------------------------------------------------------


def test_redis_restored_from_an_older_snapshot_keeps_the_rollback(
    sim: SimulatorProcess,
    replicas: dict[str, GatewayProcess],
    redis_server: RedisServer,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """An RDB snapshot taken while the candidate had 100%; then a rollback; then Redis restarts
    from the snapshot (the store says: active, 100%, older version). No replica adopts it, no
    candidate answers; the replicas write the rollback back (audited, store version -> restored
    version); a 4th replica serves rolled_back; a later write lands on all replicas above every
    version served."""
    gateways = list(replicas.values())
    active = to_active(gateways[0], 100_000)
    wait_for(lambda: all_serve(gateways, active["version"]), "all active at 100%", WAIT_S)
    assert {answer(gw)[0] for gw in gateways} == {CANDIDATE}
    snapshot = redis_server.snapshot("candidate-at-100")
    rolled = roll_back_and_wait(gateways, "chaos: broken candidate, again")
    last_seq = max(e["seq"] for e in audit(gateways[0]))

    with FallbackOnly(gateways) as traffic:
        wait_for(lambda: len(traffic.served) >= 30, "traffic before the rollback of Redis", WAIT_S)
        redis_server.restart_from(snapshot)
        t0 = time.monotonic()

        def restored() -> bool:
            client = redis_server.client()
            try:
                raw = client.hget(f"{NAMESPACE}:flags", ROUTE)
            finally:
                client.close()
            return raw is not None and f'"version":{rolled["version"]}'.encode() in raw

        wait_for(restored, "the rollback written back into Redis", WAIT_S)
        restored_ms = (time.monotonic() - t0) * 1000
        seen = len(traffic.served)
        wait_for(lambda: len(traffic.served) >= seen + 30, "traffic after the restore", WAIT_S)

    print(
        f"redis restored from an older snapshot: rollback written back {restored_ms:.0f} ms "
        f"after Redis answered; {len(traffic.served)} answers, "
        f"{len(traffic.candidate_answers())} from the candidate"
    )
    record_property("older_snapshot_restore_ms", round(restored_ms))
    assert traffic.failures == []
    assert traffic.candidate_answers() == []
    restores = [e for e in audit(gateways[0]) if e["action"] == "restore" and e["seq"] > last_seq]
    assert len(restores) == 1, restores
    [restore] = restores
    assert restore["evidence"]["store_version"] == active["version"]
    assert restore["evidence"]["restored_version"] == rolled["version"]
    assert restore["before"]["status"] == "active"
    assert restore["after"]["status"] == "rolled_back"
    # The snapshot's audit counter was behind: the restore's seq continues above the last one
    # the replicas saw (the rollback's), so no number is handed out twice.
    assert restore["seq"] == last_seq + 1

    with start_gateway(
        tmp_path, routes_yaml(sim.url, weight=100_000), env=gateway_env(redis_server.url, "gw-e")
    ) as late:
        wait_for(lambda: served_version(late) == rolled["version"], "gw-e loaded", WAIT_S)
        assert {answer(late, f"s-{i}")[0] for i in range(20)} == {FALLBACK}

    # The latch holds through registration and weight changes, on any replica.
    registered = admin(
        gateways[1],
        "POST",
        f"/admin/flags/{ROUTE}/candidate",
        {"model": "ft:sim-mini:acme:support-classifier:v2", "reason": "chaos: new job"},
    )
    assert registered.status_code == 200, registered.text
    assert (registered.json()["status"], registered.json()["weight"]) == ("rolled_back", 0)
    refused = admin(
        gateways[2], "PATCH", f"/admin/flags/{ROUTE}", {"weight": 50_000, "reason": "chaos: ramp"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "rolled_back"
    assert f"gateway flags release {ROUTE} --reason" in refused.json()["error"]["message"]
    assert refused.json()["current"]["status"] == "rolled_back"
    version = registered.json()["version"]
    wait_for(lambda: all_serve(gateways, version), "the registration on every replica", WAIT_S)
    assert {answer(gw)[0] for gw in gateways} == {FALLBACK}

    released = admin(
        gateways[0], "POST", f"/admin/flags/{ROUTE}/release", {"reason": "chaos: new model ok"}
    )
    assert released.status_code == 200, released.text
    after = released.json()
    assert (after["status"], after["weight"]) == ("active", 0)
    assert after["rollout_id"] != rolled["rollout_id"]
    wait_for(lambda: all_serve(gateways, after["version"]), "the release everywhere", WAIT_S)


# -- SQLite file deleted under a running gateway --------------------------------------------------


def test_sqlite_file_deleted_under_a_running_gateway_is_re_seeded_and_later_writes_survive(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    """The flag file (and its WAL) removed while the gateway runs: the gateway notices, writes
    the rollback into a new file (audited), keeps serving the fallback; a write after that
    is in the file a restarted gateway reads."""
    db = tmp_path / "flags.db"
    env = {"GATEWAY_FLAG_STORE": f"sqlite:///{db}", "GATEWAY_FLAG_POLL_INTERVAL_S": "0.1"}
    routes = routes_yaml(sim.url, weight=100_000)
    with start_gateway(tmp_path, routes, env=env) as gw:
        rolled = admin(gw, "POST", f"/admin/flags/{ROUTE}/rollback", {"reason": "chaos: broken"})
        assert rolled.status_code == 200, rolled.text
        generation = readiness(gw)["flag_store"]["generation"]
        for name in ("flags.db", "flags.db-wal", "flags.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        wait_for(
            lambda: readiness(gw)["flag_store"]["generation"] not in (None, generation),
            "the gateway on a new file",
            WAIT_S,
        )
        assert db.exists()
        assert readiness(gw)["flag_store"]["source"] == "store"
        assert {answer(gw, f"s-{i}")[0] for i in range(20)} == {FALLBACK}
        [restore] = [e for e in audit(gw) if e["action"] == "restore"]
        assert restore["after"]["version"] == rolled.json()["version"]
        assert gw.log_events("flags.store_restored")
        body = {"enabled": False, "reason": "chaos: after the file came back"}
        patched = admin(gw, "PATCH", f"/admin/flags/{ROUTE}", body)
        assert patched.status_code == 200, patched.text
    with start_gateway(tmp_path, routes, env=env) as gw:
        state = flag(gw)
        assert (state["enabled"], state["status"]) == (False, "rolled_back")
        assert state["version"] == patched.json()["version"]
        assert [e["action"] for e in audit(gw)] == ["set", "restore"]
