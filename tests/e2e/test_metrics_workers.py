"""Two workers, one truth: every scrape of ``GATEWAY_WORKERS=2`` counts every request.

Over real TCP: a gateway process with two uvicorn workers and the session's simulator process.
Requests go out on new connections until both workers have answered some (read from the
workers' own metric files, by pid), then several scrapes, each answered by whichever worker
the kernel hands the connection to, must all count exactly the requests sent.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests import quick_http
from tests.e2e.support import metric_value
from tests.processes import CLIENT_KEY, SimulatorProcess, routes_yaml, start_gateway

pytestmark = pytest.mark.e2e

BATCH = 20
MAX_REQUESTS = 400


def requests_by_worker(directory: Path) -> Counter[int]:
    """``gateway_requests_total`` per worker pid, from each worker's counter file."""
    served: Counter[int] = Counter()
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            if '"gateway_requests_total"' in key:
                served[pid] += int(value)
    return served


def test_every_scrape_counts_both_workers(tmp_path: Path, sim: SimulatorProcess) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left over from an earlier run")
    routes = routes_yaml(sim.url, route_extra="guard: {}")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with start_gateway(tmp_path, routes, env=env, workers=2) as gw:
        assert not (directory / "counter_1.db").exists(), "the directory is emptied at start"
        body = {
            "model": "support-triage",
            "messages": [{"role": "user", "content": "I was charged twice"}],
        }
        sent = 0
        while sent < MAX_REQUESTS:
            for _ in range(BATCH):  # a new connection each: the kernel picks the worker
                with quick_http.client(base_url=gw.url, timeout=30) as client:
                    reply = client.post(
                        "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {CLIENT_KEY}"},
                    )
                assert reply.status_code == 200, reply.text
                sent += 1
            if len([n for n in requests_by_worker(directory).values() if n]) >= 2:
                break
        assert len([n for n in requests_by_worker(directory).values() if n]) == 2
        for _ in range(6):
            with quick_http.client(base_url=gw.url, timeout=30) as client:
                text = client.get("/metrics").text
            assert metric_value(text, "gateway_requests_total") == sent
            assert metric_value(text, "gen_ai_client_operation_duration_seconds_count") == sent
            assert metric_value(text, "gateway_rollbacks_total", trigger="guard") == 0
            # A gauge combined over the live workers: nothing in flight, store reachable.
            assert metric_value(text, "gateway_inflight_requests") == 0
            assert metric_value(text, "gateway_flag_store_up") == 1
