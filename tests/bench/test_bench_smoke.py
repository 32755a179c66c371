"""The benchmark command runs (``bench/run --smoke``): Python pieces only, a few seconds.

Smoke mode starts the simulator, the raw floor (bare and behind Litestar's ``@asgi``), the bare
proxy and the gateway on loopback and drives them with bench/loadgen.py (no nginx, wrk or
LiteLLM needed). Only that every scenario produced a number is checked here; speed is judged by
the full benchmark (bench/RESULTS.md), never by a test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def _number(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("median")
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_bench_smoke_produces_a_number_for_every_scenario(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--no-pin", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "BENCH_WORK_DIR": str(tmp_path / "work")},  # concurrent runs apart
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "RESULTS.json").read_text())
    assert (tmp_path / "RESULTS.md").read_text().startswith("# Benchmark results")
    scenarios = results["scenarios"]
    for name in ("throughput", "overhead", "streaming", "memory"):
        assert "error" not in scenarios[name], scenarios[name]

    throughput = scenarios["throughput"]["concurrency"]["8"]
    rows = ("direct", "floor", "floor-litestar", "bare", "gateway", "gateway-passthrough")
    for target in rows:
        assert _number(throughput[target]["rps"]), throughput[target]
        assert throughput[target]["rps"]["median"] > 0
        assert throughput[target]["errors"] == 0, throughput[target]
    for key in ("gateway/floor", "gateway-passthrough/floor", "floor-litestar/floor", "bare/floor"):
        assert _number(scenarios["throughput"]["ratios"]["8"][key]), key

    overhead = scenarios["overhead"]
    for key in (
        "header_overhead_p50_ms",
        "header_overhead_p99_ms",
        "added_e2e_p50_ms",
        "added_e2e_floor_p50_ms",
        "added_over_floor_p99_ms",
    ):
        assert _number(overhead[key]), (key, overhead[key])
    assert set(overhead["errors"].values()) == {0}, overhead["errors"]

    streaming = scenarios["streaming"]
    for key in ("ttft_added_p50_ms", "ttft_added_floor_p50_ms", "ttft_added_over_floor_p50_ms"):
        assert _number(streaming[key]), key
    assert streaming["ttft_errors"] == 0
    for row in streaming["stream_throughput"]["concurrency"].values():
        for target in ("direct", "floor", "gateway"):  # smoke mode: no other proxy here
            assert row[target]["rps"]["median"] > 0, row[target]
    assert _number(streaming["stream_throughput"]["ratios"]["gateway/floor"])

    memory = scenarios["memory"]
    assert memory["open_streams"]["streams_open"] == memory["open_streams"]["streams_requested"]
    assert _number(memory["open_streams"]["rss_with_streams_mb"])
    assert _number(memory["requests"]["growth_pct_from_warm"])
    assert all(item["met"] is None or "flag" in key for key, item in results["targets"].items())
