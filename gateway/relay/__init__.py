"""The relay: a request routed by route name, from the client's body to the upstream and back.

Modules, one job each: :mod:`~gateway.relay.body` (decoding and the fields routing needs),
:mod:`~gateway.relay.operation` (what differs between chat completions and responses),
:mod:`~gateway.relay.chat` (the chat completions operation), :mod:`~gateway.relay.attempts`
(the attempt-and-failover loop), :mod:`~gateway.relay.stream` (the stream state machines and
the loop that feeds them), :mod:`~gateway.relay.core` (one request, start to end) and
:mod:`~gateway.relay.reply` (what the HTTP layer sends). The decisions are the pure
functions of :mod:`gateway.routing.plan`.
"""

from __future__ import annotations

from gateway.relay.body import MAX_JSON_DEPTH, ChatHead, parse_chat_request
from gateway.relay.core import Relay
from gateway.relay.reply import CLIENT_CLOSED_REQUEST, CallContext, Headers, Reply, error_reply

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "MAX_JSON_DEPTH",
    "CallContext",
    "ChatHead",
    "Headers",
    "Relay",
    "Reply",
    "error_reply",
    "parse_chat_request",
]
