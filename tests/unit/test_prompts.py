"""How a variant's prompt meets the client's messages (DESIGN.md section 3)."""

from __future__ import annotations

import copy
from typing import Any

from gateway.routing.prompts import apply_prompt

FEW_SHOT = [
    {"role": "user", "content": "I was charged twice."},
    {"role": "assistant", "content": "billing"},
]
VARIANT_SYSTEM = {"role": "system", "content": "You are a support classifier."}


def client_messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "client system"},
        {"role": "developer", "content": "client developer"},
        {"role": "user", "content": "my app crashes"},
        {"role": "assistant", "content": "technical"},
        {"role": "user", "content": "and now?"},
    ]


CONVERSATION = client_messages()[2:]


def test_replace_drops_client_system_and_developer_and_puts_few_shot_first() -> None:
    """replace: variant system prompt, then few-shot, then the client's conversation only."""
    out = apply_prompt(client_messages(), "You are a support classifier.", FEW_SHOT, "replace")
    assert out == [VARIANT_SYSTEM, *FEW_SHOT, *CONVERSATION]


def test_replace_is_the_default_mode() -> None:
    """Without a mode the client's system messages are replaced."""
    out = apply_prompt(client_messages(), "You are a support classifier.", FEW_SHOT)
    assert out == [VARIANT_SYSTEM, *FEW_SHOT, *CONVERSATION]


def test_replace_drops_system_messages_in_the_middle_of_the_conversation() -> None:
    """A client system message after user turns is dropped too, and order is kept otherwise."""
    messages = [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "b"},
    ]
    out = apply_prompt(messages, "S", [], "replace")
    assert out == [{"role": "system", "content": "S"}, messages[0], messages[2]]


def test_prepend_keeps_client_system_messages_after_the_variants() -> None:
    """prepend: variant system, the client's system/developer messages, few-shot, conversation."""
    messages = client_messages()
    out = apply_prompt(messages, "You are a support classifier.", FEW_SHOT, "prepend")
    assert out == [VARIANT_SYSTEM, messages[0], messages[1], *FEW_SHOT, *CONVERSATION]


def test_no_variant_system_prompt_keeps_the_clients_and_inserts_few_shot_after_it() -> None:
    """Without a variant system prompt the client's system messages stay first, then few-shot."""
    messages = client_messages()
    out = apply_prompt(messages, None, FEW_SHOT, "replace")
    assert out == [messages[0], messages[1], *FEW_SHOT, *CONVERSATION]


def test_no_variant_prompt_and_no_few_shot_returns_the_messages_unchanged() -> None:
    """Nothing to apply: the same messages come back (as a new list)."""
    messages = client_messages()
    out = apply_prompt(messages, None, [], "replace")
    assert out == messages
    assert out is not messages


def test_input_list_is_not_mutated() -> None:
    """apply_prompt returns a new list and leaves the client's list and dicts as they were."""
    for mode in ("replace", "prepend"):
        messages = client_messages()
        few_shot = copy.deepcopy(FEW_SHOT)
        before, few_before = copy.deepcopy(messages), copy.deepcopy(few_shot)
        out = apply_prompt(messages, "S", few_shot, mode)
        out.append({"role": "user", "content": "appended"})
        assert messages == before
        assert few_shot == few_before


def test_non_dict_messages_are_treated_as_conversation() -> None:
    """Entries that are not dicts are never taken for system messages (they pass through)."""
    messages: list[Any] = ["odd", {"role": "user", "content": "x"}]
    assert apply_prompt(messages, "S", [], "replace") == [
        {"role": "system", "content": "S"},
        "odd",
        {"role": "user", "content": "x"},
    ]
