"""The stream relay in process: event size cap, and what happens before the 200 is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.inprocess import ScriptedStream, in_process_gateway, sse

STREAM: dict[str, Any] = {"stream": True}


def error_events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.split("\n"):
        if line.startswith("data: {"):
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                out.append(event["error"])
    return out


async def test_an_event_over_the_size_cap_ends_the_stream_with_an_error_and_closes_upstream(
    tmp_path: Path,
) -> None:
    """An event larger than GATEWAY_UPSTREAM__MAX_EVENT_BYTES (here 4 KiB) is never buffered
    whole: the client gets the events before it and an error event, the upstream stream is
    closed without being read to its end, and the event is counted per upstream."""
    big = [b"data: {" + b"x" * 1024] + [b"y" * 1024] * 100
    body = ScriptedStream([sse("bill", done=False), *big, b"\n\n", sse("ing")])

    async def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    async with in_process_gateway(
        tmp_path, upstream, upstream_settings={"max_event_bytes": 4096}
    ) as g:
        response = await g.chat(STREAM)
        assert response.status_code == 200
        assert '"bill"' in response.text
        assert [e["code"] for e in error_events(response.text)] == ["upstream_event_too_large"]
        assert "[DONE]" not in response.text
        assert body.closed
        assert body.read < len(body.chunks) // 2
        assert g.metric("gateway_upstream_events_too_large_total", upstream="up") == 1
        assert g.metric("gateway_requests_total", status="502") == 1
