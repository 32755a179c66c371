"""An answer as the contract judges it: its text, its tool calls, its refusal (pure, no I/O).

A chat completion's first choice (``choices[0]``) is the answer. Unary answers are read from
``message`` (:func:`answer_from_message`); streamed answers are assembled from the
``choices[0].delta`` of each chunk (:class:`AnswerAssembler`), as OpenAI's Chat Completions
API streams them: ``content`` and ``refusal`` arrive as consecutive pieces of text, and each
tool call arrives in pieces keyed by its ``index`` (the first piece carries ``id`` and
``function.name``, later ones only more ``function.arguments`` text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Answer", "AnswerAssembler", "ToolCall", "answer_from_message"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call of an answer: the function's ``name`` and its ``arguments``, the JSON
    text the model wrote (not parsed: a model may write invalid JSON, which the contract
    judges)."""

    name: str
    arguments: str


@dataclass(slots=True)
class Answer:
    """What a model answered: ``text`` (``message.content``; ``None`` when absent),
    ``tool_calls`` (in order) and ``refusal`` (``message.refusal``, OpenAI's structured-output
    refusal). Not frozen, to stay cheap on the request path (one is built per answer), but
    never changed once built."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None

    @property
    def has_text(self) -> bool:
        """Whether the answer has visible text (whitespace alone is none)."""
        return bool(self.text and not self.text.isspace())


class _Function(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def arguments(self) -> str | None: ...


class _ToolCallPart(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def function(self) -> _Function | None: ...


class _Message(Protocol):
    @property
    def content(self) -> str | None: ...
    @property
    def tool_calls(self) -> Sequence[_ToolCallPart] | None: ...
    @property
    def refusal(self) -> str | None: ...


def answer_from_message(message: _Message | None) -> Answer | None:
    """The answer in a unary ``choices[0].message`` (``None`` when there is no message).

    A tool call without ``function`` (another tool type) is kept with an empty name and
    arguments, so a contract that lists allowed functions rejects it.
    """
    if message is None:
        return None
    calls: tuple[ToolCall, ...] = ()
    if message.tool_calls:
        calls = tuple(
            ToolCall(
                (call.function.name or "") if call.function else "",
                (call.function.arguments or "") if call.function else "",
            )
            for call in message.tool_calls
        )
    return Answer(message.content, calls, message.refusal)


class AnswerAssembler:
    """Assembles a streamed answer from the deltas of ``choices[0]``.

    ``text`` and ``refusal`` pieces are joined in order. Tool call pieces are grouped by
    ``index`` (calls are returned in index order): the first non-empty ``function.name`` names
    the call and ``function.arguments`` pieces are concatenated, so arguments split anywhere,
    even inside a multi-byte character's JSON escape, come out whole.
    """

    __slots__ = ("_calls", "_refusal", "_text")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, tuple[list[str], list[str]]] = {}

    def text(self, piece: str) -> None:
        """A ``delta.content`` piece."""
        self._text.append(piece)

    def refusal(self, piece: str) -> None:
        """A ``delta.refusal`` piece."""
        self._refusal.append(piece)

    def tool_calls(self, parts: Sequence[_ToolCallPart]) -> None:
        """The ``delta.tool_calls`` of one chunk."""
        calls = self._calls
        for part in parts:
            entry = calls.get(part.index)
            if entry is None:
                entry = calls[part.index] = ([], [])
            function = part.function
            if function is None:
                continue
            if function.name and not entry[0]:
                entry[0].append(function.name)
            if function.arguments:
                entry[1].append(function.arguments)

    @property
    def text_so_far(self) -> str:
        """The text assembled so far."""
        return "".join(self._text)

    def answer(self) -> Answer:
        """The answer assembled so far. Text is ``None`` when no content piece arrived and
        there are tool calls or a refusal (the unary form of such an answer has
        ``content: null``); otherwise it is the joined text, possibly empty."""
        calls = tuple(
            ToolCall("".join(name), "".join(arguments))
            for _, (name, arguments) in sorted(self._calls.items())
        )
        refusal = "".join(self._refusal) if self._refusal else None
        text: str | None = "".join(self._text)
        if not text and (calls or refusal is not None):
            text = None
        return Answer(text, calls, refusal)
