"""A Responses API answer as the contract judges it: the same
:class:`~gateway.quality.answer.Answer` as chat completions (pure, no I/O).

OpenAI's Responses API answers with a list of ``output`` items. A ``message`` item's
``output_text`` parts are the text and its ``refusal`` parts the refusal (like chat's
``message.content`` and ``message.refusal``); a ``function_call`` item (``name``, ``arguments``
JSON text, ``call_id``) is a tool call, in output order. Other items (reasoning, built-in tool
calls) are not judged.

Streams carry the same items as events (:class:`ResponsesAnswerAssembler`): a
``response.output_item.added`` whose ``item`` is a ``function_call`` opens a call at its
``output_index``, ``response.function_call_arguments.delta`` events add pieces of its arguments,
and ``response.function_call_arguments.done`` / ``response.output_item.done`` carry the final
arguments (which win over the pieces when given); ``response.refusal.delta`` pieces make the
refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.quality.answer import Answer, ToolCall

__all__ = ["ResponsesAnswerAssembler", "answer_from_output", "join_answer"]


def join_answer(text: str | None, calls: tuple[ToolCall, ...], refusal: str | None) -> Answer:
    """The answer for assembled parts: ``text`` empty or absent becomes ``None`` when there are
    tool calls or a refusal (as chat's ``content: null``)."""
    if not text and (calls or refusal is not None):
        text = None
    return Answer(text, calls, refusal)


def _call(item: dict[str, Any]) -> ToolCall:
    name = item.get("name")
    arguments = item.get("arguments")
    return ToolCall(
        name if isinstance(name, str) else "",
        arguments if isinstance(arguments, str) else "",
    )


def answer_from_output(output: Sequence[Any]) -> Answer:
    """The answer in a unary ``response``'s ``output`` items (decoded JSON; items of another
    shape are skipped). Text is ``None`` when no ``output_text`` part is present."""
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            calls.append(_call(item))
        elif kind == "message" and isinstance(item.get("content"), list):
            for part in item["content"]:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
    return Answer(
        "".join(texts) if texts else None,
        tuple(calls),
        "".join(refusals) if refusals else None,
    )


class ResponsesAnswerAssembler:
    """The tool calls and refusal of a Responses stream, from its events (see the module
    docstring); calls come out in ``output_index`` order."""

    __slots__ = ("_calls", "_refusal")

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str], list[str], list[str]]] = {}
        """output_index -> (name, argument pieces, final arguments), each list of 0 or 1
        (pieces: any number)."""
        self._refusal: list[str] = []

    def item(self, output_index: int, item: Any, *, done: bool) -> None:
        """A ``response.output_item.added`` (``done`` false) or ``.done`` event's ``item``;
        only ``function_call`` items count."""
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return
        entry = self._entry(output_index)
        call = _call(item)
        if call.name and not entry[0]:
            entry[0].append(call.name)
        if done:
            entry[2][:] = [call.arguments]
        elif call.arguments:
            entry[1].append(call.arguments)

    def arguments(self, output_index: int, delta: str) -> None:
        """A ``response.function_call_arguments.delta`` piece."""
        self._entry(output_index)[1].append(delta)

    def arguments_done(self, output_index: int, arguments: str) -> None:
        """A ``response.function_call_arguments.done`` event's whole ``arguments``."""
        self._entry(output_index)[2][:] = [arguments]

    def refusal(self, piece: str) -> None:
        """A ``response.refusal.delta`` piece."""
        self._refusal.append(piece)

    def _entry(self, output_index: int) -> tuple[list[str], list[str], list[str]]:
        entry = self._calls.get(output_index)
        if entry is None:
            entry = self._calls[output_index] = ([], [], [])
        return entry

    def answer(self, text: str) -> Answer:
        """The answer with the stream's ``text`` (see :func:`join_answer`)."""
        calls = tuple(
            ToolCall("".join(name), final[0] if final else "".join(pieces))
            for _, (name, pieces, final) in sorted(self._calls.items())
        )
        refusal = "".join(self._refusal) if self._refusal else None
        return join_answer(text, calls, refusal)
