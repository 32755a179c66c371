"""The chart's alerts fire when they should: ``promtool test rules`` on the rendered rules.

The PrometheusRule is rendered from the chart (helm/ci/production-values.yaml), its groups
written as a Prometheus rule file, checked with ``promtool check rules`` and unit-tested with
``promtool test rules`` against tests/deploy/alert_rules_test.yaml (the first guard rollback, a
failover burst, the error ratio, the route failure ratio, a ramp paused for long and a ramp a
rollback stopped, with several replicas reporting each route). promtool comes from Debian's
``prometheus`` package, which .ci/run installs; without it these tests are skipped, except in CI
(``GATEWAY_TESTS_REQUIRE_PROMTOOL=1``, set by .ci/run), where they fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    ROOT,
    manifests,
    needs_promtool,
    one,
    production_values,
    promtool,
    render,
)
from tests.unit.test_docs_links import anchors

RULE_TESTS = Path(__file__).with_name("alert_rules_test.yaml")
RUNBOOKS = ROOT / "docs" / "runbooks.md"


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    rule = one(manifests(render(production_values())), "PrometheusRule")
    found: list[dict[str, Any]] = rule["spec"]["groups"]
    return found


@needs_promtool
def test_promtool_accepts_the_rendered_rules(groups: list[dict[str, Any]], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    done = promtool("check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_alerts_fire_in_promtool_unit_tests(
    groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    # Annotations other than runbook_url are prose with the firing value in them: the test file
    # checks the alerts' labels and their runbook_url.
    reduced = [
        {
            **group,
            "rules": [
                {**r, "annotations": {"runbook_url": r["annotations"]["runbook_url"]}}
                for r in group["rules"]
            ],
        }
        for group in groups
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": reduced}))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_tests_cover_the_alerts_the_issue_names() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    }
    needed = {
        "GatewayGuardRollback",
        "GatewayFailoverBurst",
        "GatewayHighErrorRate",
        "GatewayRouteUnhealthy",
        "GatewayRampPaused",
        "GatewayRampStopped",
    }
    assert needed <= tested


def test_ramp_paused_duration_and_labels_are_values() -> None:
    values = production_values()
    values["metrics"]["prometheusRule"]["rampPausedFor"] = "4h"
    values["metrics"]["prometheusRule"]["rampPausedLabels"] = {"severity": "info"}
    rule = one(manifests(render(values)), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    paused = alerts["GatewayRampPaused"]
    assert paused["for"] == "4h"
    assert "4h" in paused["annotations"]["summary"]
    # rampPausedLabels over alertLabels, for this alert only.
    assert paused["labels"] == {"severity": "info", "team": "ml-platform"}
    assert alerts["GatewayRampStopped"]["labels"] == {"severity": "warning", "team": "ml-platform"}
    default = one(manifests(render(production_values())), "PrometheusRule")
    (paused,) = [
        r for g in default["spec"]["groups"] for r in g["rules"] if r["alert"] == paused["alert"]
    ]
    assert paused["for"] == "1h"
    assert paused["labels"] == {"severity": "warning", "team": "ml-platform"}


def test_every_alert_has_a_runbook_section(groups: list[dict[str, Any]]) -> None:
    sections = anchors(RUNBOOKS)
    for group in groups:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            base, _, anchor = url.partition("#")
            assert base == "docs/runbooks.md", (rule["alert"], url)
            assert anchor == rule["alert"].lower(), (rule["alert"], url)
            assert anchor in sections, f"docs/runbooks.md has no section {rule['alert']}"
            assert rule["annotations"]["summary"], rule["alert"]


def test_the_runbook_base_url_is_a_value(tmp_path: Path) -> None:
    values = production_values()
    values["metrics"]["prometheusRule"]["runbookBaseUrl"] = "https://docs.example/runbooks"
    rule = one(manifests(render(values)), "PrometheusRule")
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "https://docs.example/runbooks#gatewayguardrollback" in urls
    assert all(url.startswith("https://docs.example/runbooks#") for url in urls)


def test_a_metrics_token_secret_reaches_the_gateway_and_the_service_monitor() -> None:
    values = production_values()
    values["metrics"]["token"] = {"existingSecret": "gateway-metrics", "key": "bearer"}
    objects = manifests(render(values))
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["GATEWAY_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "gateway-metrics",
        "key": "bearer",
    }
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "gateway-metrics", "key": "bearer"},
    }
    # Without the value, /metrics stays open and nothing refers to a token.
    plain = manifests(render(production_values()))
    assert "GATEWAY_METRICS_TOKEN" not in str(plain)
    (endpoint,) = one(plain, "ServiceMonitor")["spec"]["endpoints"]
    assert "authorization" not in endpoint
