"""Decide what one simulated request gets: an answer, an injected error or garbage.

``plan_outcome`` is pure apart from the ``random.Random`` it is handed. It always takes the same
four draws per request (error, garbage, invalid label, accuracy) whatever the rates are, so a
seeded simulator replays a request sequence identically.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from gateway.tools.simulator.behaviour import ModelBehaviour
from gateway.tools.simulator.classifier import INVALID_LABELS, classify, wrong_label

__all__ = ["Outcome", "last_user_text", "message_text", "plan_outcome"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The simulator's plan for one request.

    Attributes:
        kind: ``answer`` (200 with ``content``), ``error`` (``status`` with an error envelope)
            or ``garbage`` (200 with a body that is not JSON).
        content: the assistant's answer text; empty unless ``kind`` is ``answer``.
        status: the HTTP status to send (200 unless ``kind`` is ``error``).
    """

    kind: Literal["answer", "error", "garbage"]
    content: str = ""
    status: int = 200


def message_text(message: Mapping[str, Any]) -> str:
    """Return the text of one chat message.

    ``content`` may be a string, ``None`` or a list of content parts; the ``text`` of every
    ``{"type": "text", "text": ...}`` part is joined with newlines, other parts are ignored.
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Return the text of the last ``user`` message, or ``""`` when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def plan_outcome(
    behaviour: ModelBehaviour, messages: Sequence[Mapping[str, Any]], rng: random.Random
) -> Outcome:
    """Plan the response to a chat request.

    Args:
        behaviour: the requested model's behaviour.
        messages: the request's ``messages`` (already checked to be a list of objects).
        rng: the simulator's random source; four draws are always taken, plus one more
            when a wrong or invalid label has to be picked.

    Returns:
        An ``Outcome``. In ``classify`` mode the content is the label of the last user
        message, replaced by a wrong valid label with probability ``1 - accuracy`` or by one of
        ``INVALID_LABELS`` with probability ``invalid_label_rate``; in ``echo`` mode it is the
        last user message itself.
    """
    error_draw, garbage_draw, invalid_draw, accuracy_draw = (rng.random() for _ in range(4))
    if error_draw < behaviour.error_rate:
        return Outcome(kind="error", status=behaviour.error_status)
    if garbage_draw < behaviour.garbage_rate:
        return Outcome(kind="garbage")
    text = last_user_text(messages)
    if behaviour.mode == "echo":
        return Outcome(kind="answer", content=text)
    if invalid_draw < behaviour.invalid_label_rate:
        return Outcome(kind="answer", content=rng.choice(INVALID_LABELS))
    label = classify(text)
    if accuracy_draw >= behaviour.accuracy:
        label = wrong_label(label, rng)
    return Outcome(kind="answer", content=label)
