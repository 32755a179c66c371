"""A small HTTP/1.1 load generator on raw asyncio streams (uvloop when installed).

Used where wrk does not fit (open-loop fixed rate, time to first token, many held streams) and
as wrk's stand-in when wrk is not installed (the CI smoke mode). One JSON object goes to stdout.

Modes::

    closed  N keep-alive connections sending back to back for --duration s (or --requests)
    open    a fixed --rate of requests per second for --duration s (open loop: a request is
            sent at its scheduled time on an idle connection or a new one, never queued)
    ttft    streams one at a time, alternating between --target NAME URL BODY_FILE pairs;
            time to the first content token of each
    hold    open --streams streams at once, print {"open": n, ...} once every stream has its
            first event, keep them open until SIGTERM/SIGINT (or --hold-seconds)
    serve   read one JSON list of arguments (a closed, open or ttft run) per line of stdin, run
            it and print its JSON object: one process for many runs (the smoke mode's runs are
            short enough for a process start per run to be a large part of them)

Every request is a POST of --body FILE with ``content-type: application/json`` plus -H headers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

perf = time.perf_counter


@dataclass
class Target:
    name: str
    host: str
    port: int
    request: bytes


def make_target(name: str, url: str, body: bytes, headers: list[str]) -> Target:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return Target(name, host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    first_content_at: float | None = None
    done: bool = False


class Conn:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.usable = True

    @classmethod
    async def open(cls, target: Target) -> Conn:
        reader, writer = await asyncio.open_connection(target.host, target.port, limit=1 << 20)
        return cls(reader, writer)

    def close(self) -> None:
        self.usable = False
        with contextlib.suppress(Exception):
            self.writer.close()

    async def send(
        self, target: Target, *, on_chunk: Callable[[bytes], None] | None = None
    ) -> Reply:
        self.writer.write(target.request)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get(b"connection", b"").lower() == b"close":
            self.usable = False
        length = headers.get(b"content-length")
        if length is not None:
            body = await reader.readexactly(int(length))
            if on_chunk is not None:
                on_chunk(body)
            return Reply(status, headers, body)
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                chunk = (await reader.readexactly(size + 2))[:-2]
                if on_chunk is not None:
                    on_chunk(chunk)
                parts.append(chunk)
            return Reply(status, headers, b"".join(parts))
        body = await reader.read()
        self.usable = False
        return Reply(status, headers, body)


class StreamWatch:
    """Finds the first content token and ``[DONE]`` in SSE bytes as they arrive."""

    def __init__(self) -> None:
        self.buffer = b""
        self.first_content_at: float | None = None
        self.done = False
        self.events = 0

    def __call__(self, chunk: bytes) -> None:
        now = perf()
        self.buffer += chunk
        *events, self.buffer = self.buffer.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data:"):
                continue
            self.events += 1
            data = event[5:].strip()
            if data == b"[DONE]":
                self.done = True
            elif self.first_content_at is None:
                try:
                    obj = json.loads(data)
                    delta = obj["choices"][0]["delta"]
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                if delta.get("content"):
                    self.first_content_at = now


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values) if values else None,
        "max": max(values) if values else None,
    }


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def status(self, status: int) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.errors += 1

    def failure(self, exc: BaseException) -> None:
        self.errors += 1
        kind = type(exc).__name__
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def closed_loop(
    target: Target, connections: int, duration: float, requests: int, stream: bool
) -> dict[str, Any]:
    tally = Tally()
    latencies: list[float] = []
    started = perf()
    deadline = started + duration if duration > 0 else float("inf")
    budget = [requests if requests > 0 else -1]

    async def worker() -> None:
        conn: Conn | None = None
        while perf() < deadline:
            if budget[0] == 0:
                break
            budget[0] -= 1
            try:
                if conn is None or not conn.usable:
                    conn = await Conn.open(target)
                watch = StreamWatch() if stream else None
                t0 = perf()
                reply = await conn.send(target, on_chunk=watch)
                latencies.append(perf() - t0)
                if watch is not None and not watch.done and reply.status == 200:
                    tally.failure(RuntimeError("stream ended without [DONE]"))
                else:
                    tally.status(reply.status)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.failure(exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = perf() - started
    return {
        "mode": "closed",
        "connections": connections,
        "elapsed_s": elapsed,
        "requests": tally.ok + tally.errors,
        "ok": tally.ok,
        "errors": tally.errors,
        "statuses": tally.statuses,
        "error_kinds": tally.error_kinds,
        "rps": tally.ok / elapsed if elapsed else 0.0,
        "latency_ms": summary([x * 1000 for x in latencies]),
    }


async def open_loop(target: Target, rate: float, duration: float, warm: int) -> dict[str, Any]:
    tally = Tally()
    idle: list[Conn] = []
    for _ in range(warm):
        idle.append(await Conn.open(target))
    latency: list[float] = []
    from_schedule: list[float] = []
    overhead: list[float] = []
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = await Conn.open(target)
            t0 = perf()
            reply = await conn.send(target)
            t1 = perf()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.failure(exc)
            if conn is not None:
                conn.close()
            return
        tally.status(reply.status)
        if conn.usable:
            idle.append(conn)
        if 200 <= reply.status < 300:
            latency.append((t1 - t0) * 1000)
            from_schedule.append((t1 - scheduled) * 1000)
            value = reply.headers.get(b"x-gateway-overhead-ms")
            if value is not None:
                overhead.append(float(value))

    start = perf() + 0.05
    late = 0
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - perf()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            late += 1
        task = asyncio.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = perf() - start
    for conn in idle:
        conn.close()
    return {
        "mode": "open",
        "rate": rate,
        "elapsed_s": elapsed,
        "requests": tally.ok + tally.errors,
        "ok": tally.ok,
        "errors": tally.errors,
        "statuses": tally.statuses,
        "error_kinds": tally.error_kinds,
        "achieved_rps": (tally.ok + tally.errors) / elapsed if elapsed else 0.0,
        "sent_late_over_1ms": late,
        "latency_ms": summary(latency),
        "latency_from_schedule_ms": summary(from_schedule),
        "overhead_header_ms": summary(overhead) if overhead else None,
    }


async def ttft(targets: list[Target], count: int) -> dict[str, Any]:
    conns = {t.name: await Conn.open(t) for t in targets}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    totals: dict[str, list[float]] = {t.name: [] for t in targets}
    tallies = {t.name: Tally() for t in targets}
    for i in range(count * len(targets)):
        target = targets[i % len(targets)]
        conn = conns[target.name]
        watch = StreamWatch()
        try:
            if not conn.usable:
                conn = conns[target.name] = await Conn.open(target)
            t0 = perf()
            reply = await conn.send(target, on_chunk=watch)
            t1 = perf()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tallies[target.name].failure(exc)
            conns[target.name] = await Conn.open(target)
            continue
        tallies[target.name].status(reply.status)
        if reply.status == 200 and watch.first_content_at is not None and watch.done:
            samples[target.name].append((watch.first_content_at - t0) * 1000)
            totals[target.name].append((t1 - t0) * 1000)
    for conn in conns.values():
        conn.close()
    return {
        "mode": "ttft",
        "targets": {
            name: {
                "ok": tallies[name].ok,
                "errors": tallies[name].errors,
                "statuses": tallies[name].statuses,
                "ttft_ms": summary(samples[name]),
                "stream_total_ms": summary(totals[name]),
            }
            for name in samples
        },
    }


async def hold(target: Target, streams: int, hold_seconds: float, open_within: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    opened: list[Conn] = []
    tally = Tally()
    connect_gate = asyncio.Semaphore(64)

    async def open_one() -> None:
        async with connect_gate:
            try:
                conn = await Conn.open(target)
            except OSError as exc:
                tally.failure(exc)
                return
        conn.writer.write(target.request)
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            tally.status(status)
            if status == 200:
                await conn.reader.readuntil(b"\n\n")  # the first SSE event
                opened.append(conn)
            else:
                conn.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.failure(exc)
            conn.close()

    t0 = perf()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(streams))), open_within)
    print(
        json.dumps(
            {
                "mode": "hold",
                "open": len(opened),
                "errors": tally.errors,
                "statuses": tally.statuses,
                "error_kinds": tally.error_kinds,
                "open_seconds": perf() - t0,
            }
        ),
        flush=True,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), hold_seconds)
    for conn in opened:
        conn.close()


def main() -> None:
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:  # pragma: no cover - plain asyncio works too
        pass
    if sys.argv[1:] == ["serve"]:
        for line in sys.stdin:
            print(json.dumps(run(json.loads(line))), flush=True)
        return
    result = run(sys.argv[1:])
    if result is not None:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")


def run(argv: list[str]) -> dict[str, Any] | None:
    """One run of the command line ``argv``; its result (``None`` for hold)."""
    parser = argparse.ArgumentParser(description="HTTP/1.1 load generator for bench/.")
    parser.add_argument("mode", choices=["closed", "open", "ttft", "hold"])
    parser.add_argument("--url")
    parser.add_argument("--body", type=Path)
    parser.add_argument("-H", "--header", action="append", default=[])
    parser.add_argument("--target", nargs=3, action="append", metavar=("NAME", "URL", "BODY"))
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=0, help="closed: stop after this many")
    parser.add_argument("--stream", action="store_true", help="closed: check each SSE [DONE]")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--warm-connections", type=int, default=32)
    parser.add_argument("--count", type=int, default=200, help="ttft: streams per target")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--hold-seconds", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.mode == "ttft":
        targets = [
            make_target(name, url, Path(body).read_bytes(), args.header)
            for name, url, body in args.target
        ]
        result: dict[str, Any] | None = asyncio.run(ttft(targets, args.count))
    else:
        target = make_target("target", args.url, args.body.read_bytes(), args.header)
        if args.mode == "closed":
            result = asyncio.run(
                closed_loop(target, args.connections, args.duration, args.requests, args.stream)
            )
        elif args.mode == "open":
            result = asyncio.run(open_loop(target, args.rate, args.duration, args.warm_connections))
        else:
            asyncio.run(hold(target, args.streams, args.hold_seconds, args.timeout))
            result = None
    return result


if __name__ == "__main__":
    main()
