"""``POST /v1/feedback`` end to end: a verdict on an earlier answer, by its ``x-request-id``.

One gateway for the module, in-process against an in-process simulator: the candidate answers
everything (weight 100%) and the guard watches in ``observe`` mode, so negative feedback shows up
in ``GET /admin/routes`` as one more candidate failure without ever rolling back. Tests read
counters before and after, so they do not depend on their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support import AUTH, AnyGateway, assert_error_envelope, chat, metric_value
from tests.inprocess_sim import LoopThread, in_process_simulator, start_in_process
from tests.processes import ADMIN_KEY, routes_yaml

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def gateway(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnyGateway]:
    with in_process_simulator(loop_thread) as simulator:
        routes = routes_yaml(
            simulator.url,
            weight=100_000,
            route_extra="guard: {mode: observe, min_samples: 1000}",
        )
        tmp = tmp_path_factory.mktemp("feedback")
        with start_in_process(loop_thread, tmp, routes, simulator) as gw:
            yield gw


def answered(gw: AnyGateway) -> str:
    """Send one chat request answered by the candidate; return its request id."""
    response = chat(gw)
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-variant"] == "finetuned"
    return response.headers["x-request-id"]


def post_feedback(
    gw: AnyGateway,
    body: dict[str, Any] | None = None,
    *,
    content: bytes | None = None,
    authorization: str | None = AUTH["authorization"],
) -> httpx.Response:
    headers = {} if authorization is None else {"authorization": authorization}
    if content is not None:
        headers["content-type"] = "application/json"
    return gw.http.post(
        gw.base_url + "/feedback",
        json=body if content is None else None,
        content=content,
        headers=headers,
        timeout=10,
    )


def candidate_counts(gw: AnyGateway) -> tuple[int, int]:
    """(outcomes, failures) of the candidate in the guard's current rollout."""
    response = gw.http.get(gw.url + "/admin/routes", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    route = next(r for r in response.json() if r["name"] == ROUTE)
    cand = route["guard"]["verdict"]["candidate"]
    return cand["n"], cand["failures"]


def feedback_total(gw: AnyGateway, result: str) -> float:
    return metric_value(
        gw.metrics(), "gateway_feedback_total", route=ROUTE, variant="finetuned", result=result
    )


def test_negative_feedback_counts_one_more_candidate_failure_for_the_guard(
    gateway: AnyGateway,
) -> None:
    request_id = answered(gateway)
    n_before, failures_before = candidate_counts(gateway)
    negatives_before = feedback_total(gateway, "negative")

    response = post_feedback(gateway, {"request_id": request_id, "correct": False})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "feedback"
    assert body["request_id"] == request_id
    assert body["route"] == ROUTE
    assert body["variant"] == "finetuned"
    assert body["negative"] is True
    assert body["counted_by_guard"] is True
    assert candidate_counts(gateway) == (n_before, failures_before + 1)
    assert feedback_total(gateway, "negative") == negatives_before + 1


def test_positive_feedback_is_counted_but_changes_no_guard_outcome(
    gateway: AnyGateway,
) -> None:
    request_id = answered(gateway)
    before = candidate_counts(gateway)
    positives_before = feedback_total(gateway, "positive")

    response = post_feedback(gateway, {"request_id": request_id, "correct": True})

    assert response.status_code == 200, response.text
    assert response.json()["negative"] is False
    assert candidate_counts(gateway) == before
    assert feedback_total(gateway, "positive") == positives_before + 1


@pytest.mark.parametrize(("score", "negative"), [(0.2, True), (0.5, False), (0.9, False)])
def test_a_score_below_one_half_is_negative_feedback(
    gateway: AnyGateway, score: float, negative: bool
) -> None:
    request_id = answered(gateway)
    n_before, failures_before = candidate_counts(gateway)

    response = post_feedback(gateway, {"request_id": request_id, "score": score})

    assert response.status_code == 200, response.text
    assert response.json()["negative"] is negative
    assert candidate_counts(gateway) == (n_before, failures_before + negative)


def test_feedback_for_an_unknown_request_id_is_404_request_not_found(
    gateway: AnyGateway,
) -> None:
    response = post_feedback(gateway, {"request_id": "req_never_seen", "correct": False})
    assert_error_envelope(response, 404, code="request_not_found", param="request_id")


def test_feedback_twice_for_one_request_is_409_and_counts_once(gateway: AnyGateway) -> None:
    request_id = answered(gateway)
    first = post_feedback(gateway, {"request_id": request_id, "correct": False})
    assert first.status_code == 200, first.text
    after_first = candidate_counts(gateway)

    second = post_feedback(gateway, {"request_id": request_id, "correct": False})

    assert_error_envelope(second, 409, code="feedback_already_recorded")
    assert candidate_counts(gateway) == after_first


@pytest.mark.parametrize(
    ("verdict", "param"),
    [
        ({"score": 1.5}, "score"),
        ({"score": -0.1}, "score"),
        ({"score": 0.3, "correct": False}, "score"),
        ({}, "score"),
        ({"correct": "no"}, "correct"),
    ],
    ids=["score-above-1", "score-below-0", "score-and-correct", "neither", "correct-not-bool"],
)
def test_invalid_feedback_is_400_naming_the_field(
    gateway: AnyGateway, verdict: dict[str, Any], param: str
) -> None:
    request_id = answered(gateway)
    response = post_feedback(gateway, {"request_id": request_id, **verdict})
    assert_error_envelope(response, 400, error_type="invalid_request_error", param=param)
    # Refused feedback is not recorded: a valid verdict is still accepted afterwards.
    accepted = post_feedback(gateway, {"request_id": request_id, "correct": True})
    assert accepted.status_code == 200, accepted.text


def test_feedback_without_a_request_id_is_400(gateway: AnyGateway) -> None:
    response = post_feedback(gateway, {"correct": False})
    assert_error_envelope(response, 400, error_type="invalid_request_error", param="request_id")


def test_malformed_feedback_json_is_400(gateway: AnyGateway) -> None:
    response = post_feedback(gateway, content=b'{"request_id": "x", "correct": fal')
    assert_error_envelope(response, 400, error_type="invalid_request_error")


def test_feedback_without_a_client_key_is_401(gateway: AnyGateway) -> None:
    request_id = answered(gateway)
    response = post_feedback(
        gateway, {"request_id": request_id, "correct": False}, authorization=None
    )
    assert_error_envelope(response, 401, code="invalid_api_key")
    accepted = post_feedback(gateway, {"request_id": request_id, "correct": False})
    assert accepted.status_code == 200, accepted.text
