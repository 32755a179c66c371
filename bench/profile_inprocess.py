"""Where the gateway's CPU per request goes, measured in one process without sockets (issue 11).

Each variant runs in a fresh child process: uvicorn's own HTTP protocol (httptools, on uvloop) is
fed raw HTTP/1.1 requests through an in-memory transport by 32 keep-alive "connections", and the
app's upstream calls go through a real ``aiohttp.ClientSession`` whose connector hands out
in-memory connections answering nginx's fixed chat completion at once (the next loop turn). So
every layer of the real request path runs: uvicorn, the ASGI app, the upstream client and its
HTTP parser; only the kernel's socket work is missing. Variants:

* ``floor``: bench/raw_floor.py's ASGI callable (aiohttp session); ``floor-litestar``: it behind
  Litestar's ``@asgi``; ``floor-httpx``: the raw floor sending as the gateway does (an
  ``httpx.Request`` straight to httpx-aiohttp's transport); ``bare``: bench/bare_proxy.py
  (Litestar ``@post`` + Request/Response + httpx-aiohttp);
* ``gateway``: ``create_app(settings, gc_tuning=True)`` as served, with bench/routes.yaml
  (route support-triage: 50/50 rollout, prompts, contract, guard, telemetry to a file,
  metrics); ``gateway-passthrough``: the pass-through model; ``gateway-gcdefault``: the gateway
  with Python's collector settings (no ``gc.freeze()``, threshold 700);
* ``null``: an ASGI app answering the same bytes without an upstream call (uvicorn + driver).

Then: the raw floor, the floor through httpx-aiohttp and the gateway under py-spy (1,000
samples/s, attached after warm-up), each sample charged to the innermost frame that names a
component (gateway function or library), scaled to the unprofiled CPU per request; and
micro-timings of the gateway's request-path functions and of
cheaper alternatives (prototypes, not changes to gateway/).

    .venv/bin/python -m bench.profile_inprocess            # ~6 minutes; writes
        bench/results/profile-inprocess.md and .json
    .venv/bin/python -m bench.profile_inprocess --quick    # ~1 minute, to check it works
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
UPSTREAM = "http://127.0.0.1:9"  # never connected: the connector below answers in memory
KEY = "sk-bench"
SPIED = ["floor", "floor-httpx", "bare", "gateway"]
"""Variants profiled with py-spy."""
VARIANTS = [
    "null",
    "floor",
    "floor-litestar",
    "floor-httpx",
    "bare",
    "gateway",
    "gateway-passthrough",
    "gateway-gcdefault",
]

# ---------------------------------------------------------------------------------------------
# the in-memory network


class MemoryTransport(asyncio.Transport):
    """A socket stand-in: ``write`` hands the bytes to ``on_write``."""

    def __init__(self, on_write: Callable[[bytes], None]) -> None:
        super().__init__()
        self._on_write = on_write
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._on_write(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self._on_write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False


def _complete(buffer: bytes) -> int:
    """Length of the first complete HTTP/1.1 message in ``buffer`` (0: not complete yet)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = buffer[:end].lower()
    start = end + 4
    at = head.find(b"content-length:")
    if at >= 0:
        length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        return start + length if len(buffer) >= start + length else 0
    if b"transfer-encoding: chunked" in head:
        stop = buffer.find(b"\r\n0\r\n\r\n", start - 2)
        return stop + 7 if stop >= 0 else 0
    return start


def _upstream_answers() -> tuple[bytes, list[bytes]]:
    """nginx's fixed completion; a 20-chunk SSE stream (chunked, one event per read)."""
    from bench.stack import COMPLETION  # noqa: PLC0415

    body = COMPLETION.encode()
    unary = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 30 Nov 2026 04:00:00 GMT\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: keep-alive\r\n\r\n" + body
    )
    events = [
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
        b'[{"index":0,"delta":{"content":"tok' + str(i).encode() + b' "},"finish_reason":null}]}'
        b"\n\n"
        for i in range(20)
    ]
    events.append(
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":42,"completion_tokens":20,"total_tokens":62}}\n\n'
    )
    events.append(b"data: [DONE]\n\n")
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    parts = [head + f"{len(events[0]):x}\r\n".encode() + events[0] + b"\r\n"]
    parts += [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events[1:]]
    parts.append(b"0\r\n\r\n")
    return unary, parts


class MemoryUpstream:
    """One upstream connection: answers each complete request on the next loop turn."""

    def __init__(self, protocol: Any, unary: bytes, stream: list[bytes]) -> None:
        self.protocol = protocol
        self.unary, self.stream = unary, stream
        self.buffer = b""
        self.loop = asyncio.get_running_loop()
        self.transport = MemoryTransport(self.on_write)

    def on_write(self, data: bytes) -> None:
        self.buffer += data
        while n := _complete(self.buffer):
            request, self.buffer = self.buffer[:n], self.buffer[n:]
            if b'"stream":true' in request or b'"stream": true' in request:
                for part in self.stream:  # one read per event, as from a real upstream
                    self.loop.call_soon(self._deliver, part)
            else:
                self.loop.call_soon(self._deliver, self.unary)

    def _deliver(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.protocol.data_received(data)


def memory_connector(limit: int = 512, keepalive: float = 30.0) -> Any:
    """An aiohttp connector whose connections are :class:`MemoryUpstream` objects."""
    import aiohttp  # noqa: PLC0415

    unary, stream = _upstream_answers()

    class MemoryConnector(aiohttp.BaseConnector):
        async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:  # noqa: ASYNC109 -- aiohttp's signature
            protocol = self._factory()
            protocol.connection_made(MemoryUpstream(protocol, unary, stream).transport)
            return protocol

    return MemoryConnector(limit=limit, keepalive_timeout=keepalive)


def patch_httpx_aiohttp() -> None:
    """httpx-aiohttp's transport (gateway, bare proxy) gets a session on the memory connector."""
    import aiohttp  # noqa: PLC0415
    from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

    def get_client(self: Any) -> Any:
        limits = self.limits
        return aiohttp.ClientSession(
            connector=memory_connector(limits.max_connections, limits.keepalive_expiry)
        )

    AiohttpTransport.get_client = get_client
    try:  # the gateway's own aiohttp transport (gateway/upstream/transport.py)
        from gateway.upstream.transport import AiohttpTransport as Ours  # noqa: PLC0415
    except ImportError:
        return
    Ours.connector_factory = staticmethod(memory_connector)  # type: ignore[assignment]


class Connection:
    """A client's keep-alive connection into uvicorn's HttpToolsProtocol."""

    def __init__(self, protocol: Any, request: bytes) -> None:
        self.protocol, self.request = protocol, request
        self.buffer = b""
        self.waiter: asyncio.Future[bytes] | None = None
        protocol.connection_made(MemoryTransport(self.on_write))
        self.statuses: Counter[int] = Counter()

    def on_write(self, data: bytes) -> None:
        self.buffer += data
        n = _complete(self.buffer)
        if n and self.waiter is not None and not self.waiter.done():
            response, self.buffer = self.buffer[:n], self.buffer[n:]
            self.waiter.set_result(response)

    async def run(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            self.waiter = loop.create_future()
            self.protocol.data_received(self.request)
            response = await self.waiter
            self.statuses[int(response[9:12])] += 1


# ---------------------------------------------------------------------------------------------
# the apps


def http_request(model: str, *, stream: bool) -> bytes:
    from bench.stack import chat_body  # noqa: PLC0415

    body = chat_body(model, stream=stream)
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def lifespan(app: Any) -> Callable[[], Any]:
    """Run the app's ASGI lifespan start-up; return the coroutine function that shuts it down."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    started: asyncio.Future[None] = loop.create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set_result(None)
        elif message["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(message.get("message")))

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, queue.get, send))
    await queue.put({"type": "lifespan.startup"})
    await started

    async def stop() -> None:  # best effort: the numbers are taken by then
        await queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(task, 2)
        except (TimeoutError, Exception) as exc:
            print(f"lifespan shutdown: {type(exc).__name__}", file=sys.stderr)

    return stop


def gateway_settings(work: Path) -> Any:
    from gateway.settings import Settings, UpstreamSettings  # noqa: PLC0415

    text = string.Template((BENCH / "routes.yaml").read_text()).substitute(
        instant=UPSTREAM, simulator=UPSTREAM, root=str(ROOT)
    )
    routes = work / "routes.yaml"
    routes.write_text(text)
    extra: dict[str, Any] = {}
    if os.environ.get("BENCH_GUARD_FLUSH_S"):  # the guard's exchange interval (default 20 ms)
        extra["guard_flush_s"] = float(os.environ["BENCH_GUARD_FLUSH_S"])
    return Settings(
        config=routes,
        client_keys={"bench": KEY},  # type: ignore[dict-item]
        flag_store=f"sqlite:///{work}/flags.db",
        log_level="info",
        upstream=UpstreamSettings(max_keepalive_connections=512),
        **extra,
    )


async def build_app(variant: str, work: Path) -> tuple[Any, Callable[[], Any] | None, Any]:
    """(ASGI app, shutdown, the gateway object or None)."""
    import aiohttp  # noqa: PLC0415

    patch_httpx_aiohttp()
    if variant == "null":
        unary, _ = _upstream_answers()
        body = unary.split(b"\r\n\r\n", 1)[1]
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

        async def null(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return null, None, None
    if variant.startswith("floor"):
        from bench.raw_floor import Floor, litestar_app  # noqa: PLC0415

        floor: Any = (
            HttpxFloor(UPSTREAM + "/v1") if variant == "floor-httpx" else Floor(UPSTREAM + "/v1")
        )
        if variant == "floor-httpx":
            await floor.start()
        else:
            floor.session = aiohttp.ClientSession(
                connector=memory_connector(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
            )
        return (litestar_app(floor) if variant == "floor-litestar" else floor), None, None
    if variant == "bare":
        from bench.bare_proxy import create_app as bare_app  # noqa: PLC0415

        app = bare_app(UPSTREAM + "/v1")
        return app, await lifespan(app), None
    import gateway.app as gateway_app  # noqa: PLC0415

    if os.environ.get("BENCH_GC_THRESHOLD"):  # measuring other thresholds
        threshold = tuple(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(","))
        gateway_app.GC_THRESHOLD = threshold  # type: ignore[assignment]
    # As served (app_from_environment): the collector tuned after start-up, unless measuring
    # the gateway without it (BENCH_GC_TUNING=0).
    tuning = os.environ.get("BENCH_GC_TUNING", "1") == "1" and variant != "gateway-gcdefault"
    app = gateway_app.create_app(gateway_settings(work), gc_tuning=tuning)
    return app, await lifespan(app), app.state.gateway


class HttpxFloor:
    """The raw floor, its upstream call made as gateway/upstream/client.py makes it."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"

    async def start(self) -> None:
        import httpx  # noqa: PLC0415
        from httpx_aiohttp import AiohttpTransport  # noqa: PLC0415

        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        self.transport = AiohttpTransport(limits=limits)
        client = httpx.AsyncClient(headers={"content-type": "application/json"})
        self.headers, self.xurl = list(client.headers.raw), httpx.URL(self.url)
        self.timeout = httpx.Timeout(30.0, connect=5.0, pool=5.0).as_dict()
        self.httpx = httpx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        request = self.httpx.Request(
            "POST",
            self.xurl,
            content=body,
            headers=[*self.headers, (b"x-request-id", b"req_1")],
            extensions={"timeout": self.timeout},
        )
        response = await self.transport.handle_async_request(request)
        data = await response.aread()
        await response.aclose()
        headers = [
            (b"content-type", response.headers.get("content-type", "").encode()),
            (b"content-length", str(len(data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def server_protocol(app: Any) -> Callable[[], Any]:
    """A factory of uvicorn HttpToolsProtocol objects for ``app``, configured as
    ``gateway serve`` configures uvicorn (proxy headers on, no access log)."""
    import uvicorn  # noqa: PLC0415
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    from uvicorn.server import ServerState  # noqa: PLC0415

    config = uvicorn.Config(
        app, http="httptools", lifespan="off", access_log=False, log_config=None
    )
    config.load()
    state = ServerState()
    state.default_headers = [
        (b"date", b"Mon, 30 Nov 2026 04:00:00 GMT"),
        *config.encoded_headers,
    ]
    return lambda: HttpToolsProtocol(config, state, {})


# ---------------------------------------------------------------------------------------------
# one variant in this process (the child)


def model_of(variant: str) -> str:
    if variant == "gateway-passthrough" or not variant.startswith("gateway"):
        return "bench-instant"
    return "support-triage"


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="profile-inprocess-"))
    app, stop, _ = await build_app(args.variant, work)
    make = server_protocol(app)
    model = model_of(args.variant)
    if args.stream:
        model = {"support-triage": "triage-stream20"}.get(model, "ft:bench-stream20")
    request = http_request(model, stream=args.stream)
    connections = [Connection(make(), request) for _ in range(args.connections)]

    async def drive(total: int) -> None:
        per = max(1, total // len(connections))
        await asyncio.gather(*(c.run(per) for c in connections))

    await drive(args.warmup)
    out: dict[str, Any] = {"variant": args.variant, "stream": args.stream}
    if args.spy:
        # The collector off while sampled: py-spy would show each collection inside whatever
        # frame's allocation triggered it. GC's own cost comes from gc.callbacks in the
        # unprofiled runs instead.
        gc.collect()
        gc.disable()
        spy = subprocess.Popen(  # noqa: ASYNC220 -- started once, not waited on in the loop
            [
                str(Path(PYTHON).parent / "py-spy"),
                *("record", "--pid", str(os.getpid()), "--rate", str(args.spy_rate)),
                *("--nonblocking", "--format", "raw", "--output", args.spy),
                *("--duration", str(args.spy_seconds)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        served = 0
        while spy.poll() is None:  # keep the gateway busy until py-spy is done
            await drive(1000)
            served += 1000
        out["requests_while_sampled"] = served
    else:
        before = sum((c.statuses for c in connections), Counter())
        pauses: list[float] = []
        collections: Counter[int] = Counter()
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":  # CPU time (not wall): other load on the machine stays out
                gc_started[0] = time.process_time()
            else:
                pauses.append(time.process_time() - gc_started[0])
                collections[info["generation"]] += 1

        gc.callbacks.append(on_gc)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await drive(args.requests)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.callbacks.remove(on_gc)
        n = (args.requests // len(connections)) * len(connections)
        after = sum((c.statuses for c in connections), Counter())
        out.update(
            requests=n,
            cpu_us_per_request=cpu / n * 1e6,
            wall_us_per_request=wall / n * 1e6,
            statuses={str(k): v - before.get(k, 0) for k, v in after.items()},
            gc_us_per_request=sum(pauses) / n * 1e6,
            gc_collections={str(k): v for k, v in sorted(collections.items())},
            gc_max_pause_ms=max(pauses, default=0.0) * 1000,
        )
    if stop is not None:
        await stop()
    return out


# ---------------------------------------------------------------------------------------------
# micro-timings of the gateway's request-path functions, and cheaper alternatives


def timed(fn: Callable[[], Any], number: int) -> float:
    """Median µs per call of ``fn`` over 5 rounds of ``number`` calls."""
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t0) / number * 1e6)
    return round(statistics.median(rounds), 2)


async def micro(args: argparse.Namespace) -> dict[str, Any]:
    import hashlib  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    import httpx  # noqa: PLC0415
    import msgspec  # noqa: PLC0415
    from litestar import Response  # noqa: PLC0415

    from bench.stack import COMPLETION, chat_body  # noqa: PLC0415
    from gateway.api.openai import new_request_id, to_response  # noqa: PLC0415
    from gateway.relay import CallContext, Reply, parse_chat_request  # noqa: PLC0415
    from gateway.routing.payload import build_payload  # noqa: PLC0415
    from gateway.telemetry import RequestRecord  # noqa: PLC0415
    from gateway.upstream import decode_completion  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="profile-micro-"))
    _, stop, gw = await build_app("gateway", work)
    n = args.micro_number
    relay = gw.relay
    route = gw.config.routes["support-triage"]
    ft, prompted = route.variants["finetuned"], route.variants["prompted"]
    raw = chat_body("support-triage")
    body, head = parse_chat_request(raw)
    completion = COMPLETION.encode()
    ctx = CallContext("req_0123456789abcdef", time.perf_counter(), key_name="bench")

    def record() -> Any:
        rec = RequestRecord("req_" + uuid.uuid4().hex, time.perf_counter(), client_key="bench")
        rec.route, rec.variant, rec.decision = route.name, ft.name, "rollout"
        rec.upstream, rec.upstream_model, rec.role = ft.upstream, ft.model, "candidate"
        rec.rollout_id = gw.latch.flag(route.name).rollout_id
        rec.input_tokens, rec.output_tokens, rec.cost_usd = 42, 1, 0.0000138
        rec.upstream_seconds = rec.attempt_seconds = 0.0002
        rec.completion = "billing"
        return rec

    rec = record()
    from gateway.routing import Decision  # noqa: PLC0415

    decision = Decision("candidate", "rollout")
    telemetry = gw.telemetry
    vm = gw.metrics.variants[(route.name, ft.name)]
    event = {
        "request_id": rec.request_id,
        "route": rec.route,
        "variant": rec.variant,
        "decision": rec.decision,
        "upstream": rec.upstream,
        "upstream_model": rec.upstream_model,
        "stream": False,
        "status": 200,
        "duration_ms": 0.512,
        "upstream_duration_ms": 0.2,
        "overhead_ms": 0.312,
        "ttft_ms": None,
        "input_tokens": 42,
        "output_tokens": 1,
        "cost_usd": 0.0000138,
        "client_key": "bench",
    }

    class Completed(msgspec.Struct, omit_defaults=False):
        request_id: str
        route: str | None
        variant: str | None
        decision: str | None
        upstream: str | None
        upstream_model: str | None
        stream: bool
        status: int
        duration_ms: float
        upstream_duration_ms: float
        overhead_ms: float
        ttft_ms: float | None
        input_tokens: int
        output_tokens: int
        cost_usd: float | None
        client_key: str | None
        event: str = "request.completed"
        level: str = "info"
        timestamp: str = ""

    encoder = msgspec.json.Encoder()
    out_file = sys.stdout.buffer  # redirected to the events file, as the gateway's
    buffer = bytearray()

    def msgspec_line() -> None:
        # one Struct, one encode into a reused buffer, one write; timestamp from a cached second
        line = Completed(**event, timestamp="2026-11-30T04:00:00.123456Z")
        encoder.encode_into(line, buffer)
        buffer.extend(b"\n")
        out_file.write(buffer)
        out_file.flush()

    def prometheus() -> None:
        gw.metrics.count_request(route.name, ft.name, "rollout", 200)
        vm.duration.observe(0.0005)
        vm.overhead.observe(0.0003)
        vm.upstream_duration.observe(0.0002)
        vm.input_tokens.inc(42)
        vm.output_tokens.inc(1)
        vm.cost.inc(0.0000138)

    import bisect  # noqa: PLC0415

    bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
    counts = [0] * (len(bounds) + 1)
    sums = [0.0]
    totals = [0, 0, 0.0]

    def plain_metrics() -> None:
        # what a lock-free, per-process accumulator exported at scrape time would cost
        for value in (0.0005, 0.0003, 0.0002):
            counts[bisect.bisect_left(bounds, value)] += 1
            sums[0] += value
        totals[0] += 42
        totals[1] += 1
        totals[2] += 0.0000138

    cache = {f"Bearer {KEY}": "bench"}
    digest = hashlib.sha256(KEY.encode()).digest()
    del digest
    reply = Reply(200, relay.headers(rec, ft, decision), completion)
    headers_raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(completion)).encode()),
    ]
    prefix_ft = msgspec.json.encode(
        {"model": ft.model, "messages": [{"role": "system", "content": ft.system_prompt}]}
    )[:-2]
    prefix_prompted = msgspec.json.encode(
        {
            "model": prompted.model,
            "messages": [{"role": "system", "content": prompted.system_prompt}, *prompted.few_shot],
        }
    )[:-2]
    client_messages = msgspec.json.encode(body["messages"])[1:-1]

    def spliced(prefix: bytes) -> bytes:
        # the variant's model + prompt pre-encoded once; the client's messages appended as they
        # came (re-encoded here: with msgspec.Raw slices they would be copied as bytes)
        return b"".join((prefix, b",", client_messages, b'],"temperature":0}'))

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    del request
    results = {
        "auth: KeyRing.authenticate (sha256 + compare_digest per key)": timed(
            lambda: gw.client_keys.authenticate(f"Bearer {KEY}"), n
        ),
        "  alt: dict of known header values -> key name": timed(
            lambda: cache.get(f"Bearer {KEY}"), n
        ),
        "request id: new_request_id (os.urandom)": timed(lambda: new_request_id(None), n),
        "  alt: os.urandom(12).hex()": timed(lambda: "req_" + os.urandom(12).hex(), n),
        "body parse: parse_chat_request (decode to dict + msgspec.convert)": timed(
            lambda: parse_chat_request(raw), n
        ),
        "  part: msgspec.json decode to dict only": timed(lambda: msgspec.json.decode(raw), n),
        "routing decision: Relay.plan (flag read, random bucket)": timed(
            lambda: relay.plan(route, head, ctx),
            n,
        ),
        "payload build: build_payload, candidate (short prompt)": timed(
            lambda: build_payload(route, ft, body, False), n
        ),
        "payload build: build_payload, fallback (2 KB prompt + 20 few-shot)": timed(
            lambda: build_payload(route, prompted, body, False), n
        ),
        "  alt: pre-encoded variant prefix + client messages, candidate": timed(
            lambda: spliced(prefix_ft), n
        ),
        "  alt: pre-encoded variant prefix + client messages, fallback": timed(
            lambda: spliced(prefix_prompted), n
        ),
        "response decode: decode_completion (typed view)": timed(
            lambda: decode_completion(completion), n
        ),
        "contract check: QualityMonitor.judge (labels)": timed(
            lambda: gw.quality.judge(route.name, ft.name, "billing"), n
        ),
        "guard accounting: QualityMonitor.settle (guard.observe + feedback memory)": timed(
            lambda: gw.quality.settle(record(), 0.0005), n
        ),
        "  part: building the RequestRecord used above": timed(record, n),
        "telemetry: Telemetry.finish (all of it)": timed(lambda: telemetry.finish(record()), n),
        "  part: structlog request.completed line, general logger (to a file)": timed(
            lambda: gw.logger.info("request.completed", **event), n
        ),
        "  part: the same line, the request-line logger (get_line_logger)": timed(
            lambda: telemetry._log.info("request.completed", **event), n
        ),
        "  alt: msgspec Struct line, encode_into a reused buffer, write": timed(msgspec_line, n),
        "  part: prometheus-client, the 7 updates of one request": timed(prometheus, n),
        "  alt: plain per-process accumulators (bisect), exported at scrape": timed(
            plain_metrics, n
        ),
        "response headers: Relay.headers (5 x-gateway-* headers)": timed(
            lambda: relay.headers(rec, ft, decision),
            n,
        ),
        "response building: to_response (Litestar Response object)": timed(
            lambda: to_response(reply), n
        ),
        "  alt: Litestar Response with raw content only": timed(
            lambda: Response(completion, media_type="application/json"), n
        ),
        "  alt: raw ASGI start message with a precomputed header list": timed(
            lambda: {
                "type": "http.response.start",
                "status": 200,
                "headers": [*headers_raw, (b"x-request-id", b"req_1")],
            },
            n,
        ),
    }
    if stop is not None:
        await stop()
    return {"micro_us": results, "number": n}


# ---------------------------------------------------------------------------------------------
# attributing py-spy samples to components

COMPONENTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # (component, function names, file fragments): the innermost frame of a sample that matches
    # both a name (empty: any) and a file fragment decides the component.
    ("auth", ("authenticate", "bearer_token", "_digest"), ("gateway/auth.py",)),
    ("request id", ("new_request_id",), ("gateway/api/openai.py",)),
    ("body parse", ("parse_chat_request", "decode_body", "to_head"), ("gateway/relay/",)),
    (
        "routing decision",
        ("plan", "plan_request", "candidate"),
        ("gateway/relay/core.py", "gateway/routing/plan.py"),
    ),
    ("routing decision", (), ("gateway/routing/decision.py", "gateway/routing/bucketing.py")),
    ("routing decision", (), ("gateway/quality/latch.py", "gateway/flags/service.py")),
    ("payload build (prompt applied, JSON encoded)", (), ("gateway/routing/",)),
    ("response decode", ("decode_completion", "_content"), ("gateway/",)),
    ("contract check", ("judge",), ("gateway/quality/monitor.py",)),
    ("contract check", (), ("gateway/quality/contract.py",)),
    ("guard + feedback accounting", ("settle", "count_failed_attempt"), ("gateway/quality/",)),
    ("guard + feedback accounting", (), ("gateway/quality/guard.py", "gateway/quality/feedback")),
    ("telemetry: structlog line", (), ("structlog/",)),
    ("telemetry: prometheus-client", (), ("prometheus_client/",)),
    ("telemetry: prometheus-client", ("count_request",), ("gateway/telemetry/metrics.py",)),
    ("telemetry: event dict, record", (), ("gateway/telemetry/",)),
    ("response headers (x-gateway-*)", ("headers", "overhead_seconds"), ("gateway/",)),
    ("response building (to_response)", ("to_response",), ("gateway/api/openai.py",)),
    ("upstream: aiohttp client", (), ("aiohttp/", "yarl/", "multidict/", "propcache/")),
    ("upstream: httpx-aiohttp + httpx objects", (), ("httpx_aiohttp/", "httpx/", "httpcore/")),
    ("upstream: gateway client code", (), ("gateway/upstream/",)),
    ("relay orchestration (rest of gateway/relay/)", (), ("gateway/relay/",)),
    ("handler (rest of chat_completions)", (), ("gateway/api/",)),
    ("guard runner, flag service (background)", (), ("gateway/",)),
    ("Litestar (routing, Request, Response, ASGI send)", (), ("litestar/",)),
    ("uvicorn + httptools (HTTP/1.1 server)", (), ("uvicorn/", "httptools/")),
    ("proxy app code (raw floor, bare proxy)", (), ("bench/raw_floor.py", "bench/bare_proxy.py")),
    ("proxy app code (raw floor, bare proxy)", ("__call__", "null"), ("profile_inprocess.py",)),
    # the loop's own C work (callbacks, task steps) shows as uvloop's run() frame
    ("event loop (uvloop: callbacks, task steps)", (), ("uvloop/",)),
    ("in-memory sockets of this profile (excluded)", (), ("bench/profile_inprocess.py",)),
    ("event loop, asyncio, other", (), ("",)),
]


EXCLUDED = "in-memory sockets of this profile (excluded)"
GC_ROW = "cyclic garbage collector"
IDLE = "idle pool threads waiting (excluded)"


def _frame(frame: str) -> tuple[str, str]:
    name, _, where = frame.partition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


def attribute(raw: Path) -> tuple[Counter[str], int]:
    """Samples per component (each sample to the innermost frame naming a component)."""
    found: Counter[str] = Counter()
    total = 0
    stdlib = ("/lib/python3.11/", "<frozen")
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [
            _frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        count = int(count_text)
        total += count
        chosen = None
        if frames[0][0].startswith("Thread._bootstrap"):  # a thread of a pool, not the loop's
            idle = frames[-1][0] == "_worker" or frames[-1][1].endswith(
                ("threading.py", "queue.py")
            )
            found[IDLE if idle else "other threads (SQLite flag store)"] += count
            continue
        for name, path in reversed(frames):
            if any(s in path for s in stdlib) and "site-packages" not in path:
                continue  # stdlib helpers count for whoever called them
            short = name.rsplit(".", 1)[-1]  # py-spy gives qualified names: KeyRing.authenticate
            for component, names, files in COMPONENTS[:-1]:
                if any(f in path for f in files) and (not names or short in names):
                    chosen = component
                    break
            if chosen:
                break
        found[chosen or COMPONENTS[-1][0]] += count
    return found, total


# ---------------------------------------------------------------------------------------------
# the parent: run the children, write the report


def child(args: list[str], timeout: float = 900) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        events = Path(tmp) / "events.jsonl"
        with events.open("wb") as out:  # the gateway's log lines go to a file, as in bench/run
            done = subprocess.run(
                [PYTHON, "-m", "bench.profile_inprocess", *args, "--result", str(result)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
                check=False,
            )
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"child {args} failed: {done.stderr[-3000:]}")
        data: dict[str, Any] = json.loads(result.read_text())
        return data


def log(message: str) -> None:
    print(f"[profile {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main_parent(args: argparse.Namespace) -> int:
    from bench.harness import loadavg, machine_info  # noqa: PLC0415

    requests, rounds = (6_000, 1) if args.quick else (30_000, 3)
    spy_seconds = 6 if args.quick else 20
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = loadavg()
    totals: dict[str, list[float]] = {v: [] for v in VARIANTS}
    gc_us: dict[str, list[float]] = {v: [] for v in VARIANTS}
    gc_runs: dict[str, list[dict[str, int]]] = {v: [] for v in VARIANTS}
    streams: dict[str, list[float]] = {v: [] for v in ("floor", "gateway")}
    base = ["worker", "--requests", str(requests), "--warmup", "3000", "--connections", "32"]
    for r in range(rounds):  # interleaved rounds, fresh process per measurement
        for variant in VARIANTS:
            got = child([*base, "--variant", variant])
            if set(got["statuses"]) != {"200"}:
                raise RuntimeError(f"{variant}: statuses {got['statuses']}")
            totals[variant].append(got["cpu_us_per_request"])
            gc_us[variant].append(got["gc_us_per_request"])
            gc_runs[variant].append(got["gc_collections"])
            log(f"round {r + 1}/{rounds} {variant}: {got['cpu_us_per_request']:.1f} µs CPU/request")
        for variant, runs in streams.items():
            got = child(
                [
                    *("worker", "--stream", "--requests", str(requests // 5), "--warmup", "500"),
                    *("--connections", "32", "--variant", variant),
                ]
            )
            runs.append(got["cpu_us_per_request"])
            log(f"round {r + 1}/{rounds} {variant} stream: {got['cpu_us_per_request']:.1f} µs")
    median = {v: round(statistics.median(x), 1) for v, x in totals.items()}
    stream_median = {v: round(statistics.median(x), 1) for v, x in streams.items()}
    spies: dict[str, Any] = {}
    for variant in SPIED:
        log(f"py-spy on {variant}")
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / f"{variant}.raw"
            spied = child(
                [*base, "--variant", variant, "--spy", str(raw), "--spy-seconds", str(spy_seconds)]
            )
            samples, total_samples = attribute(raw)
        spies[variant] = {
            "samples": total_samples,
            "by_component": dict(samples.most_common()),
            "requests_while_sampled": spied.get("requests_while_sampled"),
        }
    log("micro-timings")
    micro_result = child(["micro", "--micro-number", "2000" if args.quick else "20000"])
    result = {
        "command": "python -m bench.profile_inprocess" + (" --quick" if args.quick else ""),
        "started_at": started,
        "load_before": load_before,
        "load_after": loadavg(),
        "machine": machine_info(),
        "requests_per_measurement": requests,
        "rounds": rounds,
        "cpu_us_per_request": {v: {"median": median[v], "runs": totals[v]} for v in VARIANTS},
        "gc_us_per_request": {
            v: {
                "median": round(statistics.median(gc_us[v]), 1),
                "runs": gc_us[v],
                "collections": gc_runs[v],
            }
            for v in VARIANTS
        },
        "stream_cpu_us_per_stream": {
            v: {"median": stream_median[v], "runs": streams[v]} for v in streams
        },
        "py_spy": spies,
        **micro_result,
    }
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile-inprocess.json").write_text(json.dumps(result, indent=1))
    (out / "profile-inprocess.md").write_text(report(result))
    log(f"wrote {out / 'profile-inprocess.md'}")
    return 0


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    cpu = {v: x["median"] for v, x in r["cpu_us_per_request"].items()}
    lines = [
        "# In-process profile of the request path (bench/profile_inprocess.py)",
        "",
        f"Command: `{r['command']}`, {r['started_at']}; {r['rounds']} interleaved round(s) of "
        f"{r['requests_per_measurement']:,} requests per variant (after 3,000 warm-up), 32 "
        "keep-alive connections, a fresh process per measurement. Machine: "
        f"{m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}; "
        f"load average before {' '.join(map(str, r['load_before']))}, after "
        f"{' '.join(map(str, r['load_after']))}.",
        "",
        "No sockets: uvicorn's httptools protocol is fed HTTP/1.1 bytes through an in-memory "
        "transport, and the upstream is an aiohttp connector whose in-memory connections answer "
        "nginx's fixed completion on the next loop turn. CPU per request therefore excludes the "
        "kernel's socket work (about a third of a real server's CPU here) but includes every "
        "Python and C layer of the request path. Numbers are CPU µs per request "
        "(`time.process_time`), median of the rounds.",
        "",
        "## CPU per request by variant",
        "",
        "| variant | what | µs/request | vs floor | of which cyclic GC µs |",
        "| --- | --- | --: | --: | --: |",
    ]
    gcs = {v: x["median"] for v, x in r["gc_us_per_request"].items()}
    what = {
        "null": "uvicorn + an ASGI app answering fixed bytes, no upstream call (server + driver)",
        "floor": "bench/raw_floor.py: raw ASGI + one aiohttp session",
        "floor-litestar": "the raw floor behind Litestar's `@asgi`",
        "floor-httpx": "raw ASGI, upstream call as the gateway makes it (httpx-aiohttp)",
        "bare": "bench/bare_proxy.py: Litestar `@post` Request/Response + httpx-aiohttp",
        "gateway": "the gateway, route support-triage, every feature on",
        "gateway-passthrough": "the gateway, pass-through model",
        "gateway-gcdefault": "the gateway with Python's collector settings (no gc tuning)",
    }
    for v, us in cpu.items():
        ratio = cpu["floor"] / us if us else 0
        lines.append(f"| {v} | {what[v]} | {us:.1f} | {ratio:.2f}x | {gcs[v]:.1f} |")
    s = r["stream_cpu_us_per_stream"]
    lines += [
        "",
        f"Streams (20 content chunks + usage + [DONE], one read per event): raw floor "
        f"{s['floor']['median']:.0f} µs, gateway {s['gateway']['median']:.0f} µs CPU per stream "
        f"({s['floor']['median'] / s['gateway']['median']:.2f}x).",
        "",
        "Runs (µs/request): "
        + "; ".join(
            f"{v} {', '.join(f'{x:.1f}' for x in d['runs'])}"
            for v, d in r["cpu_us_per_request"].items()
        ),
    ]
    spies = r["py_spy"]
    per: dict[str, dict[str, float]] = {}  # variant -> component -> µs/request
    for variant, spy in spies.items():
        by = spy["by_component"]
        busy = spy["samples"] - by.get(IDLE, 0)
        base = cpu[variant] - gcs[variant]  # sampled with the collector off
        per[variant] = {k: v / busy * base for k, v in by.items() if k not in (IDLE,) and busy}
        per[variant][GC_ROW] = gcs[variant]
    gw_spy = spies["gateway"]
    lines += [
        "",
        "## CPU per request by component",
        "",
        f"py-spy (`--nonblocking`, 1,000 samples/s) on {', '.join(spies)} after warm-up (gateway: "
        f"{gw_spy['samples']:,} samples over {gw_spy['requests_while_sampled']:,} requests). Each "
        "sample is charged to the innermost frame that names a component (standard-library "
        "helpers count for their caller; pool threads waiting are dropped). The cyclic garbage "
        "collector is off while sampled (py-spy would charge each collection to the frame whose "
        "allocation triggered it), so the shares are scaled to the variant's unprofiled CPU per "
        "request minus its GC time, and GC is a row of its own (gc.callbacks in the unprofiled "
        "runs). The last row is this script's own in-memory sockets, i.e. what the totals above "
        "include beyond the request path.",
        "",
        "| component | " + " | ".join(f"{v} µs" for v in spies) + " | gateway share % |",
        "| --- |" + " --: |" * len(spies) + " --: |",
    ]
    order = [c for c in per["gateway"] if c != EXCLUDED] + [EXCLUDED]
    order.sort(key=lambda c: (c == EXCLUDED, -per["gateway"].get(c, 0.0)))
    for variant in spies:
        order += [c for c in per[variant] if c not in order]
    for component in order:
        cells = [f"{per[v].get(component, 0.0):.1f}" for v in spies]
        share = per["gateway"].get(component, 0.0) / cpu["gateway"] * 100
        lines.append(f"| {component} | " + " | ".join(cells) + f" | {share:.1f} |")
    lines += [
        "",
        "## Micro-timings (µs per call, no profiler) and cheaper alternatives",
        "",
        f"Each: median of 5 rounds of {r['number']:,} calls in a started gateway process "
        "(`alt:` lines are prototypes in this script, not changes to gateway/).",
        "",
        "| function | µs |",
        "| --- | --: |",
    ]
    for name, us in r["micro_us"].items():
        lines.append(f"| {name.replace('  ', '&nbsp;&nbsp;')} | {us} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.profile_inprocess", description=__doc__)
    parser.add_argument("mode", nargs="?", default="parent", choices=["parent", "worker", "micro"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--variant", default="gateway", choices=VARIANTS)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--spy", help="py-spy raw output path (worker)")
    parser.add_argument("--spy-seconds", type=int, default=20)
    parser.add_argument("--spy-rate", type=int, default=1000)
    parser.add_argument("--micro-number", type=int, default=20_000)
    parser.add_argument("--result", type=Path, help="where a child writes its JSON")
    args = parser.parse_args(argv)
    if args.mode == "parent":
        return main_parent(args)
    import uvloop  # noqa: PLC0415

    coro = worker(args) if args.mode == "worker" else micro(args)
    result = uvloop.run(coro)
    args.result.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
