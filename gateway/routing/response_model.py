"""The ``model`` a client sees in an answer: the route's name instead of the upstream's id
(a route's ``response_model: route``, the default), spliced into the upstream's bytes (pure).

An upstream answers with the id of the model it ran (``ft:gpt-4o-mini:acme:triage:v3``), which
changes with the variant and names the fine-tuned model. With ``response_model: route`` the
gateway replaces the top-level ``model`` of a unary ``chat.completion`` and of every
``chat.completion.chunk`` event with the route name the client called (for the Responses API:
the ``model`` of the unary ``response`` object and of the ``response`` object inside stream
events, ``member="response"`` below). The rest of the answer
is relayed byte for byte: the value is found by a scan for the ``"model"`` key whose string
value is the decoded model (the relay decodes ``model`` with the fields it reads anyway) and
replaced in place, so a large answer is never re-encoded. Only a value the scan cannot match
(an escaped character in the id) falls back to decoding and re-encoding the object.
"""

from __future__ import annotations

import msgspec

__all__ = ["StreamModel", "encode_model", "replace_model", "replace_model_in_event"]

_KEY = b'"model"'
_SPACE = b" \t\r\n"
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def encode_model(name: str) -> bytes:
    """A model name as a JSON string (quotes included), to pass as ``model`` below."""
    return _encode(name)


def _splice(data: bytes, current: str, model: bytes) -> bytes | None:
    """``data`` with the ``"model": "<current>"`` member's value replaced by ``model``, or
    ``None`` when no such member is found as plain bytes."""
    wanted = current.encode()
    at = data.find(b'"model":"' + wanted + b'"')  # compact JSON, as most servers write it
    if at >= 0:
        return data[: at + 8] + model + data[at + 10 + len(wanted) :]
    at = data.find(_KEY)
    while at >= 0:
        i = at + len(_KEY)
        while i < len(data) and data[i] in _SPACE:
            i += 1
        if i < len(data) and data[i] == 0x3A:  # ':' : a key, not a string value "model"
            i += 1
            while i < len(data) and data[i] in _SPACE:
                i += 1
            end = i + 1 + len(wanted)
            if (
                data[i : i + 1] == b'"'
                and data[i + 1 : end] == wanted
                and data[end : end + 1] == b'"'
            ):
                return data[:i] + model + data[end + 1 :]
        at = data.find(_KEY, at + 1)
    return None


def replace_model(body: bytes, current: str | None, model: bytes) -> bytes:
    """A unary JSON answer ``body`` whose top-level ``model`` (decoded: ``current``; ``None``
    when it has none, returned unchanged) becomes ``model`` (from :func:`encode_model`)."""
    if current is None:
        return body
    spliced = _splice(body, current, model)
    if spliced is not None:
        return spliced
    value = _decode(body)
    if not isinstance(value, dict):
        return body
    value["model"] = _decode(model)
    return _encode(value)


def replace_model_in_event(
    event: bytes, data: bytes, current: str | None, model: bytes, member: str | None = None
) -> bytes:
    """One SSE ``event`` (without its blank line) whose JSON ``data`` has the top-level
    ``model`` ``current`` (with ``member``: ``data[member]`` has it): the same event with
    ``model`` in its place. The fallback (an id the scan cannot match) sends the re-encoded data
    as a single ``data:`` line, after the event's other lines (``event:``)."""
    if current is None:
        return event
    spliced = _splice(event, current, model)
    if spliced is not None:
        return spliced
    if member is None:
        return b"data: " + replace_model(data, current, model)
    value = _decode(data)
    inner = value.get(member) if isinstance(value, dict) else None
    if not isinstance(inner, dict):
        return event
    inner["model"] = _decode(model)
    head = b"".join(line + b"\n" for line in event.split(b"\n") if not line.startswith(b"data:"))
    return head + b"data: " + _encode(value)


class StreamModel:
    """:func:`replace_model_in_event` for the events of one stream, which all carry the same
    ``model``: the bytes searched for are built once, so an event costs one ``find`` and a
    splice."""

    __slots__ = ("_current", "_member", "_model", "_needle")

    def __init__(self, model: bytes, member: str | None = None) -> None:
        """``member``: the events carry ``model`` in that object (the Responses API's
        ``response``) rather than at their top level."""
        self._model = model
        self._member = member
        self._current: str | None = None
        self._needle = b""

    def event(self, event: bytes, data: bytes, current: str | None) -> bytes:
        """``event`` with ``model`` in place of its ``current`` one (see
        :func:`replace_model_in_event`)."""
        if current is None:
            return event
        if current != self._current:
            self._current = current
            self._needle = b'"model":' + _encode(current)
        at = event.find(self._needle)
        if at >= 0:
            return event[: at + 8] + self._model + event[at + len(self._needle) :]
        return replace_model_in_event(event, data, current, self._model, self._member)
