"""The bare pass-through proxy: the old stack without gateway logic (targets: bench/README.md).

The same stack as the gateway (Litestar on uvicorn with uvloop and httptools; httpx requests on
the httpx-aiohttp transport, sent the way gateway/upstream/client.py sends them: an
``httpx.Request`` with headers prepared once, straight to the transport) and nothing else: no
auth, no decoding, no routing, no telemetry. The body is forwarded unchanged; the upstream's body
is returned unchanged (streamed when the request asked for a stream).

    .venv/bin/python bench/bare_proxy.py --port 18090 --upstream http://127.0.0.1:18080/v1
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import uvicorn
from httpx_aiohttp import AiohttpTransport
from litestar import Litestar, Request, Response, post
from litestar.response import Stream


def create_app(upstream: str) -> Litestar:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    transport = AiohttpTransport(limits=limits)
    client = httpx.AsyncClient(
        transport=transport, headers={"content-type": "application/json"}, trust_env=False
    )
    url = httpx.URL(upstream.rstrip("/") + "/chat/completions")
    headers = list(client.headers.raw)
    timeout = httpx.Timeout(30.0, connect=5.0, pool=5.0).as_dict()

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
        body = await request.body()
        upstream_request = httpx.Request(
            "POST", url, content=body, headers=headers, extensions={"timeout": timeout}
        )
        response = await transport.handle_async_request(upstream_request)
        media_type = response.headers.get("content-type", "application/json")
        if b'"stream":true' in body or b'"stream": true' in body:

            async def relay() -> Any:
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                finally:
                    await response.aclose()

            return Stream(relay(), status_code=response.status_code, media_type=media_type)
        content = await response.aread()
        await response.aclose()
        return Response(content, status_code=response.status_code, media_type=media_type)

    async def close_client() -> None:
        await client.aclose()

    return Litestar(route_handlers=[chat], on_shutdown=[close_client], openapi_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
