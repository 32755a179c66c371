"""What the cyclic garbage collector costs the gateway, fresh and once it has served 110k requests.

Runs ``gateway serve`` under a small wrapper (this file, ``--serve``) that times every
collection with ``gc.callbacks`` and applies a GC setting once the app is built:

* ``default``: Python's;
* ``freeze-threshold``: ``gc.collect(); gc.freeze()`` (start-up objects are never scanned
  again) and ``gc.set_threshold(10_000, 20, 20)`` (fewer young collections, so fewer in-flight
  request objects promoted to the old generation);
* ``disabled``: ``gc.disable()``, the upper bound of what GC tuning can win (not a setting to
  ship).

For each: CPU per request at 64 connections (wrk, instant upstream) on the fresh gateway, then
again after 110k requests (the feedback buffer, GATEWAY_FEEDBACK_MAX_REQUESTS=100,000 request
ids, is then full), with the collections counted in that window; then the open loop at 500 req/s
against the 50 ms route.

    .venv/bin/python -m bench.gc_probe                       # all three settings, ~8 minutes
    .venv/bin/python -m bench.gc_probe --gc default --seconds 5

Writes bench/results/gc_probe.json (the numbers quoted in bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("default", "freeze-threshold", "disabled")


def serve() -> None:
    """The wrapper: ``gateway serve`` with collection timing and the chosen GC setting."""
    mode = os.environ.get("BENCH_GC_MODE", "default")
    stats: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            stats[info["generation"]].append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(timer)

    def dump(*_: object) -> None:
        out = Path(os.environ["BENCH_GC_OUT"])
        out.write_text(json.dumps({str(g): v for g, v in stats.items()}))

    signal.signal(signal.SIGUSR1, dump)
    import gateway.app as gateway_app  # noqa: PLC0415

    # The served gateway tunes the collector itself after start-up (gateway.app.tune_gc);
    # here each mode sets it alone.
    gateway_app.tune_gc = lambda: None
    if mode != "default":
        build = gateway_app.app_from_environment

        def patched() -> Any:
            app = build()
            if mode == "disabled":
                gc.disable()
                return app
            gc.collect()
            gc.freeze()  # everything built at start-up: never scanned again
            gc.set_threshold(10_000, 20, 20)
            return app

        gateway_app.app_from_environment = patched
    sys.argv = ["gateway", "serve"]
    from gateway.tools.cli import main  # noqa: PLC0415

    main()


def probe(mode: str, seconds: float) -> dict[str, Any]:
    from bench.harness import (  # noqa: PLC0415
        PYTHON,
        WORK,
        Processes,
        cpu_seconds,
        log,
        run_loadgen,
        run_wrk,
        wrk_script,
    )
    from bench.scenarios import AUTH, stats  # noqa: PLC0415
    from bench.stack import Stack, body_file, chat_body  # noqa: PLC0415

    procs = Processes()
    cpus = sorted(os.sched_getaffinity(0))
    sut, rest = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)
    stack = Stack(procs, use_nginx=True, sut_cpus=sut, harness_cpus=rest)
    gc_out = WORK / f"gc-{mode}.json"
    start = procs.start

    def start_wrapped(name: str, cmd: Any, **kw: Any) -> Any:
        if name == "gateway":
            cmd = [PYTHON, "-m", "bench.gc_probe", "--serve"]
            kw["env"] = {**kw.get("env", {}), "BENCH_GC_MODE": mode, "BENCH_GC_OUT": str(gc_out)}
        return start(name, cmd, **kw)

    procs.start = start_wrapped  # type: ignore[method-assign]

    def gc_totals() -> dict[int, list[float]]:
        os.kill(stack.get("gateway").pid, signal.SIGUSR1)
        time.sleep(0.5)
        return {int(g): v for g, v in json.loads(gc_out.read_text()).items()}

    def cpu_per_request(label: str) -> dict[str, Any]:
        pid = stack.get("gateway").pid
        before, values = gc_totals(), []
        for _ in range(3):
            cpu = cpu_seconds(pid)
            result = run_wrk(url, script, connections=64, duration=seconds, cpus=rest)
            values.append((cpu_seconds(pid) - cpu) * 1000 / result["ok"])
            requests[0] += result["requests"]
        after = gc_totals()
        window = {g: after[g][len(before[g]) :] for g in after}
        log(f"gc probe {mode} {label}: {statistics.median(values):.3f} ms CPU per request")
        return {
            "cpu_ms_per_request": stats(values),
            "gc_in_window": {
                f"gen{g}": {
                    "collections": len(v),
                    "total_ms": round(sum(v), 1),
                    "max_ms": round(max(v), 1) if v else 0.0,
                }
                for g, v in window.items()
            },
        }

    requests = [0]
    try:
        stack.start("gateway", "simulator", "instant")
        url = stack.url("gateway") + "/v1/chat/completions"
        script = wrk_script("gc-probe", chat_body("support-triage"))
        run_wrk(url, script, connections=64, duration=2, cpus=rest)  # warm-up
        fresh = cpu_per_request("fresh")
        while requests[0] < 110_000:
            requests[0] += run_wrk(url, script, connections=64, duration=20, cpus=rest)["requests"]
        loaded = cpu_per_request(f"after {requests[0]} requests")
        body = body_file("gc-probe-50ms", chat_body("triage-50ms"))
        runs = [
            run_loadgen(
                [
                    *("open", "--url", url, "--body", str(body), "-H", AUTH),
                    *("--rate", "500", "--duration", str(seconds)),
                ],
                cpus=rest,
                timeout=seconds + 120,
            )
            for _ in range(3)
        ]
    finally:
        procs.stop_all()
    return {
        "mode": mode,
        "fresh": fresh,
        "after_110k_requests": loaded,
        "open_loop_500rps_e2e_ms": {
            q: stats([r["latency_ms"][q] for r in runs]) for q in ("p50", "p95", "p99", "max")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gc", choices=MODES, action="append")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    results = [probe(mode, args.seconds) for mode in (args.gc or MODES)]
    for item in results:
        print(json.dumps(item))
    args.out.mkdir(parents=True, exist_ok=True)
    loads = Path("/proc/loadavg").read_text().split()[:3]
    (args.out / "gc_probe.json").write_text(
        json.dumps({"loadavg_after": loads, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
