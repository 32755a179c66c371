"""What OpenTelemetry tracing costs the request path: off (as shipped) against the same gateway
before tracing existed, and on (every request sampled, spans OTLP-encoded).

Runs ``bench.profile_inprocess worker`` (uvicorn's protocol fed in memory, the upstream an
in-memory aiohttp connector: CPU µs per request, no sockets) for three trees, interleaved round
by round, each measurement in a fresh process:

* ``before``: a checkout of the commit before tracing (``--base``: an unpacked tree, e.g.
  ``git archive <commit> | tar -x -C /tmp/base``), variant ``gateway``;
* ``off``: this tree, variant ``gateway`` (no ``OTEL_*`` variables: tracing off);
* ``on``: this tree, variant ``gateway-tracing``.

Unary requests and 20-chunk streams. Writes ``bench/results/tracing-cost.json`` and ``.md``.

    .venv/bin/python -m bench.tracing_cost --base /tmp/base [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import loadavg, machine_info

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def measure(tree: Path, variant: str, *, stream: bool) -> float:
    """CPU µs per request (or per stream) of one fresh worker process run in ``tree``."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        args = ["--requests", "2000", "--warmup", "500"] if stream else ["--requests", "10000"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["PYTHONPATH"] = str(tree)
        with (Path(tmp) / "events.jsonl").open("wb") as events:
            done = subprocess.run(
                [
                    PYTHON,
                    "-m",
                    "bench.profile_inprocess",
                    "worker",
                    "--variant",
                    variant,
                    *(["--stream"] if stream else []),
                    *args,
                    "--result",
                    str(result),
                ],
                cwd=tree,
                env=env,
                stdout=events,
                stderr=subprocess.PIPE,
                text=True,
                timeout=600,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{tree} {variant}: {done.stderr[-2000:]}")
        data = json.loads(result.read_text())
        if set(data["statuses"]) != {"200"}:
            raise RuntimeError(f"{variant}: statuses {data['statuses']}")
        return float(data["cpu_us_per_request"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.tracing_cost", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="the tree before tracing")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rows = {
        "before": (args.base, "gateway"),
        "off": (ROOT, "gateway"),
        "on": (ROOT, "gateway-tracing"),
    }
    runs: dict[str, dict[str, list[float]]] = {"unary": {}, "stream": {}}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = loadavg()
    for r in range(args.rounds):
        order = list(rows) if r % 2 == 0 else list(reversed(rows))  # no row always goes first
        for kind in ("unary", "stream"):
            for name in order:
                tree, variant = rows[name]
                us = measure(tree, variant, stream=kind == "stream")
                runs[kind].setdefault(name, []).append(round(us, 1))
                print(f"round {r + 1} {kind} {name}: {us:.1f} µs", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "command": "python -m bench.tracing_cost --base <tree before tracing> "
        f"--rounds {args.rounds}",
        "started_at": started,
        "load_before": load_before,
        "load_after": loadavg(),
        "machine": machine_info(),
        "cpu_us": runs,
        "median": {
            kind: {name: round(statistics.median(v), 1) for name, v in by.items()}
            for kind, by in runs.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tracing-cost.json").write_text(json.dumps(result, indent=1))
    (args.out / "tracing-cost.md").write_text(report(result))
    return 0


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# What tracing costs the request path (bench/tracing_cost.py)",
        "",
        f"Command: `{r['command']}`, {r['started_at']}; machine: {m['nproc']} CPUs "
        f"({m['cpu_model']}), Python {m['python']}; load average before "
        f"{' '.join(map(str, r['load_before']))}, after {' '.join(map(str, r['load_after']))}.",
        "",
        "CPU µs per request (unary: 10,000 requests after 3,000 warm-up; stream: 2,000 streams "
        "of 20 chunks after 500), `bench.profile_inprocess worker`, a fresh process per "
        "measurement, the three rows interleaved, in reverse order every other round. `before`: "
        "the gateway before tracing; `off`: with tracing, no `OTEL_*` variables; `on`: every "
        "request sampled, a server span and a client span, encoded as OTLP protobuf by a batch "
        "processor (not sent).",
        "",
        "| | before | off | off − before | on | on − off |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    for kind, med in r["median"].items():
        lines.append(
            f"| {kind} | {med['before']:.1f} | {med['off']:.1f} | "
            f"{med['off'] - med['before']:+.1f} | {med['on']:.1f} | {med['on'] - med['off']:+.1f} |"
        )
    lines += ["", "Runs (µs):", ""]
    for kind, by in r["cpu_us"].items():
        for name, values in by.items():
            lines.append(f"* {kind} {name}: {', '.join(f'{v:.1f}' for v in values)}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
