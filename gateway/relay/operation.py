"""What differs between the operations the relay routes (chat completions, responses): one
:class:`Operation` object each; planning, attempts, failover, contracts and telemetry are
shared.

An operation says how to read the client's body (:meth:`Operation.parse`), how to build the
upstream's body for a variant (:meth:`Operation.payload`, the one place a payload is built),
how to read a unary answer (:meth:`Operation.answer`) and how to follow a stream
(:meth:`Operation.stream`, a :class:`~gateway.relay.stream.StreamMachine`). Shadow calls
(:mod:`gateway.quality.shadow`) need only :meth:`Operation.offers` (may the
candidate's upstream be asked), :meth:`Operation.payload` (non-streaming) and
:meth:`Operation.answer` (the answer the contract judges and compares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.config import Route, Variant
from gateway.errors import GatewayError
from gateway.quality.answer import Answer as Judged
from gateway.routing.payload import Payload

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.relay.stream import StreamMachine
    from gateway.telemetry import RequestRecord
    from gateway.upstream.redact import Redactor

__all__ = ["Answer", "Head", "Operation"]


@dataclass(slots=True)
class Answer:
    """An upstream's unary answer as the relay judges and accounts it.

    ``content`` is the upstream's body (relayed unchanged but for its ``model``, see
    ``model``); ``text`` the answer's text (``None``: none); ``input_tokens``/``output_tokens``
    the usage it reported (``None``: it reported none); ``view`` the operation's decoded view
    of the body; ``judged`` the answer as the contract judges it, with its tool calls
    (``None``: judge ``text``); ``model`` the upstream's top-level ``model`` as decoded
    (``None``: unknown; the route's ``response_model: route`` replaces it in ``content``).
    """

    content: bytes
    text: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    view: Any = None
    judged: Judged | None = None
    model: str | None = None


class Head(Protocol):
    """The typed fields of a request body that routing reads."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def user(self) -> str | None: ...

    @property
    def wants_usage(self) -> bool: ...


class Operation(Protocol):
    """One OpenAI operation the relay routes by route name."""

    name: str
    """``RequestRecord.operation``: ``chat`` or ``responses``."""
    path: str
    """The endpoint under an upstream's ``base_url``, e.g. ``/chat/completions``."""
    prompt_field: str
    """The body field logged as the prompt when payload logging is on."""

    def parse(self, raw: bytes) -> tuple[dict[str, Any], Head]:
        """The decoded body and its head. Raises InvalidRequestError (400)."""
        ...

    def offers(self, variant: Variant) -> bool:
        """Whether ``variant``'s upstream offers this operation (a shadow call to a variant
        that does not is skipped; a served request gets :meth:`payload`'s 400)."""
        ...

    def check_first(self, data: bytes, upstream: str) -> None:
        """Judge a stream's first data event before the client gets its 200. Raises
        UpstreamProtocolError (the stream fails over like an invalid unary answer)."""
        ...

    def payload(
        self, route: Route, variant: Variant, body: dict[str, Any], stream: bool
    ) -> bytes | Payload:
        """The JSON body to POST to ``variant``'s upstream, alone or with the client's fields
        it changed (:data:`~gateway.routing.payload.Payload`, for ``x-gateway-overridden``)."""
        ...

    def answer(self, content: bytes) -> Answer:
        """Read a unary answer. Raises ``msgspec.DecodeError`` on a body that is not one."""
        ...

    def explain(self, exc: GatewayError) -> GatewayError:
        """The error the client gets for ``exc`` (an operation may say more about it)."""
        ...

    def stream(
        self,
        rec: RequestRecord,
        variant: Variant,
        head: Head,
        redactor: Redactor,
        clock: Callable[[], float],
    ) -> StreamMachine:
        """A fresh state machine for one stream of ``variant``."""
        ...
