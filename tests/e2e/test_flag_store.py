"""Flag stores end to end: durability, propagation between workers and replicas, store outages.

Real processes over TCP. The route starts at weight 100000 (every subject on the candidate,
``x-gateway-decision: rollout``); the change under test is the kill switch
(``enabled: false``, decision ``disabled``), so one request tells which state a replica serves.

* SQLite: a change survives a restart and a SIGKILL right after the PATCH's 200; two workers on
  one file both serve a change (how soon is measured by bench/flag_propagation.py).
* Redis: a change made through one gateway is served by another (propagation time logged); a
  private Redis stopped and restarted under traffic leaves the gateway serving its last-known
  flag, ``degraded``, refusing writes with 503, and ``ready`` again by itself, having restored
  the flag the restarted Redis forgot; a gateway started
  with Redis down serves the fallback (``no_flag``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import quick_http
from tests.e2e.support import AUTH, TICKET, assert_error_envelope, wait_for
from tests.processes import (
    ADMIN_KEY,
    SHARED_REDIS,
    GatewayProcess,
    GatewaySpec,
    SimulatorProcess,
    free_port,
    routes_yaml,
    start_gateway,
    start_gateways,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROUTE = "support-triage"
SUBJECT = "subject-fixed-1"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
OLD, NEW = "rollout", "disabled"
KILL_SWITCH: dict[str, Any] = {"enabled": False, "reason": "e2e: kill switch"}


# -- helpers -------------------------------------------------------------------------------------


def chat_body() -> dict[str, Any]:
    return {"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]}


def served_decision(url: str, client: httpx.Client | None = None) -> str:
    """The ``x-gateway-decision`` of one chat request for SUBJECT (a new connection unless
    ``client`` is given); fails on any status but 200."""
    headers = {**AUTH, "x-gateway-subject": SUBJECT}
    if client is None:
        response = quick_http.post(url + "/v1/chat/completions", json=chat_body(), headers=headers)
    else:
        response = client.post(url + "/v1/chat/completions", json=chat_body(), headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-decision"]


def patch_flag(gw: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    return quick_http.patch(f"{gw.url}/admin/flags/{ROUTE}", json=body, headers=ADMIN, timeout=10)


def get_flag(gw: GatewayProcess) -> dict[str, Any]:
    response = quick_http.get(f"{gw.url}/admin/flags/{ROUTE}", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def readiness(gw: GatewayProcess) -> dict[str, Any]:
    data: dict[str, Any] = quick_http.get(gw.url + "/readyz", timeout=5).json()
    return data


def store_env(url: str, namespace: str = "gateway") -> dict[str, str]:
    return {"GATEWAY_FLAG_STORE": url, "GATEWAY_FLAG_STORE_NAMESPACE": namespace}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that keeps nothing on disk."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


# -- SQLite: durability ---------------------------------------------------------------------------


def test_sqlite_flag_change_survives_a_gateway_restart(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    """A change written before a graceful stop is what the next gateway on the file serves."""
    env = store_env(f"sqlite:///{tmp_path}/flags.db")
    routes = routes_yaml(sim.url, weight=100_000)
    with start_gateway(tmp_path, routes, env=env) as gw:
        assert served_decision(gw.url) == OLD
        response = patch_flag(gw, KILL_SWITCH)
        assert response.status_code == 200, response.text
    with start_gateway(tmp_path, routes, env=env) as gw:
        state = get_flag(gw)
        assert (state["enabled"], state["version"]) == (False, 1)
        assert served_decision(gw.url) == NEW


def test_sqlite_flag_change_survives_sigkill_right_after_the_patch(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    """A PATCH that returned 200 is durable: SIGKILL at once, restart on the same file, and GET
    and the audit log show the change."""
    env = store_env(f"sqlite:///{tmp_path}/flags.db")
    routes = routes_yaml(sim.url, weight=100_000)
    with start_gateway(tmp_path, routes, env=env) as gw:
        response = patch_flag(gw, {"weight": 12_345, "reason": "before the crash"})
        assert response.status_code == 200, response.text
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(timeout=10)
        assert gw.proc.returncode == -signal.SIGKILL
    with start_gateway(tmp_path, routes, env=env) as gw:
        state = get_flag(gw)
        assert (state["weight"], state["version"], state["reason"]) == (
            12_345,
            1,
            "before the crash",
        )
        audit = quick_http.get(
            f"{gw.url}/admin/audit", params={"route": ROUTE}, headers=ADMIN
        ).json()
        assert [entry["reason"] for entry in audit["data"]] == ["before the crash"]


# -- SQLite: two workers on one file ---------------------------------------------------------------


def _worker_pids(master: int) -> set[int]:
    """The processes whose parent is ``master`` (uvicorn's workers, and helpers)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.parent.name))
    return pids


def _server_pid(candidates: set[int], server_port: int, client_port: int) -> int | None:
    """Which of ``candidates`` holds the server side of the TCP connection from
    ``client_port`` to ``server_port`` (read from /proc; the gateway is not asked)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


@dataclass
class Served:
    sent_s: float  # seconds after the PATCH returned
    pid: int | None
    decision: str


def served_on_fresh_connection(gw: GatewayProcess, workers: set[int], t0: float) -> Served:
    """One chat request on a new connection, with the worker that answered it."""
    port = int(gw.url.rsplit(":", 1)[1])
    sent = time.monotonic() - t0
    with quick_http.client(timeout=10) as client:
        decision = served_decision(gw.url, client)
        # The connection is kept alive until the client closes: find who holds its other end.
        response = client.get(gw.url + "/healthz")
        stream = response.extensions["network_stream"]
        client_port = int(stream.get_extra_info("client_addr")[1])
        pid = _server_pid(workers, port, client_port)
    return Served(sent, pid, decision)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_two_sqlite_workers_both_serve_a_change(
    sim: SimulatorProcess, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Two workers of one gateway share the SQLite file: after a PATCH (answered by either),
    each worker is seen serving the new state, and a worker that served it never serves the
    old one again. Workers are told apart by the socket's owner in /proc.

    How soon is a number, not a behaviour: bench/flag_propagation.py measures it against the
    one-second bound (README, "Measured propagation"); here the seconds are only recorded."""
    routes = routes_yaml(sim.url, weight=100_000)
    # The worker that did not write sees the change at its next poll (0.25 s by default).
    env = {"GATEWAY_FLAG_POLL_INTERVAL_S": "0.05"}
    with start_gateway(tmp_path, routes, env=env, workers=2) as gw:
        candidates = _worker_pids(gw.proc.pid)
        seen: dict[int, str] = {}

        def both_workers_answer() -> bool:
            got = served_on_fresh_connection(gw, candidates, time.monotonic())
            if got.pid is not None:
                seen[got.pid] = got.decision
            return len(seen) == 2

        wait_for(both_workers_answer, "both workers to answer", timeout=60)
        assert set(seen.values()) == {OLD}
        workers = set(seen)

        response = patch_flag(gw, KILL_SWITCH)
        assert response.status_code == 200, response.text
        t0 = time.monotonic()
        log: list[Served] = []
        # Keep sending until each worker served the new state a few times (bounded).
        while time.monotonic() - t0 < 30:
            log.append(served_on_fresh_connection(gw, workers, t0))
            if all(sum(s.pid == pid and s.decision == NEW for s in log) >= 3 for pid in workers):
                break

    first_new = {
        pid: min((s.sent_s for s in log if s.pid == pid and s.decision == NEW), default=None)
        for pid in workers
    }
    per_worker = {pid: sum(s.pid == pid for s in log) for pid in workers}
    print(f"sqlite 2 workers: requests per worker {per_worker}, first new decision at {first_new}")
    record_property(
        "sqlite_workers_first_new_decision_s",
        {str(pid): None if t is None else round(t, 4) for pid, t in first_new.items()},
    )
    assert all(t is not None for t in first_new.values()), (first_new, per_worker)
    went_back = [
        s
        for s in log
        if s.decision == OLD and s.pid in first_new and s.sent_s > (first_new[s.pid] or 0.0)
    ]
    assert went_back == [], went_back
    assert {s.decision for s in log} <= {OLD, NEW}


# -- Redis: two replicas ---------------------------------------------------------------------------


def test_redis_change_through_one_gateway_is_served_by_the_other(
    sim: SimulatorProcess,
    tmp_path: Path,
    redis_namespace: str,
    record_property: Callable[[str, object], None],
) -> None:
    """Two gateway processes on one Redis namespace: a PATCH through A is served by B (and by
    A at once); the propagation time to B is printed and recorded."""
    env = store_env(SHARED_REDIS, redis_namespace)
    routes = routes_yaml(sim.url, weight=100_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        start_gateways(
            GatewaySpec(tmp_path / "a", routes, env), GatewaySpec(tmp_path / "b", routes, env)
        ) as (a, b),
        quick_http.client(timeout=10) as client,
    ):
        assert served_decision(b.url, client) == OLD
        assert readiness(a)["flag_store"]["kind"] == "redis"
        response = patch_flag(a, KILL_SWITCH)
        assert response.status_code == 200, response.text
        t0 = time.monotonic()
        wait_for(lambda: served_decision(b.url, client) == NEW, "B to serve the change", 10)
        propagation_ms = (time.monotonic() - t0) * 1000
        assert served_decision(a.url, client) == NEW
        assert get_flag(b)["version"] == 1
    print(f"redis propagation A -> B: {propagation_ms:.1f} ms")
    record_property("redis_propagation_ms", round(propagation_ms, 2))


# -- Redis: outage ---------------------------------------------------------------------------------


class Traffic:
    """A thread sending chat requests for SUBJECT back to back; records every outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.decisions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {**AUTH, "x-gateway-subject": SUBJECT}
        with quick_http.client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(
                        self.url + "/v1/chat/completions", json=chat_body(), headers=headers
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text}")
                else:
                    self.decisions.append(response.headers["x-gateway-decision"])
                time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def count(self) -> int:
        return len(self.decisions) + len(self.failures)


def test_redis_restart_under_traffic_keeps_last_known_flag_and_recovers(
    sim: SimulatorProcess, tmp_path: Path, private_redis: RedisServer
) -> None:
    """Redis stops while requests flow: /readyz goes degraded, every request still succeeds
    with the last-known flag, PATCH is 503; Redis comes back empty: /readyz is ready again by
    itself and the served decision does not revert to the routes file."""
    routes = routes_yaml(sim.url, weight=100_000)
    env = {**store_env(private_redis.url), "GATEWAY_FLAG_POLL_INTERVAL_S": "0.1"}
    with start_gateway(tmp_path, routes, env=env) as gw:
        response = patch_flag(gw, KILL_SWITCH)
        assert response.status_code == 200, response.text
        assert served_decision(gw.url) == NEW
        with Traffic(gw.url) as traffic:
            wait_for(lambda: traffic.count() >= 20, "traffic to flow", 10)

            private_redis.stop()
            status = wait_for(
                lambda: (r := readiness(gw))["status"] == "degraded" and r, "degraded", 10
            )
            assert status["flag_store"]["state"] == "degraded"
            assert status["flag_store"]["serving"] == "last_known"
            assert status["flag_store"]["reason"]

            refused = patch_flag(gw, {"weight": 1, "reason": "during the outage"})
            error = assert_error_envelope(refused, 503, code="flag_store_unavailable")
            assert "flag store" in error["message"].lower()
            assert private_redis.url not in refused.text
            during = traffic.count()
            wait_for(lambda: traffic.count() >= during + 20, "traffic during the outage", 10)

            private_redis.start()
            wait_for(lambda: readiness(gw)["status"] == "ready", "ready again", 10)
            after = traffic.count()
            wait_for(lambda: traffic.count() >= after + 20, "traffic after recovery", 10)

        assert traffic.failures == []
        assert set(traffic.decisions) == {NEW}, sorted(set(traffic.decisions))
        assert served_decision(gw.url) == NEW
        assert readiness(gw)["flag_store"]["serving"] == "live"
        assert gw.log_events("flags.store_degraded")
        [restored] = gw.log_events("flags.store_restored")
        assert (restored["store_version"], restored["restored_version"]) == (None, 1)


def test_redis_restart_without_state_keeps_admin_reads_and_writes_consistent(
    sim: SimulatorProcess, tmp_path: Path, private_redis: RedisServer
) -> None:
    """After Redis comes back empty, GET shows the state the gateway serves (not the routes
    file's), and the next PATCH builds on it and is served."""
    routes = routes_yaml(sim.url, weight=100_000)
    env = {**store_env(private_redis.url), "GATEWAY_FLAG_POLL_INTERVAL_S": "0.1"}
    with start_gateway(tmp_path, routes, env=env) as gw:
        assert patch_flag(gw, KILL_SWITCH).status_code == 200
        private_redis.stop()
        wait_for(lambda: readiness(gw)["status"] == "degraded", "degraded", 10)
        private_redis.start()
        wait_for(lambda: readiness(gw)["status"] == "ready", "ready again", 10)

        state = get_flag(gw)
        assert (state["enabled"], state["version"]) == (False, 1)
        response = patch_flag(gw, {"enabled": True, "weight": 0, "reason": "after the restart"})
        assert response.status_code == 200, response.text
        assert (response.json()["enabled"], response.json()["version"]) == (True, 2)
        assert served_decision(gw.url) == "rollout"
        assert get_flag(gw)["weight"] == 0
        assert (
            quick_http.get(gw.url + "/admin/routes", headers=ADMIN).json()[0]["flag"]["version"]
            == 2
        )


def test_cold_start_with_redis_down_serves_the_fallback(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    """A gateway whose Redis is unreachable at start-up starts anyway: /readyz is degraded and
    serving "fallback", requests get the fallback with ``no_flag``, and admin writes are 503."""
    closed = free_port()
    env = store_env(f"redis://127.0.0.1:{closed}/0")
    with start_gateway(tmp_path, routes_yaml(sim.url, weight=100_000), env=env) as gw:
        status = readiness(gw)
        assert status["status"] == "degraded"
        assert status["flag_store"]["kind"] == "redis"
        assert status["flag_store"]["serving"] == "fallback"
        assert status["flag_store"]["last_sync_age_s"] is None
        response = quick_http.post(
            gw.base_url + "/chat/completions",
            json=chat_body(),
            headers={**AUTH, "x-gateway-subject": SUBJECT},
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-decision"] == "no_flag"
        assert response.headers["x-gateway-variant"] == "prompted"
        refused = patch_flag(gw, KILL_SWITCH)
        assert_error_envelope(refused, 503, code="flag_store_unavailable")
        assert str(closed) not in refused.text
