"""Talking to upstreams: the pooled client, exception translation and the SSE relay parser."""

from __future__ import annotations

from gateway.upstream.client import UpstreamClient, UpstreamPool
from gateway.upstream.errors import translate_transport_error
from gateway.upstream.sse import (
    ChunkView,
    CompletionView,
    SSEDecoder,
    decode_chunk,
    decode_completion,
    sse_error_event,
)

__all__ = [
    "ChunkView",
    "CompletionView",
    "SSEDecoder",
    "UpstreamClient",
    "UpstreamPool",
    "decode_chunk",
    "decode_completion",
    "sse_error_event",
    "translate_transport_error",
]
