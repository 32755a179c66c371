"""The held-out file of ``gateway eval``: fine-tuning JSONL in, :class:`Example` objects out.

One ``{"messages": [...]}`` per line. The gold answer is the last message, which must be the
assistant's; the messages before it, minus system messages, are sent (the gateway applies each
variant's own prompt). Every invalid line is reported at once, as ``FILE:LINE: problem``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.tools.exit_codes import EXIT_USAGE, RejectedError

__all__ = ["DatasetError", "Example", "UnreadableFileError", "parse_example", "read_examples"]


class DatasetError(RejectedError):
    """The held-out file has invalid content (exit 1: data errors); ``problems`` holds one
    ``FILE:LINE: what`` per line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(
            f"{path}: invalid held-out file",
            "fix the lines named above (gateway dataset validate FILE checks the format)",
            problems=problems,
        )


class UnreadableFileError(DatasetError):
    """The held-out file does not exist or cannot be read (exit 2: a bad ``--data``)."""

    default_exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class Example:
    """One held-out example.

    Attributes:
        index: 0-based position among the file's non-blank lines (the resume key).
        messages: what is sent: the conversation before the gold answer, no system messages.
        gold: the expected answer (the last assistant message's content).
        example_hash: 16 hex digits of sha256 over messages and gold; a state record whose hash
            differs belongs to an edited example and is not reused.
    """

    index: int
    messages: tuple[dict[str, str], ...]
    gold: str
    example_hash: str


def parse_example(item: Any, index: int) -> Example:
    """One decoded JSONL line as an :class:`Example`.

    Raises:
        ValueError: not ``{"messages": [...]}``, a message without a string ``role`` and
            ``content``, a role other than system/user/assistant, the last message not an
            assistant's, or no user message before it. The message says what to fix.
    """
    messages = item.get("messages") if isinstance(item, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError('expected {"messages": [...]} with at least one message')
    clean: list[dict[str, str]] = []
    for position, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("system", "user", "assistant")
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f'messages[{position}]: expected {{"role": system|user|assistant, '
                '"content": string}'
            )
        clean.append({"role": message["role"], "content": message["content"]})
    if clean[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer (the gold)")
    gold = clean[-1]["content"]
    sent = tuple(m for m in clean[:-1] if m["role"] != "system")
    if not any(m["role"] == "user" for m in sent):
        raise ValueError("no user message before the gold answer")
    digest = hashlib.sha256(
        json.dumps({"messages": sent, "gold": gold}, sort_keys=True).encode()
    ).hexdigest()[:16]
    return Example(index=index, messages=sent, gold=gold, example_hash=digest)


def read_examples(path: Path) -> list[Example]:
    """Read a held-out JSONL file (blank lines skipped).

    Raises:
        UnreadableFileError: the file cannot be read.
        DatasetError: the file is not UTF-8, is empty, or has invalid lines (every invalid
            line is reported, as ``FILE:LINE: problem``).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        problem = f"{path}: cannot read the held-out file ({exc.strerror})"
        error = UnreadableFileError(path, [problem])
        error.hint = "give a readable file as --data"
        raise error from None
    except UnicodeDecodeError:
        raise DatasetError(path, [f"{path}: not UTF-8 text"]) from None
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            examples.append(parse_example(json.loads(line), len(examples)))
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: not valid JSON")
        except ValueError as exc:
            problems.append(f"{path}:{number}: {exc}")
    if problems:
        raise DatasetError(path, problems)
    if not examples:
        raise DatasetError(path, [f"{path}: no examples (one JSON object per line)"])
    return examples
