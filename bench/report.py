"""RESULTS.json -> the targets (issue 11's, met / not met) and a Markdown report.

The reference is the raw floor (bench/raw_floor.py: bare ASGI on uvicorn, one aiohttp session):
every throughput target is a ratio to it (or of two workers to one), computed within each run.
"""

from __future__ import annotations

from typing import Any

TARGETS = {
    "throughput_vs_floor": "gateway, every feature on, one worker >= 0.6x the raw floor's req/s",
    "passthrough_vs_floor": "gateway, pass-through route, one worker >= 0.8x the raw floor's req/s",
    "two_workers": "gateway, two workers >= 1.7x one worker's req/s",
    "throughput_vs_litellm": "gateway >= 15x LiteLLM proxy's req/s (one process)",
    "overhead_e2e_p50": "added latency p50 < 0.5 ms at 500 req/s, 50 ms upstream "
    "(gateway minus direct)",
    "overhead_e2e_p99": "added latency p99 < 2 ms at 500 req/s, 50 ms upstream "
    "(gateway minus direct)",
    "overhead_p50": "in-handler overhead p50 < 0.5 ms at 500 req/s (x-gateway-overhead-ms)",
    "overhead_p99": "in-handler overhead p99 < 2 ms at 500 req/s (x-gateway-overhead-ms)",
    "ttft_added_p50": "time to first token added p50 < 0.5 ms (gateway minus direct)",
    "streams_per_s_vs_floor": "streams per second >= 0.6x the raw floor's",
    "streams_rss": "1,000 concurrent streams < 150 MB RSS",
    "rss_growth": "RSS growth < 10% across 100k requests",
    "flag_redis_p99": "flag change seen by every replica: p99 < 100 ms with Redis",
    "flag_sqlite_p99": "flag change seen by every replica: p99 < 1 s with SQLite",
}


def _median(entry: Any) -> float | None:
    if isinstance(entry, dict):
        value = entry.get("median")
        return None if value is None else float(value)
    return None


def _medians(ratios: dict[str, Any], key: str) -> dict[str, float]:
    found = {c: _median(r.get(key)) for c, r in ratios.items()}
    return {c: v for c, v in found.items() if v is not None}


def evaluate(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: value, met (True/False/None when not measured), and how it was judged."""
    scen = results.get("scenarios", {})
    out: dict[str, dict[str, Any]] = {}

    smoke = results.get("mode") == "smoke"

    def put(key: str, value: Any, met: bool | None, basis: str) -> None:
        if smoke and not key.startswith("flag_"):
            met, basis = None, "smoke mode: a number only, not the target's conditions"
        out[key] = {"target": TARGETS[key], "value": value, "met": met, "basis": basis}

    tp = scen.get("throughput", {})
    ratios = tp.get("ratios", {})
    for key, ratio_key, limit in (
        ("throughput_vs_floor", "gateway/floor", 0.6),
        ("passthrough_vs_floor", "gateway-passthrough/floor", 0.8),
        ("two_workers", "gateway-2w/gateway", 1.7),
    ):
        found = _medians(ratios, ratio_key)
        if not found:
            continue
        basis = (
            f"{ratio_key}: median of per-run ratios at every concurrency; met only if met at all"
        )
        met: bool | None = all(v >= limit for v in found.values())
        cpus = results.get("machine", {}).get("nproc") or 0
        if key == "two_workers" and cpus < 4:
            met = None  # two busy workers, wrk and nginx cannot all have a CPU of their own
            basis += (
                f"; not judged on {cpus} CPUs: the two workers share them with wrk and nginx "
                "(needs 4 or more)"
            )
        put(key, {f"c={c}": round(v, 3) for c, v in found.items()}, met, basis)
    vs_litellm = _medians(ratios, "gateway/litellm")
    if vs_litellm:
        put(
            "throughput_vs_litellm",
            {f"c={c}": round(v, 2) for c, v in vs_litellm.items()},
            all(v >= 15 for v in vs_litellm.values()),
            "median of per-run ratios at every concurrency; met only if met at all",
        )
    oh = scen.get("overhead", {})
    rate_ok = all(
        (_median(v) or 0) >= 0.95 * oh.get("rate", 500) for v in oh.get("achieved_rps", {}).values()
    )
    note = "" if rate_ok else " (the load generator did not reach the rate: see the table)"
    for q, limit in (("p50", 0.5), ("p99", 2.0)):
        header = _median(oh.get(f"header_overhead_{q}_ms"))
        if header is not None:
            put(
                f"overhead_{q}",
                header,
                header < limit,
                "x-gateway-overhead-ms: total minus time waiting on the upstream, measured in "
                "the gateway's handler (excludes the HTTP server before and after it, and the "
                "upstream client's own work, which counts as upstream time)" + note,
            )
        e2e = _median(oh.get(f"added_e2e_{q}_ms"))
        if e2e is not None:
            put(
                f"overhead_e2e_{q}",
                {
                    "gateway_ms": e2e,
                    "raw_floor_ms": _median(oh.get(f"added_e2e_floor_{q}_ms")),
                    "gateway_over_floor_ms": _median(oh.get(f"added_over_floor_{q}_ms")),
                },
                e2e < limit,
                f"{q} of end-to-end latency through the gateway minus {q} direct to the "
                "upstream, same rate, same upstream work (the raw floor's own hop and the "
                "gateway minus the raw floor shown beside it)" + note,
            )
    st = scen.get("streaming", {})
    added = _median(st.get("ttft_added_p50_ms"))
    if added is not None:
        put(
            "ttft_added_p50",
            {
                "gateway_ms": added,
                "raw_floor_ms": _median(st.get("ttft_added_floor_p50_ms")),
                "gateway_over_floor_ms": _median(st.get("ttft_added_over_floor_p50_ms")),
            },
            added < 0.5,
            "gateway TTFT p50 minus direct TTFT p50 (the raw floor's own and the gateway minus "
            "the raw floor shown beside it)",
        )
    streams_ratio = _median(
        (st.get("stream_throughput") or {}).get("ratios", {}).get("gateway/floor")
    )
    if streams_ratio is not None:
        put(
            "streams_per_s_vs_floor",
            round(streams_ratio, 3),
            streams_ratio >= 0.6,
            "20-chunk streams per second, closed loop; median of per-run ratios",
        )
    mem = scen.get("memory", {})
    streams = mem.get("open_streams")
    if streams:
        requested = streams.get("streams_requested", 0)
        opened = streams.get("streams_open") or 0
        rss = streams.get("rss_with_streams_mb")
        put(
            "streams_rss",
            {"rss_mb": rss, "streams_open": opened},
            (rss < 150 if requested >= 1000 and opened >= 1000 else None),
            "VmRSS summed over the gateway's processes with the streams open"
            + ("" if requested >= 1000 else f" (only {requested} streams in this mode)"),
        )
    reqs = mem.get("requests")
    if reqs:
        growth = reqs.get("growth_pct_from_warm")
        enough = reqs.get("requests_measured", 0) >= 100_000
        put(
            "rss_growth",
            {
                "from_warm_pct": growth,
                "from_start_pct": reqs.get("growth_pct_from_start"),
                "second_window_pct": reqs.get("growth_pct_second_window"),
                "feedback_1000_from_warm_pct": (mem.get("requests_feedback_1000") or {}).get(
                    "growth_pct_from_warm"
                ),
                "requests": reqs.get("requests_measured"),
            },
            (growth < 10 if enough else None),
            "RSS after the measured requests vs after the warm-up"
            + ("" if enough else " (fewer than 100k requests in this mode)"),
        )
    flags = scen.get("flag_propagation", {})
    for item in flags.get("results", []):
        key = {"redis": "flag_redis_p99", "sqlite": "flag_sqlite_p99"}.get(item.get("store"))
        if key:
            put(
                key,
                item.get("p99_ms"),
                item.get("meets_target"),
                f"bench/results/flag_propagation.json ({flags.get('measured_at')})",
            )
    return {key: out[key] for key in TARGETS if key in out}


def _fmt(entry: Any, digits: int = 1) -> str:
    if isinstance(entry, dict) and "median" in entry:
        if entry["median"] is None:
            return "-"
        text = f"{entry['median']:.{digits}f}"
        if len(entry.get("runs", [])) > 1:
            text += f" ({entry['min']:.{digits}f}–{entry['max']:.{digits}f})"
        return text
    if isinstance(entry, float):
        return f"{entry:.{digits}f}"
    return "-" if entry is None else str(entry)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    deps = ", ".join(f"{k} {v}" for k, v in m["gateway_deps"].items() if v)
    lines = [
        "# Benchmark results",
        "",
        f"Measured {results['finished_at']} by `{results['command']}` (mode `{results['mode']}`,"
        f" {results['plan']['runs']} run(s) of {results['plan']['duration']:g} s per point).",
        "Numbers are medians over the runs with (min–max); ratios are computed within a run,"
        " then the median is taken.",
        "",
        "## Machine",
        "",
        f"* {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB memory, Linux "
        f"{m['kernel']}",
        f"* load average (1, 5, 15 min): before {' '.join(map(str, results['load_before']))}, "
        f"after {' '.join(map(str, results['load_after']))}",
        f"* CPU placement: {results['placement']}",
        f"* Python {m['python']}; {deps}",
        f"* wrk {m['wrk'] or 'not installed'}, nginx {m['nginx'] or 'not installed'}, "
        f"LiteLLM {m['litellm'] or 'not installed'}, py-spy {m.get('py_spy') or 'not installed'}",
        "",
        "## Targets (bench/README.md)",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    for item in results.get("targets", {}).values():
        met = {True: "**met**", False: "**not met**", None: "not judged"}[item["met"]]
        lines.append(f"| {item['target']} | {_value(item['value'])} | {met} |")
    scen = results["scenarios"]
    if "throughput" in scen and "concurrency" in scen["throughput"]:
        tp = scen["throughput"]
        heads = [k for k in _HEADLINE if any(k in r for r in tp["ratios"].values())]
        lines += [
            "",
            "## Headline: throughput relative to the raw floor",
            "",
            "The raw floor is bench/raw_floor.py (bare ASGI on uvicorn + one aiohttp session);"
            " each ratio is taken within a run (same load, same minute), then the median over"
            " runs.",
            "",
            "| connections | raw floor req/s | " + " | ".join(heads) + " |",
            "| --: | --: |" + " --: |" * len(heads),
        ]
        for c, row in tp["concurrency"].items():
            floor = _fmt(row["floor"]["rps"], 0) if "floor" in row else "-"
            cells = [_fmt(tp["ratios"].get(c, {}).get(k), 3) for k in heads]
            lines.append(f"| {c} | {floor} | " + " | ".join(cells) + " |")
        lines += ["", "## Throughput (req/s)", "", tp["description"] + ".", ""]
        names: list[str] = []
        for row in tp["concurrency"].values():
            names += [n for n in row if n not in names]
        lines.append("| connections | " + " | ".join(names) + " |")
        lines.append("| --: |" + " --: |" * len(names))
        for c, row in tp["concurrency"].items():
            cells = [_fmt(row[n]["rps"], 0) if n in row else "" for n in names]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Server CPU time per request (ms; user + system, summed over the server's processes)"
            " and how busy the server was (CPU seconds per second; below 1.0 for a one-process "
            "server under saturating load means it did not get a whole core):",
            "",
            "| connections | " + " | ".join(names) + " |",
            "| --: |" + " --: |" * len(names),
        ]
        for c, row in tp["concurrency"].items():
            cells = [
                f"{_fmt(row[n]['cpu_ms_per_request'], 3)} / {_fmt(row[n]['cpu_util'], 2)}"
                if n in row
                else ""
                for n in names
            ]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| connections | ratio | median (min–max) | spread % |",
            "| --: | --- | --- | --: |",
        ]
        for c, ratios in tp["ratios"].items():
            for key, value in ratios.items():
                lines.append(f"| {c} | {key} | {_fmt(value, 3)} | {value.get('spread_pct')} |")
        errors = {
            f"{name}@{c}": row[name]["errors"]
            for c, row in tp["concurrency"].items()
            for name in row
            if row[name]["errors"]
        }
        lines += ["", f"Errors (non-2xx, timeouts): {errors or 'none'}."]
        p99 = (
            ", ".join(f"{n} {_fmt(row[n]['p99_ms'], 1)}" for n in row)
            if (row := tp["concurrency"].get("64"))
            else ""
        )
        if p99:
            lines += ["", f"Latency p99 at 64 connections (ms): {p99}."]
    if "overhead" in scen and "header_overhead_p50_ms" in scen["overhead"]:
        oh = scen["overhead"]
        lines += [
            "",
            "## Overhead (ms)",
            "",
            oh["description"] + f"; errors {oh['errors']}.",
            "",
            "| | p50 | p95 | p99 |",
            "| --- | --: | --: | --: |",
        ]
        for label, key in (
            ("x-gateway-overhead-ms", "header_overhead_{}_ms"),
            ("end-to-end, direct", "e2e_direct_{}_ms"),
            ("end-to-end, raw floor", "e2e_floor_{}_ms"),
            ("end-to-end, raw floor behind Litestar @asgi", "e2e_floor_litestar_{}_ms"),
            ("end-to-end, bare proxy", "e2e_bare_{}_ms"),
            ("end-to-end, gateway", "e2e_gateway_{}_ms"),
            ("added by the raw floor (floor minus direct)", "added_e2e_floor_{}_ms"),
            ("added by Litestar @asgi floor", "added_e2e_floor_litestar_{}_ms"),
            ("added by the bare proxy (bare minus direct)", "added_e2e_bare_{}_ms"),
            ("added by the gateway (gateway minus direct)", "added_e2e_{}_ms"),
            ("gateway minus raw floor", "added_over_floor_{}_ms"),
        ):
            if key.format("p50") not in oh:
                continue
            cells = [_fmt(oh[key.format(q)], 3) for q in ("p50", "p95", "p99")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"Achieved rate: {_value(oh['achieved_rps'])}.")
    if "streaming" in scen and "ttft_added_p50_ms" in scen["streaming"]:
        st = scen["streaming"]
        lines += [
            "",
            "## Streaming",
            "",
            st["description"] + f"; {st['streams_per_run_per_target']} streams per run and side.",
            "",
            "| time to first token (ms) | p50 | p90 | p99 |",
            "| --- | --: | --: | --: |",
        ]
        for label, key in (
            ("direct", "ttft_direct_{}_ms"),
            ("raw floor", "ttft_floor_{}_ms"),
            ("raw floor behind Litestar @asgi", "ttft_floor_litestar_{}_ms"),
            ("bare proxy", "ttft_bare_{}_ms"),
            ("gateway", "ttft_gateway_{}_ms"),
            ("added by the raw floor", "ttft_added_floor_{}_ms"),
            ("added by Litestar @asgi floor", "ttft_added_floor_litestar_{}_ms"),
            ("added by the bare proxy", "ttft_added_bare_{}_ms"),
            ("added by the gateway", "ttft_added_{}_ms"),
            ("gateway minus raw floor", "ttft_added_over_floor_{}_ms"),
        ):
            if key.format("p50") not in st:
                continue
            cells = [_fmt(st[key.format(q)], 3) for q in ("p50", "p90", "p99")]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        thr = st["stream_throughput"]
        lines += ["", thr["description"] + ":", ""]
        for c, row in thr["concurrency"].items():
            lines.append(
                f"* {c} connections: "
                + ", ".join(
                    f"{n} {_fmt(v['rps'], 0)} (errors {v['errors']})" for n, v in row.items()
                )
            )
        lines.append(
            "* ratios: "
            + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in thr["ratios"].items() if v is not None)
        )
    if "memory" in scen and "open_streams" in scen["memory"]:
        mem = scen["memory"]
        s = mem["open_streams"]
        lines += [
            "",
            "## Memory",
            "",
            f"* {s['streams_open']} of {s['streams_requested']} streams open: gateway RSS "
            f"{s['rss_idle_mb']} MiB idle -> {s['rss_with_streams_mb']} MiB "
            f"({s['rss_per_stream_kb']} KiB per stream); {s['rss_after_close_mb']} MiB after "
            f"the client closed them (in-flight gauge after close: {s['inflight_after_close']}).",
        ]
        for key in ("requests", "requests_feedback_1000"):
            r = mem.get(key)
            if not r:
                continue
            lines += [
                f"* Requests: {r['description']}.",
                "  RSS (MiB) at checkpoints: "
                + ", ".join(f"{c['requests']}: {c['rss_mb']}" for c in r["checkpoints"]),
                f"  Growth over the measured requests: {r['growth_pct_from_warm']}% from the "
                f"warm-up checkpoint, {r['growth_pct_from_start']}% from the fresh start"
                + (
                    f"; {r['growth_pct_second_window']}% over a second window of as many requests."
                    if r.get("growth_pct_second_window") is not None
                    else "."
                ),
            ]
    if scen.get("flag_propagation", {}).get("results"):
        fp = scen["flag_propagation"]
        lines += ["", "## Flag propagation (from bench/results/flag_propagation.json)", ""]
        lines += [
            "| store | changes | p50 ms | p99 ms | target | met |",
            "| --- | --: | --: | --: | --: | --- |",
        ]
        for item in fp["results"]:
            lines.append(
                f"| {item['store']} | {item.get('samples')} | {item.get('median_ms')} | "
                f"{item.get('p99_ms')} | {item.get('target_p99_ms')} ms | "
                f"{'yes' if item.get('meets_target') else 'no'} |"
            )
        lines += ["", f"Measured {fp.get('measured_at')} by bench/flag_propagation.py."]
    prof = scen.get("profile")
    if prof and "gateway" in prof and "samples" in prof["gateway"]:
        lines += ["", "## Profile", "", "See profile-summary.md; self time by package (%):", ""]
        for name, summary in prof.items():
            if "self_by_package_pct" in summary:
                top = list(summary["self_by_package_pct"].items())[:8]
                lines.append(f"* {name}: " + ", ".join(f"{k} {v}" for k, v in top))
    skipped = results.get("skipped", {})
    if skipped:
        lines += ["", "## Skipped", ""] + [f"* {k}: {v}" for k, v in skipped.items()]
    lines.append("")
    return "\n".join(lines)


_HEADLINE = (
    "gateway/floor",
    "gateway-passthrough/floor",
    "gateway-2w/gateway",
    "floor-litestar/floor",
    "bare/floor",
    "gateway/floor by CPU per request",
    "gateway/litellm",
    "floor-granian/floor",
    "gateway-granian/gateway",
)
"""Columns of the headline table (those measured in the run)."""


def _value(value: Any) -> str:
    if isinstance(value, dict):
        if "median" in value:
            return _fmt(value, 3)
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
