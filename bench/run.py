"""The benchmark of the targets in bench/README.md: one command, documented in bench/README.md.

    bench/run                 # full: 3 runs of 10 s per point; sets up wrk, nginx, LiteLLM
    bench/run --quick         # 1 run of 2 s per point
    bench/run --smoke --out DIR   # Python pieces only (CI): simulator, floors, bare proxy, gateway

Starts every piece on loopback, runs the scenarios, stops everything it started (also on
Ctrl-C, SIGTERM or a failure), and writes RESULTS.json and RESULTS.md to bench/results/ (or
--out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import harness
from bench.harness import (
    BENCH,
    WORK,
    Processes,
    ensure_bench_extra,
    ensure_debian_tools,
    ensure_litellm,
    have,
    litellm_version,
    loadavg,
    log,
    machine_info,
    nginx_binary,
)
from bench.report import evaluate, markdown
from bench.scenarios import SCENARIOS, Plan, profile
from bench.stack import Stack

ALL = ["throughput", "overhead", "streaming", "memory", "profile"]


def make_plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        plan = Plan(
            mode="smoke",
            runs=1,
            duration=0.2,
            concurrencies=[8],
            use_wrk=False,
            use_litellm=False,
            overhead_rate=80,
            overhead_duration=0.25,
            ttft_count=10,
            stream_connections=4,
            hold_streams=20,
            mem_warmup=100,
            mem_requests=400,
            mem_batches=1,
            mem_steady=False,
            profile_seconds=0,
            warm_up=False,
        )
    elif args.quick:
        plan = Plan(
            mode="quick",
            runs=1,
            duration=2.0,
            concurrencies=[16, 32, 64, 256],
            use_wrk=have("wrk"),
            use_litellm=not args.no_litellm,
            overhead_rate=500,
            overhead_duration=2.0,
            ttft_count=100,
            stream_connections=32,
            hold_streams=1000,
            mem_warmup=5000,
            mem_requests=20_000,
            mem_batches=2,
            mem_steady=False,
            profile_seconds=6,
        )
    else:
        plan = Plan(
            mode="full",
            runs=3,
            duration=10.0,
            concurrencies=[16, 32, 64, 256],
            use_wrk=have("wrk"),
            use_litellm=not args.no_litellm,
            overhead_rate=500,
            overhead_duration=10.0,
            ttft_count=500,
            stream_connections=32,
            hold_streams=1000,
            mem_warmup=5000,
            mem_requests=100_000,
            mem_batches=5,
            mem_steady=True,
            profile_seconds=15,
        )
    if args.runs:
        plan.runs = args.runs
    if args.duration:
        plan.duration = plan.overhead_duration = args.duration
    if args.concurrency:
        plan.concurrencies = [int(c) for c in args.concurrency.split(",")]
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 run of 2 s per point")
    mode.add_argument(
        "--smoke", action="store_true", help="Python pieces only, a few seconds (CI smoke test)"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--runs", type=int, help="repeated runs per point")
    parser.add_argument("--duration", type=float, help="seconds per run")
    parser.add_argument("--concurrency", help="throughput connections, e.g. 16,32,64,256")
    parser.add_argument("--no-setup", action="store_true", help="install nothing")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    chosen = args.only.split(",") if args.only else ALL
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if plan.mode == "smoke":
        chosen = [s for s in chosen if s != "profile"]
    out_dir = args.out or (BENCH / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}

    if plan.mode != "smoke" and not args.no_setup:
        missing = ensure_debian_tools()
        if missing:
            skipped["debian"] = f"not installed: {', '.join(missing)}"
        if plan.use_litellm and "throughput" in chosen:
            ensure_litellm()
        ensure_bench_extra()
    plan.use_wrk = plan.use_wrk or (plan.mode != "smoke" and have("wrk"))
    use_nginx = plan.mode != "smoke" and nginx_binary() is not None
    if plan.use_litellm and litellm_version() != harness.LITELLM_VERSION:
        skipped["litellm"] = (
            f"litellm {harness.LITELLM_VERSION} not installed in {harness.LITELLM_VENV}"
        )
        plan.use_litellm = False
    if plan.mode != "smoke" and not plan.use_wrk:
        skipped["wrk"] = "not installed: the Python load generator stands in"

    _raise_fd_limit()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and not args.no_pin:
        sut, rest = {cpus[0]}, set(cpus[1:])
        placement = (
            f"system under test (gateway, raw floors, bare proxy, LiteLLM: one process each) on "
            f"CPU {cpus[0]};"
            f" load generator, nginx and simulator on CPU {','.join(map(str, sorted(rest)))};"
            " the 2-worker gateway unpinned"
        )
    else:
        sut, rest = None, None
        placement = "not pinned"
    procs = Processes()
    stack = Stack(procs, use_nginx=use_nginx, sut_cpus=sut, harness_cpus=rest)
    if not use_nginx:
        stack.aliases["instant"] = "simulator"
    if plan.mode == "smoke":  # fewer processes: a few seconds in CI
        stack.aliases.update(
            {
                "bare-sim": "bare-instant",
                "floor-sim": "floor-instant",
                "floor-litestar-sim": "floor-litestar-instant",
                "gateway-mem-streams": "gateway",
                "gateway-mem-requests": "gateway",
            }
        )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results: dict[str, Any] = {
        "command": "bench/run" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "mode": plan.mode,
        "started_at": _now(),
        "load_before": loadavg(),
        "placement": placement,
        "plan": plan.__dict__,
        "machine": machine_info(),
        "scenarios": {},
        "skipped": skipped,
    }
    status = 0
    try:
        if plan.mode == "smoke":
            harness.use_loadgen_worker(procs, rest)
            stack.start(
                "simulator", "floor-instant", "floor-litestar-instant", "bare-instant", "gateway"
            )
        for name in chosen:
            log(f"== {name}")
            try:
                if name == "profile":
                    results["scenarios"][name] = profile(stack, plan, out_dir)
                else:
                    results["scenarios"][name] = SCENARIOS[name](stack, plan)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                status = 1
                log(f"{name} failed: {exc}")
                results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        status = 130
    finally:
        procs.stop_all()
    flags = BENCH / "results" / "flag_propagation.json"
    if flags.exists():
        data = json.loads(flags.read_text())
        results["scenarios"]["flag_propagation"] = {
            "measured_at": data.get("measured_at"),
            "results": data.get("results", []),
        }
    results["finished_at"] = _now()
    results["load_after"] = loadavg()
    results["targets"] = evaluate(results)
    (out_dir / "RESULTS.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "RESULTS.md").write_text(markdown(results))
    log(f"wrote {out_dir / 'RESULTS.json'} and {out_dir / 'RESULTS.md'}")
    for item in results["targets"].values():
        state = {True: "met", False: "NOT MET", None: "not judged"}[item["met"]]
        log(f"{state:>10}: {item['target']}: {item['value']}")
    return status


def _raise_fd_limit() -> None:
    import resource  # noqa: PLC0415

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(main())
