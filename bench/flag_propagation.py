"""How fast a flag change reaches another replica (the targets in bench/README.md).

Targets: p99 under 100 ms with Redis; under 1 s with SQLite between workers.

For each store the benchmark starts a simulator and two gateways, A and B, on one store:

* ``redis``: two gateway processes on the same Redis (a namespace of their own, deleted after);
* ``sqlite``: two gateway processes sharing one SQLite file. That is the mechanism two workers
  of one gateway use (each process has its own connection and polls ``PRAGMA data_version``
  every ``GATEWAY_FLAG_POLL_INTERVAL_S``), with the advantage that we know which one answers.

Then, N times: toggle the route's kill switch through A's admin API (``PATCH enabled``), and
from the moment A answers 200 send data-plane requests to B back to back, on one keep-alive
connection with a fixed subject, until B's ``x-gateway-decision`` flips (``rollout`` <->
``disabled``). That time is one sample; its resolution is one request's round trip (about a
millisecond or two here). A random pause of up to one poll interval between changes keeps the
changes from locking onto the poll's phase.

Usage::

    .venv/bin/python bench/flag_propagation.py            # 200 Redis + 100 SQLite changes
    .venv/bin/python bench/flag_propagation.py --quick    # 10 each, prints only (CI smoke)
    .venv/bin/python bench/flag_propagation.py --store redis --redis-url redis://host:6379/0

Writes ``bench/results/flag_propagation.json`` and ``.md`` (not with ``--quick`` unless
``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway import __version__  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.processes import (  # noqa: E402
    ADMIN_KEY,
    CLIENT_KEY,
    GatewayProcess,
    routes_yaml,
    start_gateway,
    start_simulator,
)

ROUTE = "support-triage"
SUBJECT = "bench-subject-1"
DEFAULT_ITERATIONS = {"redis": 200, "sqlite": 100}
TARGET_P99_MS = {"redis": 100.0, "sqlite": 1000.0}
TIMEOUT_S = 5.0
DEFAULT_POLL_S: float = Settings.model_fields["flag_poll_interval_s"].default
BODY = {"model": ROUTE, "messages": [{"role": "user", "content": "I was charged twice."}]}


@dataclass
class Result:
    """One store's samples (ms) and summary."""

    store: str
    mechanism: str
    iterations: int
    samples_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    patch_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples_ms)
        out: dict[str, Any] = {
            "store": self.store,
            "mechanism": self.mechanism,
            "iterations": self.iterations,
            "samples": len(s),
            "timeouts": self.timeouts,
            "target_p99_ms": TARGET_P99_MS[self.store],
        }
        if s:
            out |= {
                "min_ms": round(s[0], 2),
                "median_ms": round(statistics.median(s), 2),
                "mean_ms": round(statistics.fmean(s), 2),
                "p90_ms": round(percentile(s, 90), 2),
                "p99_ms": round(percentile(s, 99), 2),
                "max_ms": round(s[-1], 2),
                "patch_median_ms": round(statistics.median(self.patch_ms), 2),
                "poll_round_trip_median_ms": round(statistics.median(self.poll_ms), 2),
            }
            out["meets_target"] = self.timeouts == 0 and out["p99_ms"] < TARGET_P99_MS[self.store]
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in 0..100."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def decision(client: httpx.Client, url: str) -> str:
    response = client.post(
        url + "/v1/chat/completions",
        json=BODY,
        headers={"authorization": f"Bearer {CLIENT_KEY}", "x-gateway-subject": SUBJECT},
    )
    response.raise_for_status()
    return response.headers["x-gateway-decision"]


def measure(a: GatewayProcess, b: GatewayProcess, result: Result, poll_interval_s: float) -> None:
    """Toggle the kill switch through A ``result.iterations`` times; time until B serves it."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    rng = random.Random(1)
    with httpx.Client(timeout=10) as to_a, httpx.Client(timeout=10) as to_b:
        for _ in range(20):  # warm both connections and code paths
            decision(to_b, b.url)
        enabled = decision(to_b, b.url) != "disabled"
        for i in range(result.iterations):
            enabled = not enabled
            want = "rollout" if enabled else "disabled"
            sent = time.perf_counter()
            response = to_a.patch(
                f"{a.url}/admin/flags/{ROUTE}",
                json={"enabled": enabled, "reason": f"propagation benchmark {i}"},
                headers=admin,
            )
            response.raise_for_status()
            t0 = time.perf_counter()
            result.patch_ms.append((t0 - sent) * 1000)
            while True:
                before = time.perf_counter()
                seen = decision(to_b, b.url)
                now = time.perf_counter()
                result.poll_ms.append((now - before) * 1000)
                if seen == want:
                    result.samples_ms.append((now - t0) * 1000)
                    break
                if now - t0 > TIMEOUT_S:
                    result.timeouts += 1
                    break
            time.sleep(rng.uniform(0, poll_interval_s))
            if (i + 1) % 50 == 0:
                print(f"  {result.store}: {i + 1}/{result.iterations}", flush=True)


@contextmanager
def two_gateways(env: dict[str, str], sim_url: str, work: Path) -> Iterator[tuple[Any, Any]]:
    routes = routes_yaml(sim_url, weight=100_000)
    with ExitStack() as stack:
        gateways = []
        for name in ("a", "b"):
            (work / name).mkdir()
            gateways.append(stack.enter_context(start_gateway(work / name, routes, env=env)))
        yield gateways[0], gateways[1]


def run_store(
    store: str, iterations: int, sim_url: str, redis_url: str, poll_interval_s: float
) -> Result:
    env = {"GATEWAY_LOG_LEVEL": "warning", "GATEWAY_FLAG_POLL_INTERVAL_S": str(poll_interval_s)}
    with tempfile.TemporaryDirectory(prefix=f"bench-{store}-") as tmp:
        work = Path(tmp)
        if store == "redis":
            namespace = f"bench-{uuid.uuid4().hex[:12]}"
            env |= {"GATEWAY_FLAG_STORE": redis_url, "GATEWAY_FLAG_STORE_NAMESPACE": namespace}
            mechanism = "two gateway processes, one Redis: pub/sub notice + version-counter poll"
        else:
            env |= {"GATEWAY_FLAG_STORE": f"sqlite:///{work}/flags.db"}
            mechanism = (
                "two gateway processes sharing one SQLite file (WAL), as two workers do: "
                "PRAGMA data_version poll"
            )
        result = Result(store, mechanism, iterations)
        try:
            with two_gateways(env, sim_url, work) as (a, b):
                measure(a, b, result, poll_interval_s)
        finally:
            if store == "redis":
                client = redis.Redis.from_url(redis_url)
                keys = list(client.scan_iter(match=f"{env['GATEWAY_FLAG_STORE_NAMESPACE']}:*"))
                if keys:
                    client.delete(*keys)
                client.close()
    return result


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return done.stdout.strip()


def machine(poll_interval_s: float, redis_url: str) -> dict[str, Any]:
    mem_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    redis_server = shutil.which("redis-server")
    redis_version = (
        subprocess.run([redis_server, "--version"], capture_output=True, text=True, check=False)
        .stdout.strip()
        .split(" sha=")[0]
        if redis_server
        else None
    )
    try:
        client = redis.Redis.from_url(redis_url)
        served_by = str(client.info("server").get("redis_version"))
        client.close()
    except redis.RedisError:
        served_by = "unreachable"
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "+uncommitted changes"
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "redis_version_measured": served_by,
        "gateway_version": __version__,
        "git_commit": commit or None,
        "flag_poll_interval_s": poll_interval_s,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


def write_results(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "flag_propagation.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Flag propagation between replicas",
        "",
        f"Measured {report['measured_at']} by `bench/flag_propagation.py` "
        f"(commit {m['git_commit']}). Time from the admin PATCH's 200 on replica A until "
        "replica B serves the new decision to a data-plane request (B polled back to back on "
        "one keep-alive connection; resolution about one request round trip).",
        "",
        "| store | changes | median ms | p90 ms | p99 ms | max ms | timeouts | target p99 "
        "| met | poll round trip (median ms) |",
        "| --- | --: | --: | --: | --: | --: | --: | --: | --- | --: |",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['store']} | {r['samples']} | {r.get('median_ms')} | {r.get('p90_ms')} "
            f"| {r.get('p99_ms')} | {r.get('max_ms')} | {r['timeouts']} "
            f"| {r['target_p99_ms']:.0f} ms | {'yes' if r.get('meets_target') else 'no'} "
            f"| {r.get('poll_round_trip_median_ms')} |"
        )
    lines += ["", "Mechanisms:", ""]
    lines += [f"* {r['store']}: {r['mechanism']}" for r in report["results"]]
    lines += [
        "",
        "Machine:",
        "",
        f"* {m['nproc']} CPUs, {m['memory_gib']} GiB memory, {m['platform']}; load average "
        f"{m['load_average_1m_at_start']} when the run started (a shared machine)",
        f"* Python {m['python']}, {m['redis_server']} (server answering: "
        f"{m['redis_version_measured']})",
        f"* `GATEWAY_FLAG_POLL_INTERVAL_S={m['flag_poll_interval_s']}`"
        f"{' (the default)' if m['flag_poll_interval_s'] == DEFAULT_POLL_S else ''}; gateway "
        f"{m['gateway_version']}, one worker per gateway process, simulator as upstream, "
        "all on loopback",
        "",
        "SQLite propagation is bounded by the poll interval (a change is seen at the next poll, "
        "so samples spread over 0..interval); Redis propagation is pub/sub-driven.",
        "",
        "Reproduce: `.venv/bin/python bench/flag_propagation.py` (needs Redis on "
        "127.0.0.1:6379; `--quick` for a 10-change smoke run).",
    ]
    (out / "flag_propagation.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["redis", "sqlite", "both"], default="both")
    parser.add_argument("--iterations", type=int, help="changes per store (default 200/100)")
    parser.add_argument("--quick", action="store_true", help="10 changes per store, no files")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_S,
        help="GATEWAY_FLAG_POLL_INTERVAL_S for both gateways (default: the setting's default)",
    )
    parser.add_argument("--out", type=Path, help="results directory (default bench/results)")
    args = parser.parse_args()

    stores = ["redis", "sqlite"] if args.store == "both" else [args.store]
    out: Path | None = args.out or (None if args.quick else ROOT / "bench" / "results")
    results = []
    host = machine(args.poll_interval, args.redis_url)
    with start_simulator() as sim:
        for store in stores:
            n = 10 if args.quick else args.iterations or DEFAULT_ITERATIONS[store]
            print(f"{store}: {n} changes", flush=True)
            result = run_store(store, n, sim.url, args.redis_url, args.poll_interval)
            summary = result.summary()
            print("  " + json.dumps(summary), flush=True)
            results.append((result, summary))

    report = {
        "benchmark": "flag_propagation",
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": host,
        "results": [summary for _, summary in results],
        "samples_ms": {r.store: [round(x, 3) for x in r.samples_ms] for r, _ in results},
    }
    if out is not None:
        write_results(out, report)
        print(f"wrote {out / 'flag_propagation.json'} and .md")
    failed = [s["store"] for _, s in results if not s.get("meets_target")]
    if failed:
        print(f"target missed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
