"""The Grafana dashboard and the alerts query metrics the gateway really exports.

Names are compared with ``/metrics`` of an app built in-process on config/gateway.yaml (see
``support.exported_metrics``); every query is parsed with promql-parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.telemetry.ramp_metrics import RAMP_STATES
from tests.deploy.support import (
    CHART,
    PROMETHEUS_SYNTHETIC,
    exported_metrics,
    grafana_to_promql,
    manifests,
    metric_names,
    needs_promtool,
    one,
    production_values,
    promtool,
    render,
)

DASHBOARD = CHART / "dashboards" / "gateway.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and template variable."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            assert found, f"variable {variable['name']}: {text}"
            yield f"variable {variable['name']!r}", found.group(1)


def test_scrape_exports_the_design_metrics() -> None:
    """The scrape the other tests compare with has the metrics of DESIGN.md section 4."""
    families = exported_metrics().families
    for name, kind in {
        "gateway_requests": "counter",
        "gateway_request_duration_seconds": "histogram",
        "gateway_overhead_seconds": "histogram",
        "gateway_upstream_duration_seconds": "histogram",
        "gateway_time_to_first_token_seconds": "histogram",
        "gateway_tokens": "counter",
        "gateway_cost_usd": "counter",
        "gateway_quality_checks": "counter",
        "gateway_failovers": "counter",
        "gateway_rollbacks": "counter",
        "gateway_flag_weight": "gauge",
        "gateway_inflight_requests": "gauge",
    }.items():
        assert families.get(name) == kind, (name, families.get(name))


def test_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"]
    assert dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in _panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_has_route_and_variant_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for name in ("route", "variant"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"]
        assert variables[name]["multi"]
    # Every series panel that has per-variant data filters on both variables.
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "variant" in target["legendFormat"]:
                assert '$route"' in target["expr"], target
                assert '$variant"' in target["expr"], target


def test_dashboard_scopes_every_query_by_cluster_namespace_and_job(
    dashboard: dict[str, Any],
) -> None:
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables[:4] == ["datasource", "cluster", "namespace", "job"]
    for name in ("cluster", "namespace", "job", "route"):
        (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
        assert variable["includeAll"], name
        assert variable["allValue"] == ".*", name  # also matches series without the label
    scope = 'cluster=~"$cluster", namespace=~"$namespace", job=~"$job"'
    for where, expr in _queries(dashboard):
        if where in ("variable 'cluster'",):
            continue
        exported = exported_metrics().series_names
        selectors = [
            selector
            for name, selector in re.findall(r"\b((?:gateway|gen_ai)_\w+)(\{[^}]*\})?", expr)
            if name in exported  # not a label name such as gen_ai_request_model
        ]
        assert selectors, where
        for selector in selectors:
            if where == "variable 'namespace'":
                assert selector == '{cluster=~"$cluster"}', where
            elif where == "variable 'job'":
                assert selector == '{cluster=~"$cluster", namespace=~"$namespace"}', where
            else:
                assert selector.startswith("{" + scope), (where, expr)


def test_dashboard_shows_the_gen_ai_shadow_feedback_and_guard_metrics(
    dashboard: dict[str, Any],
) -> None:
    text = "\n".join(expr for _, expr in _queries(dashboard))
    for metric in (
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_token_usage_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
        "gateway_shadow_comparisons_total",
        "gateway_feedback_total",
        "gateway_guard_failure_ratio",
        "gateway_guard_ceiling",
        "gateway_route_failure_ratio",
        "gateway_guard_outcomes",
        "gateway_guard_pending_rollbacks",
        "gateway_guard_evidence_up",
    ):
        assert metric in text, metric
    titles = " | ".join(p["title"].lower() for p in _panels(dashboard))
    for needed in ("shadow agreement", "feedback", "error_type", "time per output chunk"):
        assert needed in titles, needed


def test_every_dashboard_query_parses_and_names_an_exported_metric(
    dashboard: dict[str, Any],
) -> None:
    exported = exported_metrics().series_names
    queries = list(_queries(dashboard))
    assert len(queries) >= 15
    for where, expr in queries:
        names = metric_names(grafana_to_promql(expr))
        assert names, f"{where}: selects no metric: {expr}"
        unknown = names - exported
        assert not unknown, f"{where}: {sorted(unknown)} not exported by the gateway"


def test_dashboard_covers_what_operators_need(dashboard: dict[str, Any]) -> None:
    exprs = dict(_queries(dashboard))
    text = "\n".join(exprs.values())
    titles = " | ".join(p["title"].lower() for p in _panels(dashboard))
    for needed in (
        "requests per second",
        "decision mix",
        "tokens",
        "cost per hour",
        "request duration",
        "overhead",
        "time to first token",
        "quality pass rate",
        "failovers",
        "flag weight",
    ):
        assert needed in titles, needed
    for metric in (
        "gateway_requests_total",
        "gateway_tokens_total",
        "gateway_cost_usd_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_overhead_seconds_bucket",
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_quality_checks_total",
        "gateway_failovers_total",
        "gateway_flag_weight",
    ):
        assert metric in text, metric
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in text
    (rollbacks,) = [a for a in dashboard["annotations"]["list"] if a.get("name") == "Rollbacks"]
    assert "gateway_rollbacks_total" in rollbacks["expr"]
    assert rollbacks["enable"]


def _ramp_panels(dashboard: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    (step,) = [p for p in _panels(dashboard) if p["title"] == "Ramp step per route"]
    (state,) = [p for p in _panels(dashboard) if p["title"] == "Ramp state per route"]
    return step, state


def test_dashboard_shows_the_ramp_step_and_state_per_route(dashboard: dict[str, Any]) -> None:
    step, state = _ramp_panels(dashboard)
    for panel in (step, state):
        (target,) = panel["targets"]
        assert target["legendFormat"] == "{{route}}"
        assert 'route=~"$route"' in target["expr"]
    # Replicas report the same route: one series per route, never a sum over the replicas.
    (target,) = step["targets"]
    assert target["expr"].startswith("max by (route) (gateway_ramp_step{")
    assert state["type"] == "state-timeline"
    (target,) = state["targets"]
    assert "sum" not in target["expr"]
    for name in RAMP_STATES:
        assert f'state="{name}"' in target["expr"], name
    (mapping,) = state["fieldConfig"]["defaults"]["mappings"]
    texts = {option["text"] for option in mapping["options"].values()}
    assert texts == {*RAMP_STATES, "replicas disagree"}


@needs_promtool
def test_dashboard_ramp_queries_combine_the_replicas(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """promtool evaluates the ramp panels' queries (dashboard variables at "All") on three
    replicas' series: the state panel shows a state when every replica says it, and the
    disagreement otherwise (here a pod that has not read its flags and reports no state, every
    state 0; and a route no pod has read yet)."""
    step, state = _ramp_panels(dashboard)
    (mapping,) = state["fieldConfig"]["defaults"]["mappings"]
    code = {option["text"]: float(value) for value, option in mapping["options"].items()}
    # route -> what each of the three replicas reports: (state, step), state None: no state
    # (the pod has not read its flag); None: no such pod yet
    reports: dict[str, list[tuple[str | None, int] | None]] = {
        "support-triage": [("ramping", 1)] * 3,
        "billing": [("paused", 2)] * 3,
        "summaries": [("complete", 3)] * 3,
        "rolled-back": [("stopped", 1)] * 2 + [None],
        "new-pod": [("ramping", 2), ("ramping", 2), (None, 0)],
        "no-flag-read": [(None, 0)] * 3,
    }
    shown = {
        "support-triage": "ramping",
        "billing": "paused",
        "summaries": "complete",
        "rolled-back": "stopped",
        "new-pod": "replicas disagree",
        "no-flag-read": "replicas disagree",
    }
    series = []
    for route, pods in reports.items():
        for n, report in enumerate(pods):
            if report is None:
                continue
            labels = f'job="gw-gateway",namespace="llm",pod="gw-{n}",route="{route}"'
            series.append({"series": f"gateway_ramp_step{{{labels}}}", "values": f"{report[1]}x10"})
            for name in RAMP_STATES:
                series.append(
                    {
                        "series": f'gateway_ramp_state{{{labels},state="{name}"}}',
                        "values": f"{int(name == report[0])}x10",
                    }
                )
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": grafana_to_promql(state["targets"][0]["expr"]),
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{{route="{route}"}}', "value": code[text]}
                            for route, text in shown.items()
                        ],
                    },
                    {
                        "expr": grafana_to_promql(step["targets"][0]["expr"]),
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": f'{{route="{route}"}}',
                                "value": max(r[1] for r in pods if r),
                            }
                            for route, pods in reports.items()
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "rules.yaml").write_text("groups: []\n")
    (tmp_path / "dashboard_test.yaml").write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(tmp_path / "dashboard_test.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def alerts() -> dict[str, dict[str, Any]]:
    rule = one(manifests(render(production_values())), "PrometheusRule")
    return {a["alert"]: a for g in rule["spec"]["groups"] for a in g["rules"]}


def test_every_alert_parses_and_names_an_exported_metric(
    alerts: dict[str, dict[str, Any]],
) -> None:
    exported = exported_metrics().series_names | PROMETHEUS_SYNTHETIC
    for name, alert in alerts.items():
        names = metric_names(alert["expr"])
        assert names, name
        assert not names - exported, f"{name}: {sorted(names - exported)} not exported"
        assert alert["annotations"]["summary"], name


def test_the_alerts_the_issue_asks_for(alerts: dict[str, dict[str, Any]]) -> None:
    guard = alerts["GatewayGuardRollback"]["expr"]
    assert re.search(
        r'increase\(gateway_rollbacks_total\{[^}]*trigger="guard"[^}]*\}\[5m\]\)', guard
    )
    assert guard.rstrip().endswith("> 0")
    assert 'status=~"5.."' in alerts["GatewayHighErrorRate"]["expr"]
    overhead = alerts["GatewayHighOverhead"]["expr"]
    assert "histogram_quantile(0.99" in overhead
    assert "gateway_overhead_seconds_bucket" in overhead
    assert "gateway_flag_store_up" in alerts["GatewayFlagStoreDegraded"]["expr"]
    assert alerts["GatewayFlagStoreDegraded"]["expr"].rstrip().endswith("== 0")

    # The ramp's alerts read its state per route, every replica agreeing (min over pods: not a
    # sum, which would count replicas, nor one alert per pod).
    paused = alerts["GatewayRampPaused"]["expr"]
    assert re.fullmatch(
        r'min by \(route\) \(gateway_ramp_state\{[^}]*state="paused"\}\) == 1', paused.strip()
    ), paused
    stopped = alerts["GatewayRampStopped"]["expr"]
    assert re.match(
        r'min by \(route\) \(gateway_ramp_state\{[^}]*state="stopped"\}\) == 1', stopped
    )
    assert 'state=~"ramping|paused|complete"' in stopped


def test_alerts_are_scoped_to_the_release(alerts: dict[str, dict[str, Any]]) -> None:
    for name, alert in alerts.items():
        assert 'job="gw-gateway"' in alert["expr"], name
        assert 'namespace="llm"' in alert["expr"], name


def test_metric_names_rejects_broken_promql() -> None:
    """The parser the checks rely on does reject what Prometheus would."""
    for broken in ("sum(rate(x[5m])", "rate(x{a=}[5m])", "histogram_quantile(0.9, )"):
        with pytest.raises(ValueError, match=r"."):
            metric_names(broken)
