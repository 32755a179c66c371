"""Request bodies: one JSON decode with a depth limit, then just the fields routing needs.

Every operation decodes its body once into a dict (forwarded, with the variant's changes, to
the upstream) and converts it to a small typed head (the fields routing reads). Everything
else the client sent is forwarded untouched.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gateway.errors import InvalidRequestError

__all__ = [
    "MAX_JSON_DEPTH",
    "ChatHead",
    "decode_body",
    "parse_chat_request",
    "peek_chat_head",
    "to_head",
]

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects accepted in a request body. Deeper bodies are a 400:
nothing in the Chat Completions or Responses API nests this deep (a tool's JSON schema rarely
passes 20), and Python-level recursion (decoding, encoding, logging) must stay far from its
limit."""

H = TypeVar("H")


class _Message(msgspec.Struct):
    role: str


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatHead(msgspec.Struct):
    """The chat completion request fields routing needs; everything else is forwarded."""

    model: str
    messages: list[_Message]
    stream: bool = False
    user: str | None = None
    stream_options: _StreamOptions | None = None

    @property
    def wants_usage(self) -> bool:
        """Whether the client asked for the usage chunk (``stream_options.include_usage``)."""
        return self.stream_options is not None and self.stream_options.include_usage


_decode_json = msgspec.json.Decoder().decode


def decode_body(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object.

    Raises:
        InvalidRequestError: not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, or not an
            object.
    """
    try:
        body = _decode_json(raw)
    except msgspec.DecodeError:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    except RecursionError:  # msgspec stops at Python's recursion limit (~1,000 levels)
        raise _too_deep() from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _nested_deeper(body, MAX_JSON_DEPTH):
        raise _too_deep()
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return body


def to_head(body: dict[str, Any], head_type: type[H]) -> H:
    """Convert a decoded body to its typed head. Raises InvalidRequestError (400) whose
    ``param`` names the top-level field that is missing or of the wrong type."""
    try:
        return msgspec.convert(body, head_type)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = None
        if "`$." in text:
            param = text.rsplit("`$.", 1)[1].rstrip("`").split("[", 1)[0].split(".", 1)[0]
        elif "missing required field `" in text:  # top level: msgspec gives no `$.` path
            param = text.split("missing required field `", 1)[1].split("`", 1)[0]
        raise InvalidRequestError(f"Invalid request: {text}", param=param) from None


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatHead]:
    """Decode a chat completion request body.

    Returns:
        The whole body as a dict (forwarded) and its validated head.

    Raises:
        InvalidRequestError: not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, not an
            object, a required field missing, a wrong type, or an empty ``messages`` list;
            ``param`` names the field.
    """
    body = decode_body(raw)
    head = to_head(body, ChatHead)
    if not head.messages:
        raise InvalidRequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
        )
    return body, head


_decode_chat_head = msgspec.json.Decoder(ChatHead).decode


def peek_chat_head(raw: bytes) -> ChatHead | None:
    """A chat body's head decoded straight from its bytes, or ``None`` if the body is not
    one :func:`parse_chat_request` would accept as is (bad JSON or a bad field: the caller
    lets it raise its error). The depth limit is the caller's to check. Decodes no
    message content: a fifth of :func:`parse_chat_request`'s cost."""
    try:
        head = _decode_chat_head(raw)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    return head if head.messages else None


def _too_deep() -> InvalidRequestError:
    return InvalidRequestError(
        f"The JSON body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and "
        "objects are accepted."
    )


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels (iterative: a deep
    value cannot exhaust the stack). Called only when the body has more brackets than
    ``limit``, so ordinary requests never pay for the walk."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
