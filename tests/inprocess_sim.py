"""The simulator app as an in-process upstream, and a gateway plus simulator without sockets.

For end-to-end tests that need no real TCP: the gateway (``tests.inprocess.in_process_gateway``)
and the simulator (``create_simulator_app``) both run as ASGI apps in one event loop. The loop
runs in a background thread (:class:`LoopThread`), so a test stays synchronous, like the
process-based tests: it talks to the gateway with a sync ``httpx.Client`` or the sync ``openai``
SDK, polls with ``time.sleep``, and reads the gateway's JSON log lines from a file.

:class:`AsgiStreamTransport` calls an ASGI app like a server would, which ``httpx.ASGITransport``
does not: the response comes back as soon as its head is sent and its body streams chunk by
chunk; ``http.disconnect`` is delivered when the client closes the response early (or once it
is complete); the read timeout of ``request.extensions`` is enforced (``httpx.ReadTimeout``) for
the head and between body chunks; an app that fails in the middle of a body (the simulator's
``cut_stream_after``) cuts the stream with ``httpx.RemoteProtocolError``, as a dropped connection.

Only the public signature of :func:`tests.inprocess.in_process_gateway` is relied on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import itertools
import json
import sys
import threading
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    MutableMapping,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote

import httpx
import openai
import uvicorn
import yaml

import gateway.app
import gateway.telemetry
from gateway.tools.simulator import SimulatorConfig, create_simulator_app
from tests.inprocess import in_process_gateway
from tests.processes import ADMIN_KEY, CLIENT_KEY, EVAL_KEY, read_log_events

__all__ = [
    "REAL_TRANSPORT",
    "AsgiStreamTransport",
    "CrossLoopTransport",
    "HeldTransport",
    "InProcessGatewayUnderTest",
    "InProcessSimulator",
    "LoopThread",
    "RefusingTransport",
    "SwitchableTransport",
    "SyncBridgeTransport",
    "serve_on_port",
    "start_in_process",
]

T = TypeVar("T")
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

SIM_URL = "http://sim.test"
_numbers = itertools.count(1)

REAL_TRANSPORT = object()
"""In ``start_in_process(upstreams=...)``: keep this upstream's real transport (real TCP)."""
LOOP_CALL_TIMEOUT_S = 120.0
"""Bound on any one call into the loop thread from a test (generous: it is a hang detector)."""

_END = object()


class _Cut(Exception):
    """The app failed after its response head: the body is cut like a dropped connection."""


# --- calling an ASGI app like a server -------------------------------------------------------


class _AsgiBody(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange, read_timeout: float | None) -> None:
        self._exchange = exchange
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        queue = self._exchange.body
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self._read_timeout)
            except TimeoutError:
                self._exchange.hang_up()
                raise httpx.ReadTimeout("timed out reading the response body") from None
            if item is _END:
                return
            if isinstance(item, BaseException):
                self._exchange.hang_up()
                raise httpx.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                ) from item
            assert isinstance(item, bytes)
            yield item

    async def aclose(self) -> None:
        self._exchange.hang_up()


@dataclass
class _Exchange:
    """One request to the app: what it sent so far, and whether the client hung up."""

    head: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]]
    body: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    complete: bool = False

    def hang_up(self) -> None:
        self.gone.set()


class AsgiStreamTransport(httpx.AsyncBaseTransport):
    """An httpx transport that serves each request with an ASGI ``app``, streaming (see the
    module docstring). Must be used from the event loop the app should run in."""

    def __init__(self, app: Any, client: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.app: ASGIApp = app
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_body = await request.aread()
        timeouts = request.extensions.get("timeout", {})
        read_timeout: float | None = timeouts.get("read")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": unquote(request.url.path),
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port or 80),
            "client": self.client,
            "root_path": "",
            "state": {},
        }
        exchange = _Exchange(head=asyncio.get_running_loop().create_future())
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            await exchange.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if exchange.gone.is_set():
                return  # like a server whose client left: the app's output goes nowhere
            if message["type"] == "http.response.start":
                if not exchange.head.done():
                    headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                    exchange.head.set_result((int(message["status"]), headers))
            elif message["type"] == "http.response.body":
                body = bytes(message.get("body", b""))
                if body and request.method != "HEAD":
                    exchange.body.put_nowait(body)
                if not message.get("more_body", False):
                    exchange.complete = True
                    exchange.body.put_nowait(_END)
                    exchange.gone.set()  # the response is complete: disconnect follows

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                if not exchange.head.done():
                    exchange.head.set_exception(_Cut(repr(exc)))
                elif not exchange.complete:
                    exchange.body.put_nowait(exc)
            else:
                if not exchange.head.done():
                    exchange.head.set_exception(_Cut("the app sent no response"))
                elif not exchange.complete:
                    exchange.body.put_nowait(_Cut("the app ended before its body"))

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            status, headers = await asyncio.wait_for(asyncio.shield(exchange.head), read_timeout)
        except TimeoutError:
            exchange.hang_up()
            raise httpx.ReadTimeout("timed out waiting for the response head") from None
        except _Cut:
            # What a server does when the app fails before its head: a bare 500.
            return httpx.Response(500, content=b"Internal Server Error")
        except asyncio.CancelledError:
            exchange.hang_up()
            raise
        return httpx.Response(
            status, headers=headers, stream=_AsgiBody(exchange, read_timeout), request=request
        )

    async def aclose(self) -> None:
        """Cancel what the app still runs for requests whose clients left."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)


class RefusingTransport(httpx.AsyncBaseTransport):
    """An upstream nobody listens on: every request is a refused connection."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


class SwitchableTransport(httpx.AsyncBaseTransport):
    """Forwards to ``target``, which a test may change (an upstream going away, coming back)."""

    def __init__(self, target: httpx.AsyncBaseTransport) -> None:
        self.target = target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.target.handle_async_request(request)

    async def aclose(self) -> None:
        await self.target.aclose()


class HeldTransport(httpx.AsyncBaseTransport):
    """Forwards to ``target``, but requests for which ``hold(request)`` is true wait until
    :meth:`release` is called (in the loop: ``loop.call_soon_threadsafe(t.release)``)."""

    def __init__(
        self, target: httpx.AsyncBaseTransport, hold: Callable[[httpx.Request], bool]
    ) -> None:
        self.target = target
        self.hold = hold
        self._released: asyncio.Event | None = None

    def release(self) -> None:
        self._event().set()

    def _event(self) -> asyncio.Event:
        if self._released is None:
            self._released = asyncio.Event()
        return self._released

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self.hold(request):
            await self._event().wait()
        return await self.target.handle_async_request(request)

    async def aclose(self) -> None:
        await self.target.aclose()


# --- a loop in a background thread, and sync clients into it ---------------------------------


class LoopThread:
    """An asyncio loop running in a daemon thread; tests submit coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="inprocess-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = LOOP_CALL_TIMEOUT_S) -> T:
        """Run ``coro`` in the loop and wait for its result (at most ``timeout`` seconds)."""
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.loop.close()


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, loop: LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    def __iter__(self) -> Iterator[bytes]:
        chunks = self._stream.__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                return None

        while (chunk := self._loop.run(next_chunk())) is not None:
            yield chunk

    def close(self) -> None:
        self._loop.run(self._stream.aclose())


class SyncBridgeTransport(httpx.BaseTransport):
    """A sync httpx transport whose requests are served by an async transport in ``loop``.

    The async transport is created in the loop (by ``factory``) on first use."""

    def __init__(self, loop: LoopThread, factory: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._loop = loop
        self._factory = factory
        self._transport: httpx.AsyncBaseTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def call() -> httpx.Response:
            if self._transport is None:
                self._transport = self._factory()
            forwarded = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=content,
                extensions=request.extensions,
            )
            return await self._transport.handle_async_request(forwarded)

        response = self._loop.run(call())
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_SyncBody(response.stream, self._loop),
            extensions=response.extensions,
        )

    def close(self) -> None:
        if self._transport is not None:
            self._loop.run(self._transport.aclose())
            self._transport = None


class _CrossLoopBody(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, loop: LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return await chunks.__anext__()
            except StopAsyncIteration:
                return None

        while (chunk := await asyncio.wrap_future(self._loop.submit(next_chunk()))) is not None:
            yield chunk

    async def aclose(self) -> None:
        await asyncio.wrap_future(self._loop.submit(self._stream.aclose()))


class CrossLoopTransport(httpx.AsyncBaseTransport):
    """An async httpx transport for a caller in another event loop (e.g. a CLI's own
    ``asyncio.run``): requests are served by an async transport running in ``loop``, made
    there by ``factory`` on first use. Cancelling the caller cancels the call in ``loop``."""

    def __init__(self, loop: LoopThread, factory: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._loop = loop
        self._factory = factory
        self._transport: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()

        async def call() -> httpx.Response:
            if self._transport is None:
                self._transport = self._factory()
            forwarded = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=content,
                extensions=request.extensions,
            )
            return await self._transport.handle_async_request(forwarded)

        response = await asyncio.wrap_future(self._loop.submit(call()))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CrossLoopBody(response.stream, self._loop),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        if self._transport is not None:
            await asyncio.wrap_future(self._loop.submit(self._transport.aclose()))
            self._transport = None


# --- the simulator in-process ------------------------------------------------------------------


class _TextTo(io.TextIOBase):
    """A text stream onto a binary file, with the file as ``buffer`` (a stand-in stdout)."""

    def __init__(self, file: BinaryIO) -> None:
        self.buffer = file

    def write(self, text: str) -> int:
        self.buffer.write(text.encode())
        return len(text)

    def flush(self) -> None:
        self.buffer.flush()


class InProcessSimulator:
    """The simulator app served in ``loop``, with ``SimulatorProcess``'s control methods (over
    its own control API, through the in-process bridge). Upstreams reach it at ``SIM_URL``."""

    url = SIM_URL

    def __init__(self, loop: LoopThread, config: SimulatorConfig | None = None) -> None:
        self.loop = loop
        self.app = create_simulator_app(config or SimulatorConfig())
        self.http = httpx.Client(
            transport=SyncBridgeTransport(loop, self.transport), base_url=SIM_URL, timeout=30
        )

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def transport(self) -> AsgiStreamTransport:
        """A new async transport to this simulator (create it in the loop thread)."""
        return AsgiStreamTransport(self.app)

    def sync_transport(self) -> SyncBridgeTransport:
        """A new sync transport to this simulator, for a client made elsewhere."""
        return SyncBridgeTransport(self.loop, self.transport)

    def openai(self, api_key: str = "sk-simulator", **options: Any) -> openai.OpenAI:
        """The official sync SDK client, bound to this simulator in-process (no retries)."""
        options.setdefault("max_retries", 0)
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            http_client=httpx.Client(transport=self.sync_transport(), timeout=30),  # type: ignore[arg-type]
            **options,
        )

    def set_behaviour(self, model: str, **behaviour: Any) -> None:
        self.http.put(f"/_simulator/models/{model}", json=behaviour).raise_for_status()

    def reset(self) -> None:
        for model in list(self.behaviours()):
            self.http.delete(f"/_simulator/models/{model}").raise_for_status()
        self.http.post("/_simulator/stats/reset").raise_for_status()

    def behaviours(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/_simulator/models").json()
        models: dict[str, Any] = data.get("models", data)
        return models

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.http.get("/_simulator/stats").json()
        return result

    def close(self) -> None:
        self.http.close()


# --- a gateway in-process against it -----------------------------------------------------------


@dataclass
class InProcessGatewayUnderTest:
    """A gateway app served in a loop thread; the sync face of ``GatewayProcess``.

    ``http`` is a sync client bound to the app (``base_url`` is the gateway's root); ``ipg``
    is the harness' ``InProcessGateway`` (use it only from the loop, e.g. ``loop.run``)."""

    ipg: Any
    loop: LoopThread
    http: httpx.Client
    log_path: Path
    url: str
    config_path: Path
    """The routes file it serves."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (optionally only those with ``event``)."""
        return read_log_events(self.log_path, event)

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def openai(self, api_key: str = CLIENT_KEY, **options: Any) -> openai.OpenAI:
        """The official sync SDK client, bound to this gateway in-process (no retries)."""
        client = httpx.Client(transport=self.transport(), timeout=30)
        options.setdefault("max_retries", 0)
        # openai types http_client as an httpx2 client; it takes httpx's too (the legacy path)
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            http_client=client,  # type: ignore[arg-type]
            **options,
        )

    def client(self, **options: Any) -> httpx.Client:
        """Another sync httpx client bound to this gateway (e.g. one with other timeouts)."""
        options.setdefault("timeout", 30)
        return httpx.Client(transport=self.transport(), base_url=self.url, **options)

    def transport(self) -> SyncBridgeTransport:
        """A new sync transport to this gateway (for a client made elsewhere)."""
        app = self.ipg.app
        return SyncBridgeTransport(self.loop, lambda: AsgiStreamTransport(app))

    def async_transport(self) -> CrossLoopTransport:
        """A new async transport to this gateway for a client in another event loop."""
        app = self.ipg.app
        return CrossLoopTransport(self.loop, lambda: AsgiStreamTransport(app))


def settings_from_env(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GATEWAY_X`` variables as (settings, upstream settings) keyword arguments."""
    settings: dict[str, Any] = {}
    upstream: dict[str, Any] = {}
    for name, value in env.items():
        key = name.removeprefix("GATEWAY_").lower()
        if key.startswith("upstream__"):
            upstream[key.removeprefix("upstream__")] = value
        elif value.startswith(("[", "{")):
            settings[key] = json.loads(value)
        else:
            settings[key] = value
    return settings, upstream


@contextmanager
def start_in_process(
    loop: LoopThread,
    tmp_path: Path,
    routes: str,
    sim: InProcessSimulator | None,
    *,
    env: Mapping[str, str] | None = None,
    upstreams: Mapping[str, httpx.AsyncBaseTransport | Callable[[], Any] | object] | None = None,
) -> Iterator[InProcessGatewayUnderTest]:
    """The in-process twin of ``tests.processes.start_gateway``: ``routes`` (text, e.g. from
    ``routes_yaml(sim.url)``) served in ``loop`` with every upstream answered by ``sim``
    unless ``upstreams`` names another transport (or a zero-argument factory of one, called in
    the loop, or :data:`REAL_TRANSPORT` to keep the real one, over TCP). ``env`` holds
    ``GATEWAY_*`` settings as ``start_gateway`` takes them.

    Keys are those of ``start_gateway``: ``CLIENT_KEY`` (name ``test-app``), ``EVAL_KEY``
    (``eval``, allowed to override the variant) and ``ADMIN_KEY`` (``ops``). The gateway's
    JSON log lines go to ``log_path`` in ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    client_keys = tmp_path / "client-keys.json"
    client_keys.write_text(json.dumps({"test-app": CLIENT_KEY, "eval": EVAL_KEY}))
    admin_keys = tmp_path / "admin-keys.json"
    admin_keys.write_text(json.dumps({"ops": ADMIN_KEY}))
    settings, upstream_settings = settings_from_env(env or {})
    fixed = {"config", "flag_store", "client_keys", "admin_keys", "upstream"} & set(settings)
    assert not fixed, f"in_process_gateway chooses {sorted(fixed)} itself; use a process"
    settings.setdefault("override_keys", ["eval"])
    settings.setdefault("shutdown_grace_s", 2)
    names = list((yaml.safe_load(routes) or {}).get("upstreams") or {})
    log_path = tmp_path / "gateway.log"
    config_path = tmp_path / "gateway.yaml"  # a copy for readers (e.g. gateway eval)
    config_path.write_text(routes)
    log_file = log_path.open("ab", buffering=0)
    ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def hold() -> None:
        chosen = dict(upstreams or {})
        transports: dict[str, httpx.AsyncBaseTransport] = {}
        for name in names:
            given = chosen.get(name)
            if given is REAL_TRANSPORT:
                continue  # in_process_gateway keeps the upstream's own transport
            if given is None:
                assert sim is not None, f"no simulator for upstream {name!r}"
                transports[name] = sim.transport()
            elif isinstance(given, httpx.AsyncBaseTransport):
                transports[name] = given
            else:
                assert callable(given), given
                transports[name] = given()
        real_configure = gateway.telemetry.configure_logging
        levels: list[str] = []

        def configure_to_file(level: str = "info", *, trace_ids: bool = False) -> None:
            # configure_logging binds its outputs to sys.stdout(.buffer) as it finds them.
            levels.append(level)
            saved_stdout = sys.stdout
            sys.stdout = _TextTo(log_file)
            try:
                real_configure(level, trace_ids=trace_ids)
            finally:
                sys.stdout = saved_stdout

        # create_app configures logging, then makes the gateway's loggers: they write to our
        # file. Afterwards logging is configured again as it was (stdout) for everybody else.
        gateway.app.configure_logging = configure_to_file  # type: ignore[attr-defined]
        try:
            cm = in_process_gateway(
                tmp_path,
                transports,
                routes=routes,
                upstream_settings=upstream_settings,
                client_keys_file=client_keys,
                admin_keys_file=admin_keys,
                **settings,
            )
            ipg = await cm.__aenter__()
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        finally:
            gateway.app.configure_logging = real_configure  # type: ignore[attr-defined]
            if levels:
                real_configure(levels[-1])
        try:
            ready.set_result(ipg)
            await stop.wait()
        finally:
            await cm.__aexit__(None, None, None)

    held = loop.submit(hold())
    http: httpx.Client | None = None
    try:
        ipg = ready.result(LOOP_CALL_TIMEOUT_S)
        app = ipg.app
        url = f"http://gateway-{next(_numbers)}.test"  # tells in-process gateways apart
        http = httpx.Client(
            transport=SyncBridgeTransport(loop, lambda: AsgiStreamTransport(app)),
            base_url=url,
            timeout=30,
        )
        yield InProcessGatewayUnderTest(ipg, loop, http, log_path, url, config_path)
    finally:
        if http is not None:
            http.close()
        loop.loop.call_soon_threadsafe(stop.set)
        try:
            held.result(LOOP_CALL_TIMEOUT_S)
        finally:
            log_file.close()


@contextmanager
def in_process_simulator(
    loop: LoopThread, config: SimulatorConfig | None = None
) -> Iterator[InProcessSimulator]:
    sim = InProcessSimulator(loop, config)
    try:
        yield sim
    finally:
        sim.close()


@contextmanager
def serve_on_port(loop: LoopThread, app: Any, port: int) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``127.0.0.1:port`` (real TCP) in ``loop``; yields its URL.

    For an upstream that comes back on its port; cheaper than a process (no interpreter)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = loop.submit(server.serve())
    deadline = time.monotonic() + LOOP_CALL_TIMEOUT_S
    while not server.started:
        if serving.done():
            serving.result()  # raises why it stopped
            raise RuntimeError(f"uvicorn stopped before serving on port {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        serving.result(LOOP_CALL_TIMEOUT_S)
