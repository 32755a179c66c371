"""The scenarios of the targets in bench/README.md, each returning a JSON-able dict of numbers.

Repeated runs are interleaved (run 1 of every target, then run 2, ...) so that drift in the
machine's load hits every target alike; each ratio is computed within one run and the median of
the per-run ratios is reported with its spread.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    BENCH,
    CLIENT_KEY,
    PYTHON,
    ROOT,
    WORK,
    cpu_seconds,
    have,
    log,
    rss_mb,
    run_loadgen,
    run_wrk,
    wrk_script,
)
from bench.stack import Stack, body_file, candidate_payload, chat_body

AUTH = f"authorization: Bearer {CLIENT_KEY}"
CHAT = "/v1/chat/completions"


@dataclass
class Plan:
    mode: str  # full | quick | smoke
    runs: int
    duration: float
    concurrencies: list[int]
    use_wrk: bool
    use_litellm: bool
    overhead_rate: float
    overhead_duration: float
    ttft_count: int
    stream_connections: int
    hold_streams: int
    mem_warmup: int
    mem_requests: int
    mem_batches: int
    mem_steady: bool
    profile_seconds: float
    warm_up: bool = True  # an unrecorded run before the measured ones (off in smoke mode)


def stats(values: list[float]) -> dict[str, Any]:
    """Median and spread of repeated runs."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"runs": values, "median": None}
    median = statistics.median(clean)
    spread = (max(clean) - min(clean)) / median * 100 if median else None
    return {
        "runs": [round(v, 4) for v in clean],
        "median": round(median, 4),
        "min": round(min(clean), 4),
        "max": round(max(clean), 4),
        "spread_pct": None if spread is None else round(spread, 1),
    }


# ---------------------------------------------------------------------------------------------
# one measurement of a closed-loop target


@dataclass
class Target:
    name: str
    server: str  # a Stack name
    model: str
    stream: bool = False
    concurrencies: list[int] | None = None  # None: every concurrency of the plan
    fresh_each_run: bool = False  # restart the server before each run (see gateway-httpx)
    candidate: bool = False  # send the candidate's upstream payload (direct comparisons)


def measure_closed(
    stack: Stack,
    plan: Plan,
    target: Target,
    connections: int,
    duration: float,
    *,
    max_requests: int = 0,
) -> dict[str, Any]:
    server = stack.get(target.server)
    cpu_before, t_before = cpu_seconds(server.pid), time.monotonic()
    result = _measure_closed(stack, plan, target, connections, duration, max_requests)
    cpu = cpu_seconds(server.pid) - cpu_before
    wall = time.monotonic() - t_before
    # CPU time the server used per answered request: far less sensitive to other load on the
    # machine than req/s; cpu_util (CPU seconds per wall second) shows when it did not get a core.
    result["cpu_ms_per_request"] = cpu * 1000 / result["ok"] if result["ok"] else None
    result["cpu_util"] = cpu / wall if wall else None
    return result


def _measure_closed(
    stack: Stack, plan: Plan, target: Target, connections: int, duration: float, max_requests: int
) -> dict[str, Any]:
    url = stack.url(target.server) + CHAT
    if target.candidate:
        body = candidate_payload(target.model, stream=target.stream)
    else:
        body = chat_body(target.model, stream=target.stream)
    if plan.use_wrk and not max_requests:  # wrk cannot stop at a count (it waits out -d)
        script = wrk_script(f"{target.name}-{target.model}", body).resolve()
        return run_wrk(
            url, script, connections=connections, duration=duration, cpus=stack.harness_cpus
        )
    args = [
        "closed",
        *("--url", url, "--body", str(body_file(f"{target.name}-{target.model}", body))),
        *("-H", AUTH, "--connections", str(connections)),
        *("--duration", str(duration if not max_requests else 0)),
        *("--requests", str(max_requests)),
    ]
    if target.stream:
        args.append("--stream")
    return run_loadgen(args, cpus=stack.harness_cpus, timeout=duration + 600)


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("rps", "ok", "errors", "tool", "cpu_ms_per_request", "cpu_util")
    brief = {k: result.get(k) for k in keys}
    if "p50_ms" in result:
        brief["p50_ms"], brief["p99_ms"] = result["p50_ms"], result["p99_ms"]
    elif result.get("latency_ms"):
        brief["p50_ms"] = result["latency_ms"]["p50"]
        brief["p99_ms"] = result["latency_ms"]["p99"]
    if result.get("statuses"):
        brief["statuses"] = result["statuses"]
    return brief


def closed_matrix(
    stack: Stack, plan: Plan, targets: list[Target], concurrencies: list[int], duration: float
) -> dict[str, Any]:
    """rps of every target at every concurrency, ``plan.runs`` interleaved rounds."""
    raw: dict[int, dict[str, list[dict[str, Any]]]] = {c: {} for c in concurrencies}
    available = []
    for target in targets:  # start them all at once (LiteLLM takes a while)
        try:
            stack.spawn(target.server)
        except Exception as exc:
            log(f"could not start {target.server}: {exc}")
    for target in targets:
        try:
            stack.get(target.server)
        except Exception as exc:
            log(f"skipping {target.name}: {exc}")
            continue
        available.append(target)
        # Warm-up (imports on first request, connection pools), not recorded.
        warm = min(3.0, max(0.5, duration / 2))
        try:
            if plan.warm_up:
                measure_closed(stack, plan, target, min(concurrencies), warm)
        except Exception as exc:
            log(f"warm-up of {target.name} failed: {exc}")
    for run in range(plan.runs):
        for target in available:
            if target.fresh_each_run and run:
                stack.stop(target.server)
                stack.get(target.server)
                measure_closed(stack, plan, target, min(concurrencies), 1.0)
        for c in concurrencies:
            for target in available:
                if target.concurrencies is not None and c not in target.concurrencies:
                    continue
                result = measure_closed(stack, plan, target, c, duration)
                raw[c].setdefault(target.name, []).append(_brief(result))
                cpu_ms = result["cpu_ms_per_request"]
                log(
                    f"run {run + 1}/{plan.runs} c={c} {target.name}: {result['rps']:.0f} req/s"
                    f" ({result['errors']} errors), server CPU "
                    f"{'-' if cpu_ms is None else f'{cpu_ms:.3f}'} ms/request, "
                    f"{result['cpu_util']:.2f} CPU busy"
                )
    table: dict[str, Any] = {}
    for c, by_target in raw.items():
        table[str(c)] = {
            name: {
                "rps": stats([r["rps"] for r in runs]),
                "errors": sum(r["errors"] for r in runs),
                "cpu_ms_per_request": stats(
                    [r["cpu_ms_per_request"] for r in runs if r["cpu_ms_per_request"]]
                ),
                "cpu_util": stats([r["cpu_util"] for r in runs if r["cpu_util"] is not None]),
                "p50_ms": stats([r["p50_ms"] for r in runs if r.get("p50_ms") is not None]),
                "p99_ms": stats([r["p99_ms"] for r in runs if r.get("p99_ms") is not None]),
                "raw": runs,
            }
            for name, runs in by_target.items()
        }
    return table


def ratio(table: dict[str, Any], concurrency: str, a: str, b: str) -> dict[str, Any] | None:
    """Per-run ratio of a's rps to b's at one concurrency (same run index), median and spread."""
    row = table.get(concurrency, {})
    if a not in row or b not in row:
        return None
    runs_a, runs_b = row[a]["rps"]["runs"], row[b]["rps"]["runs"]
    values = [x / y for x, y in zip(runs_a, runs_b, strict=False) if y]
    return stats(values) if values else None


def cpu_ratio(table: dict[str, Any], concurrency: str, a: str, b: str) -> dict[str, Any] | None:
    """Per-run ratio of b's server CPU per request to a's: the throughput ratio a/b would have
    if each server had a core of its own (robust to other load on the machine)."""
    row = table.get(concurrency, {})
    if a not in row or b not in row:
        return None
    runs_a = [r["cpu_ms_per_request"] for r in row[a]["raw"]]
    runs_b = [r["cpu_ms_per_request"] for r in row[b]["raw"]]
    values = [y / x for x, y in zip(runs_a, runs_b, strict=False) if x and y]
    return stats(values) if values else None


# ---------------------------------------------------------------------------------------------
# scenarios


HEADLINE_RATIOS = (
    # (key, numerator row, denominator row): computed within each run, then the median
    ("gateway/floor", "gateway", "floor"),
    ("gateway-passthrough/floor", "gateway-passthrough", "floor"),
    ("gateway-2w/gateway", "gateway-2w", "gateway"),
    ("floor-litestar/floor", "floor-litestar", "floor"),
    ("bare/floor", "bare", "floor"),
    ("gateway/bare", "gateway", "bare"),
    ("gateway/litellm", "gateway", "litellm"),
    ("floor/direct", "floor", "direct"),
    ("gateway-httpx/gateway", "gateway-httpx", "gateway"),
    ("gateway-passthrough/gateway", "gateway-passthrough", "gateway"),
    ("floor-granian/floor", "floor-granian", "floor"),
    ("gateway-granian/gateway", "gateway-granian", "gateway"),
)
"""The throughput ratios reported; the first three are issue 11's targets."""


def _proxies(plan: Plan, *names: str) -> list[str]:
    """The reference proxies a latency scenario compares: in smoke mode only the raw floor (the
    throughput scenario still runs every one), to keep the CI smoke test to ~8 s."""
    return [n for n in names if plan.mode != "smoke" or n in ("floor", "floor-sim")]


def throughput(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Non-streaming, instant upstream, rising concurrency."""
    # The issue's reference point is wrk at 32 connections; the slow rows skip it.
    slow = [c for c in plan.concurrencies if c != 32] or plan.concurrencies
    targets = [
        Target("direct", "instant", "bench-instant"),
        Target("floor", "floor-instant", "bench-instant"),
        Target("floor-litestar", "floor-litestar-instant", "bench-instant"),
        Target("bare", "bare-instant", "bench-instant"),
        Target("gateway", "gateway", "support-triage"),
        Target("gateway-passthrough", "gateway", "bench-instant"),
    ]
    if plan.mode != "smoke":
        targets += [
            # httpx's own pool degrades for good after the c=256 run (requests stall, see
            # RESULTS.md); a fresh process per run keeps each run's c=16 and c=64 meaningful.
            Target(
                "gateway-httpx",
                "gateway-httpx",
                "support-triage",
                fresh_each_run=True,
                concurrencies=slow,
            ),
            Target("gateway-2w", "gateway-2w", "support-triage"),
        ]
        if (Path(PYTHON).parent / "granian").exists():  # the bench extra installs it
            targets += [
                Target("floor-granian", "floor-granian-instant", "bench-instant"),
                Target("gateway-granian", "gateway-granian", "support-triage"),
            ]
    if plan.use_litellm:
        targets.append(Target("litellm", "litellm", "bench-model", concurrencies=slow))
    table = closed_matrix(stack, plan, targets, plan.concurrencies, plan.duration)
    ratios: dict[str, Any] = {}
    for c in table:
        found: dict[str, Any] = {}
        for key, a, b in HEADLINE_RATIOS:
            found[key] = ratio(table, c, a, b)
            if key in ("gateway/floor", "gateway-passthrough/floor", "gateway/litellm"):
                found[f"{key} by CPU per request"] = cpu_ratio(table, c, a, b)
        ratios[c] = {key: value for key, value in found.items() if value is not None}
    for name in (
        "gateway-httpx",
        "gateway-2w",
        "litellm",
        "floor-granian-instant",
        "gateway-granian",
    ):
        stack.stop(name)  # idle from here on; no need to keep them
    return {
        "description": "non-streaming chat completions, upstream answering at once "
        f"({'nginx' if stack.use_nginx else 'simulator'}), closed loop, "
        f"{plan.runs} run(s) of {plan.duration:g} s per target and concurrency",
        "load_generator": "wrk -t1" if plan.use_wrk else "bench/loadgen.py closed",
        "concurrency": table,
        "ratios": ratios,
    }


def overhead(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Fixed rate, 50 ms upstream: the gateway's added latency."""
    rate, duration = plan.overhead_rate, plan.overhead_duration
    stack.start(
        "simulator", "gateway", *_proxies(plan, "floor-sim", "floor-litestar-sim", "bare-sim")
    )
    sim = stack.url("simulator") + CHAT
    gateway = stack.url("gateway") + CHAT
    direct_body = body_file("direct-50ms", candidate_payload("ft:bench-50ms"))
    gateway_body = body_file("gateway-50ms", chat_body("triage-50ms"))
    # side -> (URL, body); every proxy but the gateway gets the candidate's upstream payload
    sides = {"direct": (sim, direct_body)}
    for side in _proxies(plan, "floor", "floor-litestar", "bare"):
        sides[side] = (stack.url(f"{side}-sim") + CHAT, direct_body)
    sides["gateway"] = (gateway, gateway_body)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}

    def one(url: str, body: Path, seconds: float = duration) -> dict[str, Any]:
        return run_loadgen(
            [
                "open",
                *("--url", url, "--body", str(body), "-H", AUTH),
                *("--rate", str(rate), "--duration", str(seconds)),
                *("--warm-connections", str(min(64, int(rate * 0.1) + 8))),
            ],
            cpus=stack.harness_cpus,
            timeout=duration + 120,
        )

    if plan.warm_up:  # not recorded
        for side in sides.keys() - {"direct"}:
            one(*sides[side], min(duration, 2.0))
    for run in range(plan.runs):
        for side, (url, body) in sides.items():
            runs[side].append(one(url, body))
        g = runs["gateway"][-1]
        log(
            f"run {run + 1}/{plan.runs} overhead at {rate:g} req/s: header p50 "
            f"{g['overhead_header_ms']['p50'] if g['overhead_header_ms'] else None} ms, "
            f"e2e p50 {g['latency_ms']['p50']:.2f} ms vs direct "
            f"{runs['direct'][-1]['latency_ms']['p50']:.2f} ms, raw floor "
            f"{runs['floor'][-1]['latency_ms']['p50']:.2f} ms"
        )
    out: dict[str, Any] = {
        "description": f"open loop at {rate:g} req/s for {duration:g} s, upstream = simulator "
        "with latency_ms 50; gateway route triage-50ms (candidate only) vs the candidate's "
        "payload sent direct to the simulator and through the raw floor, the raw floor behind "
        "Litestar's @asgi and the bare proxy",
        "load_generator": "bench/loadgen.py open",
        "rate": rate,
        "requests_per_run": int(rate * duration),
        "errors": {k: sum(r["errors"] for r in v) for k, v in runs.items()},
        "achieved_rps": {k: stats([r["achieved_rps"] for r in v]) for k, v in runs.items()},
    }
    for q in ("p50", "p95", "p99"):
        out[f"header_overhead_{q}_ms"] = stats(
            [r["overhead_header_ms"][q] for r in runs["gateway"] if r["overhead_header_ms"]]
        )
        for side in sides:
            key = side.replace("-", "_")
            out[f"e2e_{key}_{q}_ms"] = stats([r["latency_ms"][q] for r in runs[side]])
            if side == "direct":
                continue
            # within each run: the side's quantile minus direct's (the gateway's key has no
            # side name: added_e2e_p50_ms is the target)
            out[f"added_e2e_{'' if side == 'gateway' else key + '_'}{q}_ms"] = stats(
                [
                    x["latency_ms"][q] - d["latency_ms"][q]
                    for x, d in zip(runs[side], runs["direct"], strict=True)
                ]
            )
        out[f"added_over_floor_{q}_ms"] = stats(
            [
                g["latency_ms"][q] - f["latency_ms"][q]
                for g, f in zip(runs["gateway"], runs["floor"], strict=True)
            ]
        )
    out["raw"] = runs
    return out


def streaming(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Time to first token added, and throughput of 20-chunk streams."""
    stack.start(
        "simulator", "gateway", *_proxies(plan, "floor-sim", "floor-litestar-sim", "bare-sim")
    )
    direct_body = body_file("direct-stream20", candidate_payload("ft:bench-stream20", stream=True))
    gateway_body = body_file("gateway-stream20", chat_body("triage-stream20", stream=True))
    urls = {"direct": (stack.url("simulator") + CHAT, direct_body)}
    for side in _proxies(plan, "floor", "floor-litestar", "bare"):
        urls[side] = (stack.url(f"{side}-sim") + CHAT, direct_body)
    urls["gateway"] = (stack.url("gateway") + CHAT, gateway_body)
    sides = tuple(urls)
    ttft_runs = []
    for run in range(0 if plan.warm_up else 1, plan.runs + 1):  # round 0 warms up
        result = run_loadgen(
            [
                "ttft",
                *(a for side, (u, b) in urls.items() for a in ("--target", side, u, str(b))),
                *("-H", AUTH, "--count", str(plan.ttft_count if run else 20)),
            ],
            cpus=stack.harness_cpus,
            timeout=600,
        )
        if run:
            ttft_runs.append(result["targets"])
            log(
                f"run {run}/{plan.runs} ttft p50 "
                + ", ".join(f"{k} {result['targets'][k]['ttft_ms']['p50']:.3f} ms" for k in sides)
            )
    out: dict[str, Any] = {
        "description": "streams with 20 content chunks from the simulator; TTFT = request sent "
        "to first content delta received; streams one at a time, in turn direct, through the "
        "raw floor, the raw floor behind Litestar's @asgi, the bare proxy and the gateway (route "
        "triage-stream20, candidate only; the others send the candidate's payload)",
        "streams_per_run_per_target": plan.ttft_count,
    }
    for q in ("p50", "p90", "p99"):
        for side in sides:
            key = side.replace("-", "_")
            out[f"ttft_{key}_{q}_ms"] = stats([r[side]["ttft_ms"][q] for r in ttft_runs])
            if side != "direct":  # the gateway's has no side name: ttft_added_p50_ms
                out[f"ttft_added_{'' if side == 'gateway' else key + '_'}{q}_ms"] = stats(
                    [r[side]["ttft_ms"][q] - r["direct"]["ttft_ms"][q] for r in ttft_runs]
                )
        out[f"ttft_added_over_floor_{q}_ms"] = stats(
            [r["gateway"]["ttft_ms"][q] - r["floor"]["ttft_ms"][q] for r in ttft_runs]
        )
    out["ttft_errors"] = sum(r[t]["errors"] for r in ttft_runs for t in sides)
    c = plan.stream_connections
    servers = {side: "simulator" if side == "direct" else f"{side}-sim" for side in urls}
    targets = [
        Target(side, servers[side], "ft:bench-stream20", stream=True, candidate=True)
        for side in urls
        if side != "gateway"
    ]
    targets.append(Target("gateway", "gateway", "triage-stream20", stream=True))
    table = closed_matrix(stack, plan, targets, [c], plan.duration)
    out["stream_throughput"] = {
        "description": f"closed loop, {c} connections, 20-chunk streams, streams per second",
        "load_generator": "wrk -t1" if plan.use_wrk else "bench/loadgen.py closed --stream",
        "concurrency": table,
        "ratios": {
            "gateway/floor": ratio(table, str(c), "gateway", "floor"),
            "gateway/floor by CPU per stream": cpu_ratio(table, str(c), "gateway", "floor"),
            "floor-litestar/floor": ratio(table, str(c), "floor-litestar", "floor"),
            "gateway/bare": ratio(table, str(c), "gateway", "bare"),
            "gateway/direct": ratio(table, str(c), "gateway", "direct"),
        },
    }
    return out


def memory(stack: Stack, plan: Plan) -> dict[str, Any]:
    """RSS with many open streams; RSS across many requests. Fresh gateways for each."""
    out: dict[str, Any] = {}
    settle = 0.1 if plan.mode == "smoke" else 1.0  # seconds for RSS to settle before a sample
    # 1. open streams
    gw = stack.get("gateway-mem-streams")
    time.sleep(settle)
    idle = rss_mb(gw.pid)
    body = body_file("gateway-hold", chat_body("triage-hold", stream=True))
    holder = subprocess.Popen(
        [
            *(PYTHON, str(BENCH / "loadgen.py"), "hold"),
            *("--url", gw.url + CHAT, "--body", str(body), "-H", AUTH),
            *("--streams", str(plan.hold_streams), "--timeout", "120", "--hold-seconds", "300"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stderr is not None
        line = holder.stdout.readline()
        held: dict[str, Any] = (
            json.loads(line) if line.strip() else {"open": 0, "error": holder.stderr.read()}
        )
        time.sleep(settle)
        samples = []
        for _ in range(3):
            samples.append(rss_mb(gw.pid))
            time.sleep(settle / 3)
        with_streams = max(samples)
        sim_rss = rss_mb(stack.get("simulator").pid)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGTERM)
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    time.sleep(2 * settle)
    after_close = rss_mb(gw.pid)
    inflight = _metric(gw.url, "gateway_inflight_requests")
    stack.stop("gateway-mem-streams")
    out["open_streams"] = {
        "streams_requested": plan.hold_streams,
        "streams_open": held.get("open"),
        "errors": held.get("errors"),
        "statuses": held.get("statuses"),
        "rss_idle_mb": round(idle, 1),
        "rss_with_streams_mb": round(with_streams, 1),
        "rss_per_stream_kb": round((with_streams - idle) * 1024 / max(1, held.get("open") or 1), 1),
        "rss_after_close_mb": round(after_close, 1),
        "inflight_after_close": inflight,
        "simulator_rss_mb": round(sim_rss, 1),
        "description": "VmRSS summed over the gateway's processes (1 worker) while "
        f"{plan.hold_streams} streams are open (upstream = simulator, chunk_delay_ms large)",
    }
    log(f"{held.get('open')} open streams: gateway RSS {idle:.1f} -> {with_streams:.1f} MiB")
    # 2. many requests: the default settings, then (not in smoke mode) the same with a small
    # feedback buffer, which tells the bounded buffer's growth from anything else.
    out["requests"] = _rss_across_requests(stack, plan, "gateway-mem-requests", settle)
    if plan.mode != "smoke":
        out["requests_feedback_1000"] = _rss_across_requests(
            stack, plan, "gateway-mem-requests-fb1k", settle, steady=False
        )
    return out


def _rss_across_requests(
    stack: Stack, plan: Plan, server: str, settle: float, *, steady: bool = True
) -> dict[str, Any]:
    gw = stack.get(server)
    time.sleep(settle)
    target = Target("gateway-mem", server, "support-triage")
    checkpoints = [{"requests": 0, "rss_mb": round(rss_mb(gw.pid), 1)}]
    served = 0

    def batch(count: int) -> None:
        nonlocal served
        result = measure_closed(stack, plan, target, 64, 0, max_requests=count)
        served += result["ok"] + result["errors"]
        time.sleep(settle / 2)
        checkpoints.append({"requests": served, "rss_mb": round(rss_mb(gw.pid), 1)})
        log(f"{server}: {served} requests: RSS {checkpoints[-1]['rss_mb']} MiB")

    batch(plan.mem_warmup)
    warm_index = len(checkpoints) - 1
    per_batch = plan.mem_requests // plan.mem_batches
    for _ in range(plan.mem_batches):
        batch(per_batch)
    end_index = len(checkpoints) - 1
    steady_index = None
    if steady and plan.mem_steady:
        for _ in range(plan.mem_batches):
            batch(per_batch)
        steady_index = len(checkpoints) - 1
    stack.stop(server)

    def growth(a: int, b: int) -> float:
        return round((checkpoints[b]["rss_mb"] / checkpoints[a]["rss_mb"] - 1) * 100, 2)

    feedback = "1000" if server.endswith("-fb1k") else "100000 (the default)"
    return {
        "description": "VmRSS of a fresh gateway (1 worker, route support-triage, instant "
        f"upstream, GATEWAY_FEEDBACK_MAX_REQUESTS={feedback}) at checkpoints: start, after "
        f"{plan.mem_warmup} warm-up requests, then every {per_batch} requests; closed loop, "
        "64 connections",
        "feedback_max_requests": feedback,
        "checkpoints": checkpoints,
        "requests_measured": plan.mem_requests,
        "growth_pct_from_warm": growth(warm_index, end_index),
        "growth_pct_from_start": growth(0, end_index),
        "growth_pct_second_window": growth(end_index, steady_index) if steady_index else None,
    }


def _metric(url: str, name: str) -> float | None:
    import httpx  # noqa: PLC0415

    try:
        text = httpx.get(url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------------------------
# profile


def profile(stack: Stack, plan: Plan, out_dir: Path) -> dict[str, Any]:
    """py-spy on the gateway and the bare proxy under the throughput load (c=64)."""
    if not have("py-spy"):
        spy = Path(PYTHON).parent / "py-spy"
        if not spy.exists():
            return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    else:
        spy = Path("py-spy")
    result: dict[str, Any] = {}
    for name, server, model in (
        ("gateway", "gateway", "support-triage"),
        ("bare", "bare-instant", "bench-instant"),
    ):
        child = stack.get(server)
        raw = WORK / f"profile-{name}.collapsed"  # raw stacks (flame graph tools): not kept
        recorder = subprocess.Popen(
            [
                str(spy),
                *("record", "--pid", str(child.pid), "--rate", "250", "--nonblocking"),
                *("--duration", str(int(plan.profile_seconds)), "--format", "raw"),
                *("--output", str(raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        load = measure_closed(
            stack, plan, Target(name, server, model), 64, max(1.0, plan.profile_seconds - 2)
        )
        try:
            _, err = recorder.communicate(timeout=plan.profile_seconds + 60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate()
        if not raw.exists():
            result[name] = {"error": f"py-spy wrote no profile: {err[-1500:]}"}
            continue
        summary = summarise_profile(raw)
        summary["rps_while_profiling"] = round(load["rps"], 1)
        result[name] = summary
        log(f"profiled {name}: {summary['samples']} samples")
    (out_dir / "profile-summary.json").write_text(json.dumps(result, indent=1))
    (out_dir / "profile-summary.md").write_text(profile_markdown(result))
    return result


_PACKAGES = (
    ("gateway/", "gateway"),
    ("bench/", "bench"),
    ("litestar/", "litestar"),
    ("uvicorn/", "uvicorn"),
    ("httptools/", "httptools"),
    ("httpx_aiohttp/", "httpx-aiohttp"),
    ("httpx/", "httpx"),
    ("httpcore/", "httpcore"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "yarl"),
    ("multidict/", "multidict"),
    ("structlog/", "structlog"),
    ("prometheus_client/", "prometheus_client"),
    ("msgspec/", "msgspec"),
    ("anyio/", "anyio"),
    ("uvloop/", "uvloop"),
    ("asyncio/", "asyncio"),
)


def _package(frame: str) -> str:
    for needle, name in _PACKAGES:
        if needle in frame:
            return name
    return "python/other"


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (pkg/file.py)"
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{func} ({path})"


def summarise_profile(raw: Path, top: int = 30) -> dict[str, Any]:
    """Self and inclusive sample counts per function and self samples per package."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    pkg_self: Counter[str] = Counter()
    pkg_incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = _short(frames[-1])
        self_counts[leaf] += count
        pkg_self[_package(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            incl_counts[name] += count
        for pkg in {_package(f) for f in frames}:
            pkg_incl[pkg] += count

    def pct(n: int) -> float:
        return round(n / total * 100, 1) if total else 0.0

    return {
        "samples": total,
        "self_by_package_pct": {k: pct(v) for k, v in pkg_self.most_common()},
        "inclusive_by_package_pct": {k: pct(v) for k, v in pkg_incl.most_common()},
        "top_self": [{"function": k, "pct": pct(v)} for k, v in self_counts.most_common(top)],
        "top_inclusive": [
            {"function": k, "pct": pct(v)} for k, v in incl_counts.most_common(top + 20)
        ],
    }


def profile_markdown(result: dict[str, Any]) -> str:
    lines = ["# Profile of the hot path (py-spy, throughput load, c=64)", ""]
    for name, summary in result.items():
        if "samples" not in summary:
            lines += [f"## {name}", "", f"not profiled: {summary}", ""]
            continue
        lines += [
            f"## {name}: {summary['samples']} samples, "
            f"{summary.get('rps_while_profiling')} req/s while sampled",
            "",
            "| package | self % | inclusive % |",
            "| --- | --: | --: |",
        ]
        for pkg, value in summary["self_by_package_pct"].items():
            lines.append(f"| {pkg} | {value} | {summary['inclusive_by_package_pct'].get(pkg)} |")
        lines += ["", "| top functions by self time | % |", "| --- | --: |"]
        lines += [f"| `{f['function']}` | {f['pct']} |" for f in summary["top_self"][:25]]
        lines += ["", "| top functions by inclusive time | % |", "| --- | --: |"]
        lines += [f"| `{f['function']}` | {f['pct']} |" for f in summary["top_inclusive"][:40]]
        lines.append("")
    return "\n".join(lines)


SCENARIOS: dict[str, Callable[[Stack, Plan], dict[str, Any]]] = {
    "throughput": throughput,
    "overhead": overhead,
    "streaming": streaming,
    "memory": memory,
}

__all__ = ["SCENARIOS", "WORK", "Plan", "profile", "stats"]
