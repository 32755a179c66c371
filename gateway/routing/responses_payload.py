"""Build the upstream request body of a Responses API call for one variant (pure).

The Responses API (``POST /v1/responses``) carries the system prompt in ``instructions`` and
the conversation in ``input`` (a string, or a list of items). A variant is applied as for chat
completions (:mod:`gateway.routing.prompts`), in the Responses API's terms:

* ``system_prompt_mode: replace`` (default): the variant's system prompt becomes
  ``instructions``, replacing the client's, and ``system``/``developer`` messages in ``input``
  are dropped (a fine-tuned model must see exactly the prompt it was trained with);
* ``prepend``: ``instructions`` is the variant's system prompt, a blank line, then the client's
  instructions (if any); ``system``/``developer`` messages in ``input`` stay;
* a variant without a system prompt leaves the client's ``instructions`` and ``input`` alone;
* the variant's few-shot messages go first in ``input`` (a string ``input`` becomes one
  ``user`` message after them);
* ``model`` is the variant's; its ``params`` are applied per its ``params_mode`` as for chat
  completions (:func:`gateway.routing.payload.apply_params`: ``enforce`` sets them over the
  client's fields, ``default`` fills only those the client did not send).

Every other field is forwarded exactly as the client sent it.

:func:`build_responses_request` also says which of the client's fields the gateway changed (for
the ``x-gateway-overridden`` response header): ``instructions`` when the variant's system prompt
replaced the client's (``replace`` mode, the client's differing), ``input.system`` /
``input.developer`` when such messages were dropped from ``input``, then enforced params the
client had set to another value.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.config import Route, Variant
from gateway.routing.payload import Payload, apply_params
from gateway.routing.prompts import is_system_message

__all__ = ["apply_instructions", "build_responses_payload", "build_responses_request", "replaced"]

_encode = msgspec.json.Encoder().encode


def apply_instructions(
    route: Route, variant: Variant, instructions: Any, items: Any
) -> tuple[Any, Any]:
    """The ``instructions`` and ``input`` to send upstream for the client's (see the module
    docstring). ``items`` is the client's ``input`` (a string or a list); neither argument is
    modified."""
    prompt = variant.system_prompt
    if prompt is not None:
        if route.system_prompt_mode == "replace":
            instructions = prompt
            if isinstance(items, list):
                items = [item for item in items if not is_system_message(item)]
        elif isinstance(instructions, str) and instructions:
            instructions = prompt + "\n\n" + instructions
        else:
            instructions = prompt
    if variant.few_shot:
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        items = [*variant.few_shot, *(items if isinstance(items, list) else [])]
    return instructions, items


def replaced(route: Route, variant: Variant, instructions: Any, items: Any) -> tuple[str, ...]:
    """The client's prompt fields :func:`apply_instructions` replaces (see the module
    docstring), in order: ``instructions``, ``input.system``, ``input.developer``."""
    if variant.system_prompt is None or route.system_prompt_mode != "replace":
        return ()
    fields: list[str] = []
    if isinstance(instructions, str) and instructions != variant.system_prompt:
        fields.append("instructions")
    if isinstance(items, list):
        roles = {item.get("role") for item in items if is_system_message(item)}
        fields.extend(f"input.{role}" for role in ("system", "developer") if role in roles)
    return tuple(fields)


def build_responses_payload(
    route: Route, variant: Variant, body: dict[str, Any], stream: bool
) -> bytes:
    """The JSON body to POST to ``variant``'s upstream ``/responses`` for the client's
    ``body`` (:func:`build_responses_request` without the changed fields)."""
    return build_responses_request(route, variant, body, stream)[0]


def build_responses_request(
    route: Route, variant: Variant, body: dict[str, Any], stream: bool
) -> Payload:
    """The JSON body to POST to ``variant``'s upstream ``/responses`` for the client's
    ``body``, and the client's fields it changed (see the module docstring). ``stream`` false
    on a streamed request asks for one answer (shadow calls)."""
    out = dict(body)
    out["model"] = variant.model
    overridden: tuple[str, ...] = ()
    if not route.passthrough:
        client_instructions, client_input = body.get("instructions"), body.get("input")
        instructions, items = apply_instructions(route, variant, client_instructions, client_input)
        if instructions is not None:
            out["instructions"] = instructions
        if items is not None:
            out["input"] = items
        overridden = replaced(route, variant, client_instructions, client_input)
    if variant.params:
        changed = apply_params(variant, body, out)
        if changed:
            overridden = (*overridden, *changed)
    if not stream and body.get("stream"):
        out["stream"] = False
    return _encode(out), overridden
