"""``gateway flags`` end to end: the CLI against a gateway and a simulator.

The gateway and the simulator run in-process (``tests.inprocess_sim``) and so does the CLI
(``tests.cli_inprocess``: the typer app with its own environment, the admin client's calls
bridged to the gateway). A few runs are real ``python -m gateway flags ...`` subprocesses over
TCP (the racing proxy, a port nobody listens on). Each CLI run has
``GATEWAY_URL`` and ``GATEWAY_ADMIN_KEY`` in its environment; the tests check exit codes,
``--json`` output, the human tables, and that the next chat request's ``x-gateway-decision`` /
``x-gateway-variant`` follow each change. Every run also checks that no traceback and no admin
key is ever printed. The flag-store outage runs a gateway process with a dead Redis store (the
CLI in-process, over TCP).

One gateway serves the module; :func:`fresh_flag` puts its flag back to an active 0% with no
targeting before each test that cares, so tests do not depend on their order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.routing.bucketing import bucket_of
from tests.cli_inprocess import run_cli
from tests.e2e.support import AnyGateway, chat
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import (
    ADMIN_KEY,
    CLIENT_KEY,
    SimulatorProcess,
    free_port,
    routes_yaml,
    start_gateway,
)

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CANDIDATE = "finetuned"
FALLBACK = "prompted"


@dataclass
class Run:
    """One finished CLI run."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> dict[str, Any]:
        """The JSON error object a ``--json`` run writes to stderr."""
        body: dict[str, Any] = json.loads(self.err)
        return body


IN_PROCESS: dict[str, InProcessGatewayUnderTest] = {}
"""In-process gateways by URL: the in-process CLI reaches these through their bridge."""


@contextmanager
def cli_reaches(gw: InProcessGatewayUnderTest) -> Iterator[None]:
    """While open, CLI runs against ``gw.url`` go in-process to ``gw``."""
    IN_PROCESS[gw.url] = gw
    try:
        yield
    finally:
        del IN_PROCESS[gw.url]


def flags(*args: str, url: str, key: str | None = ADMIN_KEY, process: bool = False) -> Run:
    """Run ``gateway flags *args`` against ``url`` with ``key`` as GATEWAY_ADMIN_KEY: in this
    process (bridged to ``url``'s gateway when it is in-process), or as a subprocess."""
    cli_env = {"GATEWAY_URL": url, "COLUMNS": "240", "USER": "cli-tester"}
    if key is not None:
        cli_env["GATEWAY_ADMIN_KEY"] = key
    if process:
        run = flags_subprocess(*args, env=cli_env)
    else:
        done = run_cli("flags", *args, env=cli_env, gateways=IN_PROCESS)
        run = Run(done.code, done.out, done.err)
    assert "Traceback" not in run.err, run.err
    assert ADMIN_KEY not in run.out + run.err
    assert CLIENT_KEY not in run.out + run.err
    return run


def flags_subprocess(*args: str, env: dict[str, str]) -> Run:
    """``python -m gateway flags *args`` with ``env`` (this process' GATEWAY_* left out)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}, **env}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "flags", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def served_by(gateway: AnyGateway, subject: str) -> tuple[str, str]:
    """(decision, variant) of the next chat request of ``subject``."""
    response = chat(gateway, headers={"x-gateway-subject": subject})
    assert response.status_code == 200, response.text
    return response.headers["x-gateway-decision"], response.headers["x-gateway-variant"]


def admin_flag(gateway: AnyGateway) -> dict[str, Any]:
    response = gateway.http.get(f"{gateway.url}/admin/flags/{ROUTE}", headers=ADMIN, timeout=10)
    response.raise_for_status()
    flag: dict[str, Any] = response.json()
    return flag


def subject_in_bucket(salt: str, low: int, high: int) -> str:
    """A subject whose bucket for ROUTE is in ``[low, high)``."""
    for i in range(100_000):
        subject = f"subject-{i}"
        if low <= bucket_of(ROUTE, salt, subject) < high:
            return subject
    raise AssertionError(f"no subject in buckets [{low}, {high})")


@pytest.fixture(scope="module")
def gateway(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnyGateway]:
    """One gateway for the module, its flag starting at weight 0."""
    with in_process_simulator(loop_thread) as simulator:
        routes = routes_yaml(simulator.url, weight=0)
        tmp = tmp_path_factory.mktemp("cli-flags")
        with start_in_process(loop_thread, tmp, routes, simulator) as gw, cli_reaches(gw):
            yield gw


@pytest.fixture
def fresh_flag(gateway: AnyGateway) -> dict[str, Any]:
    """The flag reset through the admin API to active, enabled, 0%, no targeting."""
    flag = admin_flag(gateway)
    url = f"{gateway.url}/admin/flags/{ROUTE}"
    if flag["status"] == "rolled_back":
        response = gateway.http.post(url + "/release", headers=ADMIN, json={"reason": "test reset"})
        response.raise_for_status()
    body: dict[str, Any] = {
        "reason": "test reset",
        "enabled": True,
        "weight": 0,
        "candidate_subjects": [],
        "fallback_subjects": [],
        "candidate_keys": [],
        "fallback_keys": [],
    }
    gateway.http.patch(url, headers=ADMIN, json=body).raise_for_status()
    return admin_flag(gateway)


# -- reads -----------------------------------------------------------------------------------


def test_list_shows_every_route_for_people_and_scripts(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """``list``: a table with status, weight as percent, rollout id, version, variant counts;
    ``--json`` is the API's list of routes."""
    served_by(gateway, "list-subject")
    run = flags("list", "--json", url=gateway.url)
    assert run.code == 0, run.err
    (route,) = run.json()
    assert route["name"] == ROUTE
    assert route["flag"]["weight"] == 0
    assert route["flag"]["version"] == fresh_flag["version"]
    assert route["variants"][FALLBACK]["requests"] >= 1

    human = flags("list", url=gateway.url)
    assert human.code == 0, human.err
    for text in (ROUTE, "active", "0%", fresh_flag["rollout_id"], CANDIDATE, FALLBACK):
        assert text in human.out
    assert str(fresh_flag["version"]) in human.out


def test_show_prints_the_flag_with_its_targeting_lists(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """``show ROUTE``: every field of the flag; ``--json`` is exactly what the API returns."""
    run = flags("show", ROUTE, "--json", url=gateway.url)
    assert run.code == 0, run.err
    assert run.json() == admin_flag(gateway)

    human = flags("show", ROUTE, url=gateway.url)
    assert human.code == 0, human.err
    for text in ("status", "active", "weight", "0% (0)", "candidate subjects", "source"):
        assert text in human.out
    assert fresh_flag["reason"] in human.out


# -- writes and what the next request sees ---------------------------------------------------


def test_set_ramps_the_weight_and_the_next_request_follows(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """0% -> 10% -> 100%: a subject in the first tenth of buckets joins at 10%, another at
    100%; each ``set`` bumps the version by one and records who and why."""
    salt = fresh_flag["salt"] or ROUTE
    early = subject_in_bucket(salt, 0, 10_000)
    late = subject_in_bucket(salt, 10_000, 100_000)
    assert served_by(gateway, early) == ("rollout", FALLBACK)
    assert served_by(gateway, late) == ("rollout", FALLBACK)

    run = flags(
        "set", ROUTE, "--weight", "10%", "--reason", "ramp to 10", "--json", url=gateway.url
    )
    assert run.code == 0, run.err
    flag = run.json()
    assert flag["weight"] == 10_000
    assert flag["version"] == fresh_flag["version"] + 1
    assert flag["reason"] == "ramp to 10"
    assert "cli-tester" in flag["updated_by"]
    assert served_by(gateway, early) == ("rollout", CANDIDATE)
    assert served_by(gateway, late) == ("rollout", FALLBACK)

    human = flags("set", ROUTE, "--weight", "100000", "--reason", "full rollout", url=gateway.url)
    assert human.code == 0, human.err
    assert "weight 10% -> 100%" in human.out
    assert served_by(gateway, early) == ("rollout", CANDIDATE)
    assert served_by(gateway, late) == ("rollout", CANDIDATE)

    off = flags("set", ROUTE, "--disabled", "--reason", "kill switch", "--json", url=gateway.url)
    assert off.code == 0, off.err
    assert off.json()["enabled"] is False
    assert served_by(gateway, early) == ("disabled", FALLBACK)


def test_targeting_a_subject_forces_the_candidate_at_zero_percent(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """``--target-subject`` wins over weight 0; ``--clear-targeting`` empties every list."""
    run = flags(
        *("set", ROUTE, "--target-subject", "vip-1", "--target-subject", "vip-2"),
        *("--fallback-subject", "someone-else", "--reason", "try on vips", "--json"),
        url=gateway.url,
    )
    assert run.code == 0, run.err
    targeting = run.json()["targeting"]
    assert sorted(targeting["candidate_subjects"]) == ["vip-1", "vip-2"]
    assert targeting["fallback_subjects"] == ["someone-else"]
    assert served_by(gateway, "vip-1") == ("targeted", CANDIDATE)
    assert served_by(gateway, "someone-else") == ("targeted", FALLBACK)
    assert served_by(gateway, "nobody-listed") == ("rollout", FALLBACK)

    keyed = flags(
        *("set", ROUTE, "--fallback-key", "test-app", "--reason", "keep the app safe"),
        url=gateway.url,
    )
    assert keyed.code == 0, keyed.err
    # a fallback list wins over a candidate list of the other kind
    assert served_by(gateway, "vip-1") == ("targeted", FALLBACK)

    shown = flags("show", ROUTE, url=gateway.url)
    assert "vip-1, vip-2" in shown.out

    cleared = flags("set", ROUTE, "--clear-targeting", "--reason", "done", url=gateway.url)
    assert cleared.code == 0, cleared.err
    assert "candidate_subjects -vip-1 -vip-2" in cleared.out
    assert served_by(gateway, "vip-1") == ("rollout", FALLBACK)


def test_rollback_then_release_with_a_new_rollout_id(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """Rollback latches every request on the fallback (a second rollback is a conflict);
    release re-arms it at the given weight under a new rollout id."""
    assert flags("set", ROUTE, "--weight", "100%", "--reason", "go", url=gateway.url).code == 0
    assert served_by(gateway, "rb") == ("rollout", CANDIDATE)

    run = flags("rollback", ROUTE, "--reason", "bad labels", "--json", url=gateway.url)
    assert run.code == 0, run.err
    assert run.json()["status"] == "rolled_back"
    assert served_by(gateway, "rb") == ("rolled_back", FALLBACK)

    again = flags("rollback", ROUTE, "--reason", "again", url=gateway.url)
    assert again.code == 4
    assert "already rolled back" in again.err
    assert "release" in again.err

    released = flags(
        "release", ROUTE, "--reason", "fixed", "--weight", "50%", "--json", url=gateway.url
    )
    assert released.code == 0, released.err
    flag = released.json()
    assert flag["status"] == "active"
    assert flag["weight"] == 50_000
    assert flag["rollout_id"] not in ("", fresh_flag["rollout_id"])
    assert flags("set", ROUTE, "--weight", "100%", "--reason", "go", url=gateway.url).code == 0
    assert served_by(gateway, "rb") == ("rollout", CANDIDATE)

    not_rolled_back = flags("release", ROUTE, "--reason", "twice", url=gateway.url)
    assert not_rolled_back.code == 4
    assert "not rolled back" in not_rolled_back.err


def test_set_on_a_rolled_back_flag_exits_4_and_says_to_release_first(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """The latch is absolute: ``set --weight`` or ``--enabled`` on a rolled-back flag writes
    nothing, exits 4, and the hint is the release command for this route; a fallback list may
    still change; the flag stays rolled back."""
    assert flags("rollback", ROUTE, "--reason", "broken", url=gateway.url).code == 0
    rolled = admin_flag(gateway)

    run = flags("set", ROUTE, "--weight", "10%", "--reason", "ramp", "--json", url=gateway.url)
    assert run.code == 4, run.out + run.err
    error = run.error()["error"]
    assert error["code"] == "rolled_back"
    assert f"gateway flags release {ROUTE} --reason" in error["hint"]
    human = flags("set", ROUTE, "--weight", "10%", "--reason", "ramp", url=gateway.url)
    assert human.code == 4
    assert f"gateway flags release {ROUTE} --reason" in human.err
    assert admin_flag(gateway) == rolled

    fallback = flags(
        "set", ROUTE, "--fallback-subject", "angry-customer", "--reason", "keep", url=gateway.url
    )
    assert fallback.code == 0, fallback.err
    after = admin_flag(gateway)
    assert (after["status"], after["version"]) == ("rolled_back", rolled["version"] + 1)


def test_list_shows_the_version_each_replica_serves(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """``list`` has a replicas column (this single gateway: ``1 at vN``); ``--json`` carries
    each replica's id, version, source and lagging flag."""
    version = fresh_flag["version"]

    def replicas() -> list[dict[str, Any]]:
        run = flags("list", "--json", url=gateway.url)
        assert run.code == 0, run.err
        found: list[dict[str, Any]] = run.json()[0]["replicas"]
        return found

    (replica,) = replicas()
    assert replica["version"] == version
    assert replica["lagging"] is False
    assert replica["source"] in ("store", "routes_file")
    human = flags("list", url=gateway.url)
    assert f"1 at v{version}" in human.out


def test_history_lists_every_change_newest_first_with_reasons(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """``history``: who, trigger, action, the change as percentages and the reason, newest
    first; ``--json`` gives the raw audit entries (with ``evidence``)."""
    steps = [
        ("set", ROUTE, "--weight", "10%", "--reason", "history step 1"),
        ("set", ROUTE, "--weight", "0.5%", "--reason", "history step 2"),
        ("rollback", ROUTE, "--reason", "history step 3"),
        ("release", ROUTE, "--reason", "history step 4"),
    ]
    for step in steps:
        assert flags(*step, url=gateway.url).code == 0

    run = flags("history", ROUTE, "--limit", "4", "--json", url=gateway.url)
    assert run.code == 0, run.err
    entries = run.json()
    assert [e["reason"] for e in entries] == [f"history step {i}" for i in (4, 3, 2, 1)]
    assert [e["action"] for e in entries] == ["release", "rollback", "set", "set"]
    assert all(e["trigger"] == "manual" for e in entries)
    assert all("cli-tester" in e["actor"] for e in entries)
    assert all("evidence" in e for e in entries)
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)

    human = flags("history", ROUTE, url=gateway.url)
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    expected = [
        ("history step 4", "rolled_back -> active"),
        ("history step 3", "active -> rolled_back"),
        ("history step 2", "weight 10% -> 0.5%"),
        ("history step 1", "weight 0% -> 10%"),
    ]
    rows = []
    for reason, change in expected:
        (row,) = [i for i, line in enumerate(lines) if reason in line]
        assert change in lines[row]
        assert "manual" in lines[row]
        rows.append(row)
    assert rows == sorted(rows)


# -- conflicts -------------------------------------------------------------------------------


def test_the_api_refuses_a_stale_version_with_the_current_state(
    gateway: AnyGateway, fresh_flag: dict[str, Any]
) -> None:
    """PATCH with an old ``If-Match`` gets 409 and the flag as it is now; nothing changes."""
    stale = fresh_flag["version"]
    assert flags("set", ROUTE, "--weight", "1%", "--reason", "first", url=gateway.url).code == 0
    response = gateway.http.patch(
        f"{gateway.url}/admin/flags/{ROUTE}",
        headers={**ADMIN, "if-match": f'"{stale}"'},
        json={"weight": 100_000, "reason": "second, from a stale read"},
    )
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"]["code"] == "version_conflict"
    assert body["current"]["version"] == stale + 1
    assert admin_flag(gateway)["weight"] == 1_000


class _RacingProxy(BaseHTTPRequestHandler):
    """Forwards to the gateway; after forwarding a flag read, another admin changes the flag,
    so the CLI's write that follows carries a version that is already stale."""

    target = ""
    http: httpx.Client

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        response = self.http.request(
            self.command, self.target + self.path, headers=headers, content=body, timeout=10
        )
        if self.command == "GET" and self.path.startswith("/admin/flags/"):
            version, weight = response.json()["version"], response.json()["weight"]
            # A real change each time (a write that changes nothing bumps no version).
            self.http.patch(
                f"{self.target}/admin/flags/{ROUTE}",
                headers={**ADMIN, "if-match": f'"{version}"', "x-gateway-actor": "racer"},
                json={"weight": 5_000 if weight != 5_000 else 5_001, "reason": "the other admin"},
                timeout=10,
            ).raise_for_status()
        self.send_response(response.status_code)
        for name in ("content-type", "etag"):
            if name in response.headers:
                self.send_header(name, response.headers[name])
        self.send_header("content-length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_PATCH = do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def racing_proxy(gateway: AnyGateway) -> Iterator[str]:
    """URL of a proxy in front of ``gateway`` that races every flag read with a write."""
    handler = type("Handler", (_RacingProxy,), {"target": gateway.url, "http": gateway.http})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for the loop's next poll: 20 ms, not the default 500.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_cli_set_losing_a_race_exits_4_and_keeps_the_other_change(
    gateway: AnyGateway, fresh_flag: dict[str, Any], racing_proxy: str
) -> None:
    """Someone writes between the CLI's read and its write: the CLI writes nothing, says so,
    shows the current state and exits 4; the other admin's change stands."""
    run = flags(
        *("set", ROUTE, "--weight", "100%", "--reason", "mine", "--json"),
        url=racing_proxy,
        process=True,
    )
    assert run.code == 4, run.out + run.err
    assert run.out == ""
    error = run.error()
    assert error["error"]["status"] == 409
    assert "someone" in error["error"]["message"]
    assert error["current"]["weight"] == 5_000
    assert error["current"]["reason"] == "the other admin"
    assert admin_flag(gateway)["weight"] == 5_000

    # The same race in this process (the exit code of a real process is proven above).
    human = flags("set", ROUTE, "--weight", "100%", "--reason", "mine", url=racing_proxy)
    assert human.code == 4
    assert "someone" in human.err
    assert "current state" in human.err
    assert "the other admin" in human.err
    assert admin_flag(gateway)["weight"] == 5_001


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sk-wrong", CLIENT_KEY, None])
def test_a_missing_wrong_or_client_key_exits_5(gateway: AnyGateway, key: str | None) -> None:
    """401 and 403 exit 5 and say to set GATEWAY_ADMIN_KEY."""
    run = flags("list", url=gateway.url, key=key)
    assert run.code == 5, run.out + run.err
    assert run.out == ""
    assert "GATEWAY_ADMIN_KEY" in run.err
    as_json = flags(
        "set", ROUTE, "--weight", "1%", "--reason", "x", "--json", url=gateway.url, key=key
    )
    assert as_json.code == 5
    assert as_json.error()["error"]["status"] in (401, 403)


@pytest.mark.e2e
def test_an_unreachable_gateway_exits_3_and_names_the_url() -> None:
    """Nothing listening: exit 3 with where it looked and how to point elsewhere."""
    url = f"http://127.0.0.1:{free_port()}"
    run = flags("list", url=url, process=True)
    assert run.code == 3
    assert url in run.err
    assert "GATEWAY_URL" in run.err
    assert "is the gateway running" in run.err


@pytest.mark.e2e
def test_a_flag_store_outage_exits_3_with_the_store_message(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """503 from the admin API (Redis down): exit 3, the gateway's store message and a hint;
    ``list`` still answers from the gateway's memory."""
    env = {"GATEWAY_FLAG_STORE": f"redis://127.0.0.1:{free_port()}/0"}
    # Over TCP: the in-process harness chooses its own flag store.
    with start_gateway(tmp_path, routes_yaml(simulator.url, weight=0), env=env) as gw:
        run = flags("set", ROUTE, "--weight", "1%", "--reason", "x", "--json", url=gw.url)
        assert run.code == 3, run.out + run.err
        error = run.error()["error"]
        assert error["status"] == 503
        assert error["code"] == "flag_store_unavailable"
        assert "unavailable" in error["message"]
        human = flags("show", ROUTE, url=gw.url)
        assert human.code == 3
        assert "flag store" in human.err
        assert "/readyz" in human.err
        assert flags("list", url=gw.url).code == 0


@pytest.mark.parametrize(
    "args",
    [
        ("show", "no-such-route"),
        ("set", "no-such-route", "--weight", "1%", "--reason", "x"),
    ],
)
def test_an_unknown_route_exits_1_and_says_what_to_do(
    gateway: AnyGateway, args: tuple[str, ...]
) -> None:
    """404: the gateway's message and a pointer to ``list``."""
    run = flags(*args, url=gateway.url)
    assert run.code == 1, run.out + run.err
    assert "no-such-route" in run.err
    assert "gateway flags list" in run.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", ROUTE, "--weight", "150%", "--reason", "x"), "above 100%"),
        (("set", ROUTE, "--weight", "ten", "--reason", "x"), "25000"),
        (("set", ROUTE, "--weight", "10%"), "--reason"),
        (("set", ROUTE, "--weight", "10%", "--reason", "  "), "audit"),
        (("set", ROUTE, "--reason", "nothing"), "nothing to change"),
        (("history", ROUTE, "--limit", "0"), "--limit"),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    gateway: AnyGateway, args: tuple[str, ...], message: str
) -> None:
    """typer's usage errors, including weights out of range and blank reasons, change nothing."""
    before = admin_flag(gateway)
    run = flags(*args, url=gateway.url)
    assert run.code == 2, run.out + run.err
    assert message in " ".join(run.err.replace("│", " ").split())
    assert admin_flag(gateway) == before
