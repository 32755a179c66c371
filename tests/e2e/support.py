"""Helpers shared by the end-to-end failure and telemetry tests (not tests themselves)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.inprocess_sim import InProcessGatewayUnderTest
from tests.processes import CLIENT_KEY, GatewayProcess

__all__ = [
    "AUTH",
    "TICKET",
    "AnyGateway",
    "assert_error_envelope",
    "assert_serves_normally",
    "chat",
    "metric_samples",
    "metric_value",
    "wait_for",
]

T = TypeVar("T")

AnyGateway = GatewayProcess | InProcessGatewayUnderTest
"""A gateway process over TCP or a gateway app in-process: both have ``url``, ``base_url``,
``http`` (a sync client), ``client()``, ``openai()``, ``metrics()`` and ``log_events()``."""

TICKET = "I was charged twice for my subscription, please refund the extra charge."
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
_ENVELOPE_FIELDS = {"message", "type", "param", "code"}


def chat(
    gateway: AnyGateway,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    authorization: str | None = AUTH["authorization"],
    timeout: float = 10.0,
) -> httpx.Response:
    """POST a chat completion with raw httpx (default body: one billing ticket).

    ``content`` sends those bytes instead of ``body`` as JSON; ``authorization=None`` sends no
    ``Authorization`` header.
    """
    if content is None and body is None:
        body = {"model": "support-triage", "messages": [{"role": "user", "content": TICKET}]}
    sent = dict(headers or {})
    if authorization is not None:
        sent["authorization"] = authorization
    if content is not None:
        sent.setdefault("content-type", "application/json")
    return gateway.http.post(
        gateway.base_url + "/chat/completions",
        json=body if content is None else None,
        content=content,
        headers=sent,
        timeout=timeout,
    )


def assert_error_envelope(
    response: httpx.Response,
    status: int,
    *,
    code: str | None = None,
    error_type: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """Assert ``response`` is ``status`` with exactly OpenAI's error envelope; return ``error``.

    The message must be text for a person: no traceback, no client key.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == _ENVELOPE_FIELDS, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in error["message"]
    assert 'File "' not in error["message"]
    assert CLIENT_KEY not in response.text
    assert isinstance(error["type"], str)
    if code is not None:
        assert error["code"] == code, error
    if error_type is not None:
        assert error["type"] == error_type, error
    if param is not None:
        assert error["param"] == param, error
    return error


def assert_serves_normally(gateway: AnyGateway) -> None:
    """The gateway still answers an ordinary request with a label (it survived the failure)."""
    response = chat(gateway)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "billing"


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (e.g. ``gateway_tokens_total``) as (labels, value)."""
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    Timeouts are hang detectors, not expectations: keep them generous (a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
