"""The upstream body: the pre-encoded prompt prefix gives the same bytes as encoding it whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from gateway.config import Route, load_config
from gateway.routing.payload import build_payload, build_request
from gateway.routing.prompts import apply_prompt
from tests.inprocess import routes_text

FEW_SHOT = (
    {"role": "user", "content": "I was charged twice"},
    {"role": "assistant", "content": "billing"},
)


def reference(route: Route, variant: Any, body: dict[str, Any], stream: bool) -> bytes:
    """The body as the first implementation built it: the prompt applied, the dict encoded."""
    out = dict(body)
    out["model"] = variant.model
    if not route.passthrough:
        out["messages"] = apply_prompt(
            body["messages"], variant.system_prompt, variant.few_shot, route.system_prompt_mode
        )
    if variant.params:
        out.update(variant.params)
    if stream:
        options = body.get("stream_options")
        out["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    elif body.get("stream"):
        out.pop("stream_options", None)
        out["stream"] = False
    return msgspec.json.encode(out)


BODIES: list[dict[str, Any]] = [
    {"model": "triage", "messages": [{"role": "user", "content": "refund"}]},
    {
        "messages": [
            {"role": "system", "content": "client's own"},
            {"role": "developer", "content": "dev"},
            {"role": "user", "content": 'ünïcödé \u2028 "quoted"'},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        ],
        "model": "triage",
        "temperature": 0.3,
        "stream": True,
        "stream_options": {"include_usage": False, "other": 1},
    },
    {"model": "triage", "messages": [{"role": "system", "content": "only system"}]},
    {"model": "triage", "messages": ["not a dict", {"role": "user", "content": "x"}]},
]


@pytest.mark.parametrize("mode", ["replace", "prepend"])
@pytest.mark.parametrize("prompt", [None, "You triage tickets.\nAnswer with one word."])
@pytest.mark.parametrize("few_shot", [(), FEW_SHOT])
@pytest.mark.parametrize("params", [{}, {"temperature": 0, "max_tokens": 5}])
@pytest.mark.parametrize("stream", [False, True])
def test_build_payload_is_byte_for_byte_the_reference(
    tmp_path: Path,
    mode: Literal["replace", "prepend"],
    prompt: str | None,
    few_shot: tuple[dict[str, str], ...],
    params: dict[str, Any],
    stream: bool,
) -> None:
    """Every prompt mode, with and without system prompt, few-shot messages and params, unary
    and stream, with client system messages, odd messages and stream_options: same bytes."""
    path = tmp_path / "routes.yaml"
    path.write_text(routes_text())
    route = load_config(path).routes["triage"]
    route = dataclasses.replace(route, system_prompt_mode=mode)
    variant = dataclasses.replace(
        route.variants["cand"], system_prompt=prompt, few_shot=few_shot, params=params
    )
    for body in BODIES:
        for _ in range(2):  # the second time from the cached prefix
            assert build_payload(route, variant, body, stream) == reference(
                route, variant, body, stream
            )


def variant_of(
    tmp_path: Path,
    *,
    params: dict[str, Any],
    mode: Literal["enforce", "default"] = "enforce",
    prompt: str | None = "Classify.",
) -> tuple[Route, Any]:
    path = tmp_path / "routes.yaml"
    path.write_text(routes_text())
    route = load_config(path).routes["triage"]
    variant = dataclasses.replace(
        route.variants["cand"], system_prompt=prompt, params=params, params_mode=mode
    )
    return route, variant


def sent(payload: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(payload)
    return out


USER = {"role": "user", "content": "refund"}


def test_enforced_params_replace_the_clients_and_say_which_changed(tmp_path: Path) -> None:
    """The issue's case: the client's temperature 0.7 becomes the variant's 0 and is reported;
    a field the client set to the same value, or did not send, is not."""
    route, variant = variant_of(tmp_path, params={"temperature": 0, "top_p": 1, "seed": 7})
    body = {"model": "triage", "messages": [USER], "temperature": 0.7, "top_p": 1}
    payload = build_request(route, variant, body, False)
    assert sent(payload[0])["temperature"] == 0
    assert sent(payload[0])["seed"] == 7
    assert payload[1] == ("temperature",)
    assert payload[0] == build_payload(route, variant, body, False)


def test_default_params_yield_to_the_client(tmp_path: Path) -> None:
    """params_mode default: the client's values stay, missing ones are filled, none reported."""
    route, variant = variant_of(
        tmp_path, params={"temperature": 0, "seed": 7}, mode="default", prompt=None
    )
    body = {"model": "triage", "messages": [USER], "temperature": 0.7}
    payload = build_request(route, variant, body, False)
    assert sent(payload[0])["temperature"] == 0.7
    assert sent(payload[0])["seed"] == 7
    assert payload[1] == ()


@pytest.mark.parametrize("mode", ["enforce", "default"])
def test_max_tokens_and_max_completion_tokens_are_one_field(
    tmp_path: Path, mode: Literal["enforce", "default"]
) -> None:
    """An enforced max_tokens replaces the client's max_completion_tokens (never both sent);
    a default one yields to it."""
    route, variant = variant_of(tmp_path, params={"max_tokens": 5}, mode=mode)
    body = {"model": "triage", "messages": [USER], "max_completion_tokens": 100}
    payload = build_request(route, variant, body, False)
    limits = {k: v for k, v in sent(payload[0]).items() if k.startswith("max_")}
    if mode == "enforce":
        assert limits == {"max_tokens": 5}
        assert payload[1] == ("max_completion_tokens",)
    else:
        assert limits == {"max_completion_tokens": 100}
        assert payload[1] == ()


def test_replaced_system_and_developer_messages_are_reported_by_role(tmp_path: Path) -> None:
    """replace mode: the client's developer message is replaced like a system message and
    reported as messages.developer; prepend keeps both and reports nothing."""
    route, variant = variant_of(tmp_path, params={})
    developer = {"role": "developer", "content": "Answer in French."}
    body = {"model": "triage", "messages": [developer, USER]}
    payload = build_request(route, variant, body, False)
    assert sent(payload[0])["messages"] == [{"role": "system", "content": "Classify."}, USER]
    assert payload[1] == ("messages.developer",)

    both = {"model": "triage", "messages": [{"role": "system", "content": "s"}, developer, USER]}
    assert build_request(route, variant, both, False)[1] == (
        "messages.system",
        "messages.developer",
    )
    assert build_request(route, variant, {"model": "t", "messages": [USER]}, False)[1] == ()

    prepend = dataclasses.replace(route, system_prompt_mode="prepend")
    kept = build_request(prepend, variant, body, False)
    assert sent(kept[0])["messages"] == [
        {"role": "system", "content": "Classify."},
        developer,
        USER,
    ]
    assert kept[1] == ()


def test_messages_come_before_params_in_the_report(tmp_path: Path) -> None:
    route, variant = variant_of(tmp_path, params={"temperature": 0})
    body = {
        "model": "triage",
        "messages": [{"role": "system", "content": "mine"}, USER],
        "temperature": 1,
    }
    assert build_request(route, variant, body, True)[1] == (
        "messages.system",
        "temperature",
    )
