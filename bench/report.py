"""RESULTS.json -> the targets of DESIGN.md section 7 (met / not met) and a Markdown report."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "throughput_vs_bare": "gateway >= 80% of the bare proxy's req/s (one worker)",
    "throughput_vs_litellm": "gateway >= 15x LiteLLM proxy's req/s (one process)",
    "overhead_p50": "overhead p50 < 0.5 ms at 500 req/s, 50 ms upstream (x-gateway-overhead-ms)",
    "overhead_p99": "overhead p99 < 2 ms at 500 req/s, 50 ms upstream (x-gateway-overhead-ms)",
    "overhead_e2e_p50": "overhead p50 < 0.5 ms at 500 req/s, end to end (gateway minus direct)",
    "overhead_e2e_p99": "overhead p99 < 2 ms at 500 req/s, end to end (gateway minus direct)",
    "ttft_added_p50": "time to first token added p50 < 1 ms",
    "streams_rss": "1,000 concurrent streams < 300 MB RSS",
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
    vs_bare = _medians(ratios, "gateway/bare")
    if vs_bare:
        put(
            "throughput_vs_bare",
            {f"c={c}": round(v, 3) for c, v in vs_bare.items()},
            all(v >= 0.8 for v in vs_bare.values()),
            "median of per-run ratios at every concurrency; met only if met at all",
        )
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
                {"gateway_ms": e2e, "bare_proxy_ms": _median(oh.get(f"added_e2e_bare_{q}_ms"))},
                e2e < limit,
                f"{q} of end-to-end latency through the gateway minus {q} direct to the "
                "upstream, same rate, same upstream work" + note,
            )
    st = scen.get("streaming", {})
    added = _median(st.get("ttft_added_p50_ms"))
    if added is not None:
        put(
            "ttft_added_p50",
            {"gateway_ms": added, "bare_proxy_ms": _median(st.get("ttft_added_bare_p50_ms"))},
            added < 1.0,
            "gateway TTFT p50 minus direct TTFT p50 (the bare proxy's shown beside it)",
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
            (rss < 300 if requested >= 1000 and opened >= 1000 else None),
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
    return out


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
        "## Targets (DESIGN.md section 7)",
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
            ("end-to-end, bare proxy", "e2e_bare_{}_ms"),
            ("end-to-end, gateway", "e2e_gateway_{}_ms"),
            ("added by the bare proxy (bare minus direct)", "added_e2e_bare_{}_ms"),
            ("added by the gateway (gateway minus direct)", "added_e2e_{}_ms"),
        ):
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
            ("bare proxy", "ttft_bare_{}_ms"),
            ("gateway", "ttft_gateway_{}_ms"),
            ("added by the bare proxy", "ttft_added_bare_{}_ms"),
            ("added by the gateway", "ttft_added_{}_ms"),
        ):
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


def _value(value: Any) -> str:
    if isinstance(value, dict):
        if "median" in value:
            return _fmt(value, 3)
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
