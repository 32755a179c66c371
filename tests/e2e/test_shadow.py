"""Shadow mode end to end: the fallback answers every client; the candidate answers the same
requests in the background, where its answers are checked, compared and counted.

Each test starts its own gateway (a paused shadow or a rollback must not leak into the next
test) with ``shadow: {share: 1.0, max_concurrency: 4}`` at 100% weight, and reads what the
candidate was asked from the simulator's own counters. The gateway and the simulator run
in-process (``tests.inprocess_sim``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import AUTH, TICKET, AnyGateway, metric_value, wait_for
from tests.inprocess_sim import HeldTransport, InProcessSimulator, LoopThread, start_in_process
from tests.processes import (
    ADMIN_KEY,
    CANDIDATE_MODEL,
    FALLBACK_MODEL,
    routes_yaml,
)

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
SHADOW = "shadow: {share: 1.0, max_concurrency: 4}"
GUARD_ENV = {"GATEWAY_GUARD_TICK_S": "0.05"}


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    """This test's own simulator, in-process."""
    return in_sim


def ask(client: httpx.Client, gw: AnyGateway, subject: str) -> httpx.Response:
    """One client request; it must be answered by the fallback, as shadow mode promises."""
    response = client.post(
        gw.base_url + "/chat/completions",
        json={"model": ROUTE, "messages": [{"role": "user", "content": TICKET}]},
        headers={**AUTH, "x-gateway-subject": subject},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-variant"] == "prompted"
    body = response.json()
    assert body["model"] == ROUTE  # response_model: route (the default)
    assert body["choices"][0]["message"]["content"] == "billing"
    return response


def candidate_requests(sim: InProcessSimulator) -> int:
    """Requests the simulator received for the candidate model (the shadow calls)."""
    stats = sim.stats()["models"].get(CANDIDATE_MODEL, {})
    return int(stats.get("requests", 0))


def shadow_counts(gw: AnyGateway) -> dict[str, float]:
    text = gw.metrics()
    return {
        result: metric_value(text, "gateway_shadow_comparisons_total", route=ROUTE, result=result)
        for result in ("agree", "disagree", "error", "skipped")
    }


def test_shadow_serves_the_fallback_and_compares_the_candidate_in_the_background(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Every client answer is the fallback's (decision ``shadow``); the candidate is asked
    too, and its answers are counted as agreeing or not with the fallback's."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.5)
    routes = routes_yaml(sim.url, weight=100_000, route_extra=SHADOW)
    n = 30
    with (
        start_in_process(loop_thread, tmp_path, routes, sim) as gw,
        gw.client(timeout=10) as client,
    ):
        for i in range(n):
            assert ask(client, gw, f"shadow-{i}").headers["x-gateway-decision"] == "shadow"
        streams = 3
        for i in range(streams):
            body = {
                "model": ROUTE,
                "stream": True,
                "messages": [{"role": "user", "content": TICKET}],
            }
            headers = {**AUTH, "x-gateway-subject": f"shadow-stream-{i}"}
            response = client.post(gw.base_url + "/chat/completions", json=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["x-gateway-decision"] == "shadow"
            assert response.headers["x-gateway-variant"] == "prompted"
            assert f'"model":"{ROUTE}"' in response.text.replace(" ", "")
            assert response.text.rstrip().endswith("data: [DONE]")
        n += streams

        wait_for(lambda: sum(shadow_counts(gw).values()) == n, "every request's shadow outcome")
        counts = shadow_counts(gw)
        assert counts["error"] == 0
        assert counts["agree"] > 0
        assert counts["disagree"] > 0
        # Every shadow call that ran reached the simulator as a candidate request.
        assert candidate_requests(sim) == counts["agree"] + counts["disagree"]
        assert sim.stats()["models"][FALLBACK_MODEL]["requests"] == n
        text = gw.metrics()
        assert metric_value(text, "gateway_requests_total", route=ROUTE, decision="shadow") == n
        assert metric_value(text, "gateway_requests_total", variant="finetuned") == 0


def test_shadow_calls_do_not_slow_the_client(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """A candidate that cannot answer yet behind an instant fallback: client answers still
    come, because the shadow call starts after the client's answer is complete. (No clock:
    the candidate's calls are held until every client answer is in.)"""
    routes = routes_yaml(sim.url, weight=100_000, route_extra=SHADOW)
    held = HeldTransport(
        sim.transport(), hold=lambda r: json.loads(r.content)["model"] == CANDIDATE_MODEL
    )
    with (
        start_in_process(loop_thread, tmp_path, routes, sim, upstreams={"simulator": held}) as gw,
        gw.client(timeout=10) as client,
    ):
        ask(client, gw, "warm-up")
        for i in range(10):
            assert ask(client, gw, f"fast-{i}").headers["x-gateway-decision"] == "shadow"
        # Every client answer came while no candidate call could finish.
        assert candidate_requests(sim) == 0
        assert shadow_counts(gw)["agree"] == 0
        loop_thread.loop.call_soon_threadsafe(held.release)
        wait_for(lambda: candidate_requests(sim) >= 4, "the held shadow calls")
        wait_for(lambda: shadow_counts(gw)["agree"] >= 4, "the held shadow calls to be compared")


def test_shadow_pauses_when_the_candidate_upstream_is_down(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Candidate errors on every call: after a few errors the shadow stops calling it (its
    request count at the simulator stops growing) while client traffic goes on; the skipped
    counter grows instead."""
    sim.set_behaviour(CANDIDATE_MODEL, error_rate=1.0)
    routes = routes_yaml(sim.url, weight=100_000, route_extra=SHADOW)
    with (
        start_in_process(loop_thread, tmp_path, routes, sim) as gw,
        gw.client(timeout=10) as client,
    ):
        # The pause lasts 10 s of the shadow runner's clock: stop that clock, so the pause
        # cannot end while a slow machine sends the requests below.
        gw.ipg.gw.shadow._clock = lambda: 1_000.0
        sent = 0

        def send_then_errors() -> bool:
            nonlocal sent
            ask(client, gw, f"down-{sent}")
            sent += 1
            return shadow_counts(gw)["error"] >= 3

        wait_for(send_then_errors, "three shadow errors")
        # Calls already running when the pause began finish; then the count is stable.
        settled = wait_for(
            lambda: (c := candidate_requests(sim)) == shadow_counts(gw)["error"] and c,
            "the running shadow calls to finish",
        )
        skipped_before = shadow_counts(gw)["skipped"]

        for i in range(20):
            assert ask(client, gw, f"paused-{i}").headers["x-gateway-decision"] == "shadow"

        assert candidate_requests(sim) == settled
        counts = shadow_counts(gw)
        assert counts["error"] == settled
        assert counts["skipped"] == skipped_before + 20


def test_a_rollback_stops_shadow_calls(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """The guard judges the shadow answers; once it rolls back, no more shadow calls."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
    routes = routes_yaml(
        sim.url, weight=100_000, route_extra=f"{SHADOW}\nguard: {{min_samples: 20}}"
    )
    with (
        start_in_process(loop_thread, tmp_path, routes, sim, env=GUARD_ENV) as gw,
        gw.client(timeout=10) as client,
    ):
        sent = 0

        def send_then_rolled_back() -> bool:
            nonlocal sent
            for _ in range(5):
                ask(client, gw, f"shadow-bad-{sent}")
                sent += 1
            response = client.get(gw.url + f"/admin/flags/{ROUTE}", headers=ADMIN)
            assert response.status_code == 200, response.text
            return bool(response.json()["status"] == "rolled_back")

        wait_for(send_then_rolled_back, "the guard to roll back on shadow answers", 30)

        def shadow_total() -> float:
            return sum(shadow_counts(gw).values())

        # Shadow calls of requests answered before the rollback may still be finishing.
        settled = wait_for(
            lambda: (
                (c := candidate_requests(sim)) == shadow_total() - shadow_counts(gw)["skipped"]
                and c
            ),
            "the running shadow calls to finish",
        )
        totals_before = shadow_total()

        for i in range(10):
            response = ask(client, gw, f"after-rollback-{i}")
            assert response.headers["x-gateway-decision"] == "rolled_back"

        assert candidate_requests(sim) == settled
        assert shadow_total() == totals_before
        routes_view = client.get(gw.url + "/admin/routes", headers=ADMIN).json()
        guard = next(r for r in routes_view if r["name"] == ROUTE)["guard"]
        assert guard["status"] == "tripped"
        assert guard["shadow"]["disagree"] >= 20
        assert guard["shadow"]["agree"] == 0


def test_slow_shadow_answers_count_as_guard_failures_under_the_latency_slo(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """``latency_slo_s`` holds for the candidate in shadow mode too: its background answers,
    slower than the SLO, are counted by the guard as failures (observe mode: no rollback)."""
    sim.set_behaviour(CANDIDATE_MODEL, latency_ms=100)  # a floor: always slower than the SLO
    routes = routes_yaml(
        sim.url,
        weight=100_000,
        route_extra=f"{SHADOW}\nguard: {{mode: observe, min_samples: 1000, latency_slo_s: 0.05}}",
    )
    with (
        start_in_process(loop_thread, tmp_path, routes, sim) as gw,
        gw.client(timeout=10) as client,
    ):
        for i in range(1, 9):
            ask(client, gw, f"slo-{i}")
            # One shadow call at a time, so none is skipped.
            wait_for(lambda: shadow_counts(gw)["agree"] == i, "the shadow answer")  # noqa: B023
        routes_view = client.get(gw.url + "/admin/routes", headers=ADMIN).json()
        verdict = next(r for r in routes_view if r["name"] == ROUTE)["guard"]["verdict"]
        assert verdict["candidate"] == {**verdict["candidate"], "n": 8, "failures": 8}
        assert verdict["fallback"]["failures"] == 0


def test_responses_requests_are_mirrored_judged_and_paid_for(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """``/v1/responses`` on a shadow route: the fallback answers (unary and streamed), the
    candidate is asked the same Responses API request in the background, its ``output_text``
    judged by the route's labels and compared with the fallback's; what the shadow calls cost
    is in ``gateway_cost_usd_total`` and ``gateway_shadow_cost_usd_total`` alike."""
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.5)
    routes = routes_yaml(sim.url, weight=100_000, route_extra=SHADOW)
    n, streams = 16, 2
    with (
        start_in_process(loop_thread, tmp_path, routes, sim) as gw,
        gw.client(timeout=10) as client,
    ):
        for i in range(n + streams):
            body = {"model": ROUTE, "input": TICKET, "stream": i >= n}
            headers = {**AUTH, "x-gateway-subject": f"responses-{i}"}
            response = client.post(gw.base_url + "/responses", json=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["x-gateway-decision"] == "shadow"
            assert response.headers["x-gateway-variant"] == "prompted"
        n += streams

        wait_for(lambda: sum(shadow_counts(gw).values()) == n, "every request's shadow outcome")
        counts = shadow_counts(gw)
        assert counts["error"] == counts["skipped"] == 0
        assert counts["agree"] > 0
        assert counts["disagree"] > 0
        assert candidate_requests(sim) == n
        text = gw.metrics()
        checks = "gateway_quality_checks_total"
        assert metric_value(text, checks, variant="finetuned", check="labels") == n
        assert metric_value(text, "gateway_requests_total", variant="finetuned") == 0
        spent = metric_value(text, "gateway_cost_usd_total", route=ROUTE, variant="finetuned")
        shadow = metric_value(text, "gateway_shadow_cost_usd_total", route=ROUTE)
        assert spent > 0
        assert shadow == pytest.approx(spent)
        usage = sim.stats()["models"][CANDIDATE_MODEL]
        tokens = "gateway_shadow_tokens_total"
        assert (
            metric_value(text, tokens, variant="finetuned", type="input") == usage["prompt_tokens"]
        )
        duration = "gen_ai_client_operation_duration_seconds_count"
        assert metric_value(text, duration, variant="finetuned", error_type="") == n
