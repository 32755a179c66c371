"""Tool-call answers of a simulated model (pure apart from the ``random.Random`` handed in).

A request that offers ``tools`` is answered with a call to one of its functions instead of
text when its ``tool_choice`` asks for one (``"required"`` or a named function) or, with
``tool_choice`` absent or ``"auto"``, at the model's ``tool_call_rate``; never with
``tool_choice: "none"``. The function called is the named one, else the first function tool.
Its arguments are a JSON object built from the function's ``parameters`` schema: every listed
property gets a value of its type (a string property the answer the model would have given as
text, or the first ``enum`` value when that answer is not in the enum; numbers 1, booleans
true, arrays ``[]``, objects ``{}``). So a route's contract can judge the call.

Faults, drawn per tool-call answer: ``wrong_tool_rate`` calls ``unknown_function`` (a name the
request did not offer), ``bad_arguments_rate`` cuts the arguments' JSON short.

A request with ``tools`` that is not answered with an injected error takes three draws (call,
wrong name, bad arguments) after the four of
:func:`~gateway.tools.simulator.outcome.plan_outcome`; one without ``tools`` takes none, so
seeded runs without tools replay as before.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from gateway.tools.simulator.behaviour import ModelBehaviour

__all__ = ["UNKNOWN_FUNCTION", "PlannedToolCall", "call_id", "plan_tool_call"]

UNKNOWN_FUNCTION = "unknown_function"


class PlannedToolCall(msgspec.Struct, frozen=True):
    """The function to call and its arguments (JSON text, possibly broken on purpose)."""

    name: str
    arguments: str


def call_id() -> str:
    """A fresh tool call id like OpenAI's, ``call_`` and 24 hex digits (random, not seeded)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _functions(tools: Sequence[Any]) -> list[Mapping[str, Any]]:
    return [
        tool["function"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    ]


def _value(schema: Any, answer: str) -> Any:
    if not isinstance(schema, dict):
        return answer
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return answer if answer in enum else enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if not isinstance(kind, str):
        return answer
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(kind, answer)


def arguments_for(function: Mapping[str, Any], answer: str) -> dict[str, Any]:
    """The arguments object for ``function`` (see the module's docstring)."""
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: _value(schema, answer) for name, schema in properties.items()}


def plan_tool_call(
    behaviour: ModelBehaviour,
    tools: Sequence[Any] | None,
    tool_choice: Any,
    answer: str,
    rng: random.Random,
) -> PlannedToolCall | None:
    """The tool call answering a request, or ``None`` to answer with text.

    Args:
        behaviour: the model's behaviour (``tool_call_rate``, ``wrong_tool_rate``,
            ``bad_arguments_rate``).
        tools: the request's ``tools``.
        tool_choice: the request's ``tool_choice`` (``None`` when absent).
        answer: the text the model would answer (its label, or the echoed message).
        rng: the simulator's random source (three draws when ``tools`` is non-empty).
    """
    if not tools:
        return None
    call_draw, wrong_draw, bad_draw = (rng.random() for _ in range(3))
    functions = _functions(tools)
    if not functions or tool_choice == "none":
        return None
    function = functions[0]
    if isinstance(tool_choice, dict):
        named = (tool_choice.get("function") or {}).get("name")
        function = next((f for f in functions if f["name"] == named), function)
    elif tool_choice != "required" and call_draw >= behaviour.tool_call_rate:
        return None
    name = UNKNOWN_FUNCTION if wrong_draw < behaviour.wrong_tool_rate else function["name"]
    arguments = msgspec.json.encode(arguments_for(function, answer)).decode()
    if bad_draw < behaviour.bad_arguments_rate:
        arguments = arguments[: max(1, len(arguments) // 2)]
    return PlannedToolCall(name, arguments)
