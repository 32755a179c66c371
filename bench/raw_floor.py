"""The raw floor (issue 11): the least a Python proxy on this stack costs per request.

A bare ASGI callable on uvicorn (uvloop, httptools) forwarding the request body on one pooled
``aiohttp.ClientSession`` (TCPConnector limit 512, as the gateway's upstream pool, and 30 s
keep-alive: under load no connection is idle) and relaying the answer: chunk by chunk when the
body asks for a stream, read in full otherwise. ``--litestar`` puts the same callable behind
Litestar's ``@asgi`` handler; ``from_environment`` serves it on another server
(bench/stack.py: granian).

    .venv/bin/python bench/raw_floor.py --port 18091 --upstream http://127.0.0.1:18080/v1
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

HEADERS = {"content-type": "application/json"}


class Floor:
    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"
        self.session: Any = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=30.0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def stop(self) -> None:
        await self.session.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await self.start()
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await self.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":  # bench/stack.py waits for this 405
            await send({"type": "http.response.start", "status": 405, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        stream = b'"stream":true' in body or b'"stream": true' in body
        async with self.session.post(self.url, data=body, headers=HEADERS) as resp:
            headers = [(b"content-type", resp.headers.get("content-type", "").encode())]
            if stream:
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers}
                )
                async for chunk in resp.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            data = await resp.read()
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def from_environment() -> Floor:
    """Factory for other servers (``granian --factory bench.raw_floor:from_environment``)."""
    import os  # noqa: PLC0415

    return Floor(os.environ["BENCH_FLOOR_UPSTREAM"])


def litestar_app(floor: Floor) -> Any:
    from litestar import Litestar, asgi  # noqa: PLC0415

    @asgi("/v1/chat/completions", copy_scope=False)
    async def chat(scope: Any, receive: Any, send: Any) -> None:
        await floor(scope, receive, send)

    return Litestar([chat], on_startup=[floor.start], on_shutdown=[floor.stop], openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--litestar", action="store_true", help="behind Litestar's @asgi")
    args = parser.parse_args()
    floor = Floor(args.upstream)
    app = litestar_app(floor) if args.litestar else floor
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="on")  # fmt: skip


if __name__ == "__main__":
    main()
