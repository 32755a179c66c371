"""Build the upstream request body for one variant (pure).

The client's body is decoded once; the copy sent upstream changes only ``model``,
``messages`` (the variant's prompt applied), the variant's ``params``, and, for streams,
``stream_options.include_usage`` (the gateway needs usage to measure tokens and cost).
Every other field is forwarded exactly as the client sent it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.config import Route, Variant
from gateway.routing.prompts import apply_prompt

__all__ = ["build_payload"]

_encode = msgspec.json.Encoder().encode


def build_payload(route: Route, variant: Variant, body: dict[str, Any], stream: bool) -> bytes:
    """The JSON body to POST to ``variant``'s upstream for the client's ``body``."""
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
    elif body.get("stream"):  # a streamed request answered in one piece (shadow calls)
        out.pop("stream_options", None)
        out["stream"] = False
    return _encode(out)
