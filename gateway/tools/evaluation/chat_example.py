"""One line of OpenAI's chat fine-tuning format: decode it, check it, digest it (pure).

The format (OpenAI's fine-tuning guide): each line is a JSON object with ``messages``, a list
of ``{"role": "system"|"user"|"assistant", "content": str}`` (optionally ``name``, and on
assistant messages ``weight`` 0 or 1), with at least one assistant message and no empty content.
:func:`parse_line` reports every format problem of a line at once.

Of a well-formed line, :class:`Digest` keeps what the file-wide checks need: hashes of the
exact example and of its normalised input (lower case, punctuation and runs of whitespace
folded, see :func:`normalise`), the answer (the last assistant message), the system prompt
and an approximate token count (:func:`approx_tokens`).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from gateway.tools.evaluation.compact_index import hash32, hash64
from gateway.tools.evaluation.jsonl import RawLine
from gateway.tools.evaluation.problems import Problem

__all__ = ["COUNTING_METHOD", "ROLES", "Digest", "approx_tokens", "normalise", "parse_line"]

ROLES = ("system", "user", "assistant")
_KEYS = frozenset({"role", "content", "name", "weight"})
_STRUCTURAL = frozenset(
    {"invalid_message", "invalid_role", "invalid_content", "no_assistant_message"}
)
"""Problems that leave no answer, input or prompt to compare; other problems still digest."""
_NON_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, whitespace: everything but words

COUNTING_METHOD = (
    "ceil(characters / 4) + 4 per message + 3 per example, as the simulator counts; "
    "tiktoken's encodings are downloaded at run time, which this tool does not do"
)


@dataclass(frozen=True, slots=True)
class Digest:
    """What the file-wide checks keep of one well-formed example (texts live one line only).

    Attributes:
        exact: 64-bit hash of every message's role, content, name and weight (JSON key order
            and spacing ignored; keys other than ``messages`` too).
        input_key: 64-bit hash of the normalised non-system messages before the answer.
        conflict_key: ``input_key`` combined with the exact system prompt (same task, same
            input).
        answer: the last assistant message's content, stripped.
        answer_hash: 32-bit hash of ``answer``.
        system_prompt: the first system message's content, or ``None``.
        tokens: approximate tokens of the whole example (:func:`approx_tokens`).
    """

    exact: int
    input_key: int
    conflict_key: int
    answer: str
    answer_hash: int
    system_prompt: str | None
    tokens: int


def normalise(text: str) -> str:
    """Text as "near-identical" compares it: NFKC, case-folded, every run of punctuation,
    symbols and whitespace made one space, trimmed. ``"I can't  log in!"`` -> ``"i can t log in"``.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def approx_tokens(messages: list[dict[str, Any]]) -> int:
    """Approximate tokens of an example: ``sum(ceil(len(content) / 4) + 4) + 3``.

    The same rule as the simulator's ``count_prompt_tokens``; OpenAI's real counts (tiktoken)
    differ by tens of percent on unusual text but rank examples alike.
    """
    return sum(math.ceil(len(str(m.get("content", ""))) / 4) + 4 for m in messages) + 3


def parse_line(raw: RawLine, file: str) -> tuple[Digest | None, list[Problem]]:
    """Check one line; return its digest and its problems.

    The digest is ``None`` when the line has no usable messages (not JSON, wrong roles or
    content types, no assistant message); a line with only lesser errors (empty content,
    unknown keys, a bad weight) still has one, so its other problems (conflicts, labels,
    prompt) are reported in the same run. Blank lines give no digest and one warning. Every
    problem names ``file`` and the line.
    """

    def error(code: str, message: str) -> Problem:
        return Problem(raw.number, "error", code, message, file)

    if raw.too_long:
        return None, [error("line_too_long", f"line is {raw.size} bytes long; not read")]
    try:
        text = raw.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw.data[exc.start : exc.start + 1].hex()
        message = f"not valid UTF-8 (byte 0x{bad} at byte {exc.start + 1}); save it as UTF-8"
        return None, [error("invalid_utf8", message)]
    if not text.strip():
        blank = Problem(raw.number, "warning", "blank_line", "blank line (skipped)", file)
        return None, [blank]
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        if not raw.terminated:
            message = (
                f"truncated: the file ends inside this line ({exc.msg}, column {exc.colno}); "
                "was the file cut off while copying?"
            )
            return None, [error("truncated_line", message)]
        return None, [error("invalid_json", f"not valid JSON: {exc.msg} (column {exc.colno})")]
    if not isinstance(item, dict):
        return None, [error("not_an_object", f"expected a JSON object, got {_kind(item)}")]
    messages = item.get("messages")
    if messages is None:
        return None, [
            error("missing_messages", "no 'messages' key (expected {\"messages\": [...]})")
        ]
    if not isinstance(messages, list) or not messages:
        what = "an empty list" if isinstance(messages, list) else _kind(messages)
        return None, [error("invalid_messages", f"'messages' must be a non-empty list, got {what}")]
    problems = _check_messages(messages, error)
    if any(p.code in _STRUCTURAL for p in problems):
        return None, problems
    return _digest(messages), problems


def _check_messages(messages: list[Any], error: Any) -> list[Problem]:
    problems: list[Problem] = []
    for index, message in enumerate(messages, start=1):
        where = f"message {index}"
        if not isinstance(message, dict):
            problems.append(error("invalid_message", f"{where} is {_kind(message)}, not an object"))
            continue
        role = message.get("role")
        if role not in ROLES:
            got = "no role" if role is None else f"role {role!r}"
            problems.append(
                error("invalid_role", f"{where} has {got} (use system, user or assistant)")
            )
        content = message.get("content")
        if not isinstance(content, str):
            got = "no content" if content is None else f"content that is {_kind(content)}"
            problems.append(
                error("invalid_content", f"{where} has {got}; content must be a string")
            )
        elif not content.strip():
            problems.append(error("empty_content", f"{where} ({role}) has empty content"))
        unknown = sorted(str(key) for key in message if key not in _KEYS)
        if unknown:
            problems.append(
                error(
                    "unknown_key",
                    f"{where} has unsupported key(s) {', '.join(unknown)} "
                    "(allowed: role, content, name, weight)",
                )
            )
        weight = message.get("weight")
        if weight is not None and (role != "assistant" or weight not in (0, 1)):
            problems.append(
                error("invalid_weight", f"{where}: weight is 0 or 1, on assistant only")
            )
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if "assistant" not in roles:
        problems.append(error("no_assistant_message", "no assistant message: nothing to learn"))
    return problems


def _digest(messages: list[dict[str, Any]]) -> Digest:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    answer = messages[last]["content"].strip()
    system = next((m["content"] for m in messages if m["role"] == "system"), None)
    turns = "\x1e".join(
        f"{m['role']}\x1f{normalise(m['content'])}"
        for m in messages[:last]
        if m["role"] != "system"
    )
    exact = "\x1e".join(
        f"{m['role']}\x1f{m['content']}\x1f{m.get('name', '')}\x1f{m.get('weight', '')}"
        for m in messages
    )
    return Digest(
        exact=hash64(exact),
        input_key=hash64(turns),
        conflict_key=hash64(f"{system}\x1d{turns}"),
        answer=answer,
        answer_hash=hash32(answer),
        system_prompt=system,
        tokens=approx_tokens(messages),
    )


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
