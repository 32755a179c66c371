"""Apply a variant's prompt to the client's messages (DESIGN.md section 3).

``replace`` (default): the variant's system prompt replaces every client system (and developer)
message, because a fine-tuned model must see exactly the prompt it was trained with; the
variant's few-shot messages go between that system message and the client's conversation.
``prepend``: the variant's system prompt goes first, the client's system messages stay right
after it, then the few-shot examples and the conversation. A variant without a system prompt
leaves the client's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["apply_prompt", "is_system_message"]

_SYSTEM_ROLES = frozenset({"system", "developer"})


def apply_prompt(
    messages: Sequence[Any],
    system_prompt: str | None,
    few_shot: Sequence[dict[str, str]],
    mode: Literal["replace", "prepend"] = "replace",
) -> list[Any]:
    """Return the messages to send upstream; the input list is not modified.

    Args:
        messages: the client's ``messages`` (dicts with at least ``role``), as decoded.
        system_prompt: the variant's system prompt, or ``None`` to keep the client's.
        few_shot: the variant's example messages (user/assistant pairs).
        mode: ``replace`` or ``prepend``.
    """
    if system_prompt is None:
        if not few_shot:
            return list(messages)
        head = [m for m in messages if _is_system(m)]
        rest = [m for m in messages if not _is_system(m)]
        return [*head, *few_shot, *rest]
    system = {"role": "system", "content": system_prompt}
    if mode == "replace":
        return [system, *few_shot, *(m for m in messages if not _is_system(m))]
    head = [m for m in messages if _is_system(m)]
    return [system, *head, *few_shot, *(m for m in messages if not _is_system(m))]


def is_system_message(message: Any) -> bool:
    """A ``system`` or ``developer`` message (as the client sent it, decoded)."""
    return isinstance(message, dict) and message.get("role") in _SYSTEM_ROLES


_is_system = is_system_message
