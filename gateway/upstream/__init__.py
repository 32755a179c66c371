"""Talking to upstreams: the transports, the pooled client, exception translation and the SSE
relay parser."""

from __future__ import annotations

from gateway.upstream.client import UpstreamAnswer, UpstreamClient, UpstreamPool
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.sse import (
    ChunkView,
    CompletionView,
    SSEDecoder,
    decode_chunk,
    decode_completion,
    sse_error_event,
)
from gateway.upstream.transport import (
    AiohttpTransport,
    HttpxTransport,
    Transport,
    TransportError,
    TransportResponse,
)

__all__ = [
    "AiohttpTransport",
    "ChunkView",
    "CompletionView",
    "HttpxTransport",
    "SSEDecoder",
    "Transport",
    "TransportError",
    "TransportResponse",
    "UpstreamAnswer",
    "UpstreamClient",
    "UpstreamPool",
    "decode_chunk",
    "decode_completion",
    "sse_error_event",
    "translate_transport_error",
]
