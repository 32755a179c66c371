"""The upstream body: the pre-encoded prompt prefix gives the same bytes as encoding it whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest

from gateway.config import Route, load_config
from gateway.routing.payload import build_payload
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
