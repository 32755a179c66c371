"""Progressive delivery end to end: a route with ``ramp:`` climbs its steps by itself.

Each test serves its own in-process gateway against an in-process simulator
(``tests.inprocess_sim``). The guard's and the ramp's background loops are put to sleep
(``GATEWAY_GUARD_TICK_S`` and ``GATEWAY_GUARD_FLUSH_S`` an hour) and the test drives them
itself, one look at a time (:func:`look`: exchange the counts, tick the guard, write its
rollbacks, one ramp step), on a fake clock it moves (the ramp's ``clock``): nothing races the
wall clock. Traffic uses a new subject per request, so the weight decides who gets the
candidate.

The route: steps 20% -> 50% -> 100%, ``min_samples: 30`` at each step, ``min_dwell_s: 60``;
the guard's ``margin`` is 0.1 so that a flawless candidate is shown not worse after about a
hundred answers (the default 0.02 needs thousands: bench/results/ramp_simulation.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.routing import FlagState
from tests.cli_inprocess import CliRun, run_cli
from tests.e2e.support import AUTH, TICKET, assert_error_envelope
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    start_in_process,
)
from tests.processes import ADMIN_KEY, CANDIDATE_MODEL, routes_yaml

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
RAMP = """
guard: {min_samples: 20, margin: 0.1}
ramp: {steps: ['20%', '50%', '100%'], min_samples: 30, min_dwell_s: 60}
"""
LOOPS_ASLEEP = {"GATEWAY_GUARD_TICK_S": "3600", "GATEWAY_GUARD_FLUSH_S": "3600"}
T0 = 1_800_000_000.0
REQUEST_BUDGET = 3_000
"""Every traffic loop stops after this many requests, whatever happens."""

_subjects = itertools.count()


class Clock:
    """The ramp's time, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ramped(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[tuple[InProcessGatewayUnderTest, Clock]]:
    routes = routes_yaml(in_sim.url, weight=20_000, route_extra=RAMP)
    with start_in_process(loop_thread, tmp_path, routes, in_sim, env=LOOPS_ASLEEP) as gw:
        clock = Clock(T0)
        gw.ipg.gw.ramper.clock = clock
        yield gw, clock


def ask(gw: InProcessGatewayUnderTest, n: int) -> None:
    """``n`` chat requests, each with a new subject; every one must be answered 200."""
    for _ in range(n):
        response = gw.http.post(
            "/v1/chat/completions",
            json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
            headers={**AUTH, "x-gateway-subject": f"s-{next(_subjects)}"},
        )
        assert response.status_code == 200, response.text


def look(gw: InProcessGatewayUnderTest) -> list[FlagState]:
    """One look, as the background loops would take it: the counts exchanged with the store,
    the guard's tick (and its rollbacks written), then the ramp's step. Returns what the ramp
    wrote."""
    g = gw.ipg.gw

    async def once() -> list[FlagState]:
        await g.guard_runner.sync_once()
        for trip in g.guard_runner.tick():
            await g.guard_runner.act(trip)
        written: list[FlagState] = await g.ramper.step()
        return written

    return gw.loop.run(once())


def ramp_view(gw: InProcessGatewayUnderTest) -> dict[str, Any]:
    """The route's ``ramp`` in ``GET /admin/routes``."""
    routes = gw.http.get("/admin/routes", headers=ADMIN).json()
    view: dict[str, Any] = next(r for r in routes if r["name"] == ROUTE)["ramp"]
    return view


def flag(gw: InProcessGatewayUnderTest) -> dict[str, Any]:
    body: dict[str, Any] = gw.http.get(f"/admin/flags/{ROUTE}", headers=ADMIN).json()
    return body


def audit(gw: InProcessGatewayUnderTest) -> list[dict[str, Any]]:
    """The route's audit entries, oldest first."""
    page = gw.http.get("/admin/audit", headers=ADMIN, params={"route": ROUTE}).json()
    return list(reversed(page["data"]))


def climb_one_step(gw: InProcessGatewayUnderTest) -> None:
    """Traffic in batches of 20 until the ramp writes (an advance, or a rollback ends it)."""
    version = flag(gw)["version"]
    for _ in range(REQUEST_BUDGET // 20):
        ask(gw, 20)
        look(gw)
        if flag(gw)["version"] != version:
            return
    pytest.fail("the ramp did not move within the request budget")


def assert_conflict(response: httpx.Response, code: str) -> dict[str, Any]:
    """A 409 with ``code`` and ``current``, the flag as stored now; returns ``current``."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert set(body) == {"error", "current"}
    assert body["error"]["code"] == code
    current: dict[str, Any] = body["current"]
    return current


def cli(gw: InProcessGatewayUnderTest, *args: str) -> CliRun:
    env = {"GATEWAY_URL": gw.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY}
    return run_cli("flags", "ramp", *args, env=env, gateways={gw.url: gw})


def test_a_healthy_candidate_climbs_to_100_percent_by_itself_audited_at_every_step(
    ramped: tuple[InProcessGatewayUnderTest, Clock],
) -> None:
    gw, clock = ramped
    first = flag(gw)
    assert (first["weight"], first["ramp_step"], first["version"]) == (20_000, 0, 0)
    assert ramp_view(gw)["state"] == "ramping"
    # Before this replica's first look the gauge says no state (not "stopped").
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE) == 0

    [started] = look(gw)  # the routes file's first step gets its clock
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE, state="ramping") == 1
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE) == 1
    assert (started.ramp_step_started_at, started.weight) == (T0, 20_000)

    ask(gw, 400)  # enough for samples and the bound at 20%, but the step lasts 60 s
    clock.now = T0 + 45
    assert look(gw) == []
    waiting = ramp_view(gw)
    assert waiting["state"] == "ramping"
    assert waiting["dwell_remaining_s"] == 15
    assert waiting["samples"] >= 30
    assert waiting["upper_bound"] < waiting["margin"] == 0.1
    assert "15 s of the step's 60 s dwell left" in waiting["why"]

    clock.now = T0 + 60
    [second] = look(gw)
    assert (second.weight, second.ramp_step, second.ramp_step_started_at) == (50_000, 1, T0 + 60)
    assert ramp_view(gw)["samples"] == 0  # counted again from the new step's start
    assert look(gw) == []  # new step: waits for its own samples and dwell

    clock.now = T0 + 200
    climb_one_step(gw)
    done = flag(gw)
    assert (done["weight"], done["ramp_step"], done["status"]) == (100_000, 2, "active")
    view = ramp_view(gw)
    assert view["state"] == "complete"
    assert view["steps"] == [20_000, 50_000, 100_000]
    assert gw.ipg.metric("gateway_ramp_step", route=ROUTE) == 2
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE, state="complete") == 1
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE, state="ramping") == 0
    assert view["dwell_remaining_s"] == 0

    entries = audit(gw)
    assert [e["action"] for e in entries] == ["ramp_start", "ramp_advance", "ramp_advance"]
    assert {e["trigger"] for e in entries} == {"guard"}
    advance = entries[1]
    evidence = advance["evidence"]
    assert (evidence["from_step"], evidence["to_step"]) == (0, 1)
    assert (evidence["from_weight"], evidence["to_weight"]) == (20_000, 50_000)
    assert evidence["samples"] >= evidence["min_samples"] == 30
    assert evidence["dwell_s"] == 60
    assert evidence["upper_bound"] < evidence["margin"] == 0.1
    assert evidence["evidence"] == "route_wide"
    assert evidence["outcomes"]["cand_n"] == evidence["baseline"] > 0
    assert advance["after"]["ramp_step_baseline"] == evidence["baseline"]
    assert "step 1 of 3 (20%) -> step 2 of 3 (50%)" in advance["reason"]
    assert entries[2]["after"]["rollout_id"] == first["rollout_id"]  # one rollout for all


def test_a_bad_candidate_is_rolled_back_before_the_second_step(
    ramped: tuple[InProcessGatewayUnderTest, Clock], in_sim: InProcessSimulator
) -> None:
    gw, clock = ramped
    in_sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.6)
    look(gw)
    clock.now = T0 + 3_600  # dwell long passed: only the evidence holds the ramp back
    climb_one_step(gw)
    down = flag(gw)
    assert (down["status"], down["weight"], down["ramp_step"]) == ("rolled_back", 20_000, 0)
    assert [e["action"] for e in audit(gw)] == ["ramp_start", "rollback"]
    assert audit(gw)[1]["trigger"] == "guard"
    view = ramp_view(gw)
    assert view["state"] == "stopped"
    assert "rollback ended the ramp" in view["why"]
    ask(gw, 20)
    assert look(gw) == []  # a stopped ramp never moves
    assert gw.ipg.metric("gateway_ramp_state", route=ROUTE, state="stopped") == 1

    # release restarts the ramp at its first step, with a new rollout and a fresh clock
    in_sim.reset()
    released = gw.http.post(
        f"/admin/flags/{ROUTE}/release", headers=ADMIN, json={"reason": "fixed"}
    ).json()
    assert (released["weight"], released["ramp_step"], released["ramp_paused"]) == (
        20_000,
        0,
        False,
    )
    assert released["rollout_id"] != down["rollout_id"]
    assert ramp_view(gw)["state"] == "ramping"


def test_a_persons_weight_change_pauses_the_ramp_and_the_cli_resumes_it(
    ramped: tuple[InProcessGatewayUnderTest, Clock],
) -> None:
    gw, clock = ramped
    look(gw)
    patched = gw.http.patch(
        f"/admin/flags/{ROUTE}", headers=ADMIN, json={"weight": 30_000, "reason": "by hand"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["ramp_paused"] is True
    set_entry = audit(gw)[-1]
    assert set_entry["action"] == "set"
    assert set_entry["evidence"] == {
        "ramp": "paused",
        "why": "a person changed the weight",
        "step": 0,
    }

    ask(gw, 400)
    clock.now = T0 + 3_600
    assert look(gw) == []  # conditions met, but paused: the weight stays the person's
    assert flag(gw)["weight"] == 30_000
    status = cli(gw, "status", ROUTE)
    assert status.code == 0, status.err
    assert "paused" in status.out
    assert "1 of 3" in status.out
    as_json = cli(gw, "status", ROUTE, "--json")
    assert '"state": "paused"' in as_json.out

    resumed = cli(gw, "resume", ROUTE, "--reason", "carry on")
    assert resumed.code == 0, resumed.err
    assert "ramp resumed" in resumed.out
    now = flag(gw)
    assert (now["weight"], now["ramp_paused"], now["ramp_step_started_at"]) == (
        20_000,
        False,
        clock.now,
    )
    entry = audit(gw)[-1]
    assert (entry["action"], entry["trigger"], entry["reason"]) == (
        "ramp_resume",
        "manual",
        "carry on",
    )
    again = cli(gw, "resume", ROUTE, "--reason", "again")
    assert again.code == 0
    assert "already on" in again.out

    paused = cli(gw, "pause", ROUTE, "--reason", "hold on")
    assert paused.code == 0, paused.err
    assert flag(gw)["ramp_paused"] is True
    assert audit(gw)[-1]["action"] == "ramp_pause"
    ask(gw, 100)
    clock.now += 3_600
    assert look(gw) == []


def test_ramp_endpoints_refuse_what_they_cannot_do(
    ramped: tuple[InProcessGatewayUnderTest, Clock],
) -> None:
    gw, _ = ramped
    http = gw.http

    def post(path: str, body: Any = None, **headers: str) -> httpx.Response:
        return http.post(path, headers={**ADMIN, **headers}, json=body)

    pause = f"/admin/flags/{ROUTE}/ramp/pause"
    resume = f"/admin/flags/{ROUTE}/ramp/resume"
    assert_error_envelope(
        post("/admin/flags/nope/ramp/pause", {"reason": "r"}), 404, code="route_not_found"
    )
    assert_error_envelope(post(pause, {}), 422, param="reason")
    assert_error_envelope(post(pause, {"reason": "r", "extra": 1}), 400, param="extra")
    stale = post(pause, {"reason": "r"}, **{"if-match": '"7"'})
    assert assert_conflict(stale, "version_conflict")["version"] == 0
    assert http.post(pause, json={"reason": "r"}).status_code == 401  # no admin key

    ok = post(pause, {"reason": "r", "version": 0})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"1"'
    assert post(pause, {"reason": "again"}).json()["version"] == 1  # no change, no write

    post(f"/admin/flags/{ROUTE}/rollback", {"reason": "stop"})
    assert assert_conflict(post(pause, {"reason": "r"}), "ramp_stopped")["ramp_step"] == 0
    assert_conflict(post(resume, {"reason": "r"}), "rolled_back")
    cli_run = cli(gw, "resume", ROUTE, "--reason", "r")
    assert cli_run.code == 4
    assert "release" in cli_run.err

    # a release that names a weight restarts the ramp paused at its first step
    held = post(f"/admin/flags/{ROUTE}/release", {"reason": "r", "weight": 0}).json()
    assert (held["weight"], held["ramp_step"], held["ramp_paused"]) == (0, 0, True)
    assert ramp_view(gw)["state"] == "paused"
    assert post(resume, {"reason": "go"}).json()["weight"] == 20_000


def test_a_route_without_a_ramp_has_none(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    routes = routes_yaml(in_sim.url, route_extra="guard: {}")
    with start_in_process(loop_thread, tmp_path, routes, in_sim, env=LOOPS_ASLEEP) as gw:
        assert ramp_view(gw) is None
        refused = gw.http.post(
            f"/admin/flags/{ROUTE}/ramp/resume", headers=ADMIN, json={"reason": "r"}
        )
        assert_error_envelope(refused, 422, code="no_ramp")
        status = cli(gw, "status", ROUTE)
        assert status.code == 1
        assert "has no ramp" in status.err
        patched = gw.http.patch(
            f"/admin/flags/{ROUTE}", headers=ADMIN, json={"weight": 1, "reason": "r"}
        ).json()
        assert (patched["ramp_step"], patched["ramp_paused"]) == (None, False)


def test_the_ramp_survives_a_restart(
    in_sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """The ramp's state is the flag's (in the store), its samples the rollout's route-wide
    counts (in the store too): a gateway started again on the same store carries on."""
    routes = routes_yaml(in_sim.url, weight=20_000, route_extra=RAMP)
    with start_in_process(loop_thread, tmp_path, routes, in_sim, env=LOOPS_ASLEEP) as gw:
        clock = Clock(T0)
        gw.ipg.gw.ramper.clock = clock
        look(gw)
        clock.now = T0 + 60
        climb_one_step(gw)
        before = flag(gw)
        assert before["ramp_step"] == 1
        ask(gw, 40)
        look(gw)
        samples = ramp_view(gw)["samples"]
        assert samples > 0
    with start_in_process(loop_thread, tmp_path, routes, in_sim, env=LOOPS_ASLEEP) as gw:
        gw.ipg.gw.ramper.clock = Clock(T0 + 90)
        after = flag(gw)
        assert {k: after[k] for k in after if k.startswith("ramp_")} == {
            k: before[k] for k in before if k.startswith("ramp_")
        }
        assert after["weight"] == 50_000
        look(gw)  # the counts come back from the store
        view = ramp_view(gw)
        assert (view["state"], view["step"], view["samples"]) == ("ramping", 1, samples)
        assert view["dwell_remaining_s"] == before["ramp_step_started_at"] + 60 - (T0 + 90)
