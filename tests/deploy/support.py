"""Helpers of the deployment tests: render the chart, read the Dockerfile, list exported metrics.

The chart is rendered with helm-python-sdk (Helm's Go SDK in a shared library: no helm binary, no
cluster). Metric names come from ``/metrics`` of a real app built in-process, so the dashboard and
the alerts are checked against what the gateway exports today, not against a list kept by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import promql_parser
import pytest
import yaml
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gateway"
PRODUCTION_VALUES = ROOT / "helm" / "ci" / "production-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RELEASE = "gw"
NAMESPACE = "llm"

# Kinds that kubernetes-validate has no schema for (prometheus-operator CRDs): checked
# structurally by the tests instead.
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})

# Series Prometheus itself adds to every scrape target; alerts may use them.
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


# ---- the chart -----------------------------------------------------------------------------------


def production_values() -> dict[str, Any]:
    """helm/ci/production-values.yaml as a dict."""
    values: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    return values


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Render the chart offline: template path -> rendered text (schema checked first).

    Raises:
        helm_python.HelmError: the values break the schema or a template ``fail``\\ s.
    """
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt and empty documents left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: a document is not a mapping"
                objects.append(doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` (fails if there are none or several)."""
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def gateway_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``gateway`` container of the Deployment."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = pod["containers"]
    return next(c for c in containers if c["name"] == "gateway")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's environment: name -> the EnvVar object."""
    return {e["name"]: e for e in container.get("env", [])}


# ---- PromQL --------------------------------------------------------------------------------------

_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def grafana_to_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: built-in interval variables become durations and
    template variables (``$route``, ``${variant}``) become a regex that matches anything."""
    for name, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """Parse ``expr`` (raises ``ValueError`` if it is not PromQL) and return every metric name it
    selects, including names given as ``{__name__="..."}``."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        selector: promql_parser.VectorSelector | None = None
        if isinstance(node, promql_parser.VectorSelector):
            selector = node
        elif isinstance(node, promql_parser.MatrixSelector):
            selector = node.vector_selector
        if selector is not None:
            if selector.name:
                names.add(selector.name)
            names.update(m.value for m in selector.matchers.matchers if m.name == "__name__")
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


# ---- promtool ------------------------------------------------------------------------------------

PROMTOOL = shutil.which("promtool")
REQUIRED = os.environ.get("GATEWAY_TESTS_REQUIRE_PROMTOOL") == "1"
"""Set by .ci/run: in CI a missing promtool fails the tests that need it instead of skipping."""
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not REQUIRED, reason="promtool not installed (.ci/run installs it)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Prometheus' promtool (Debian's ``prometheus`` package) with ``args``."""
    assert PROMTOOL is not None, "promtool is required here: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


# ---- /metrics of a real app ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedMetrics:
    """What ``GET /metrics`` of an app on config/gateway.yaml exports."""

    families: dict[str, str]
    """family name -> type (counter, gauge, histogram, ...)."""
    series_names: frozenset[str]
    """Every name a query can select: ``x_total`` of counters, ``x_bucket``/``_sum``/``_count``
    of histograms, gauges as they are."""


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@cache
def exported_metrics() -> ExportedMetrics:
    """Build the app in-process (SQLite flag store in a temporary directory, a client key) and
    scrape it once. Cached: every test of the session reads the same scrape.

    The client is not entered as a context manager, so the lifespan (flag sync, guard) does not
    run: every metric is registered when the app is built, and stopping the lifespan right after
    its start races the SQLite store's watch thread against ``aclose`` (reported, see the lead's
    notes), which would make this test flaky for a reason that is not the dashboard's."""
    import tempfile

    from gateway.app import create_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory(prefix="gateway-deploy-") as tmp:
        settings = Settings(
            _env_file=None,
            config=ROOT / "config" / "gateway.yaml",
            flag_store=f"sqlite:///{tmp}/flags.db",
            client_keys={"deploy-test": "sk-deploy-test"},
            admin_keys={},
        )
        response = TestClient(app=create_app(settings)).get("/metrics")
        assert response.status_code == 200, response.text
        text = response.text
    families: dict[str, str] = {}
    series: set[str] = set()
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        series.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        series.update(sample.name for sample in family.samples)
    return ExportedMetrics(families=families, series_names=frozenset(series))


# ---- the Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` as written (one line)."""

    keyword: str
    args: str
    stage: int
    """Index of the FROM stage it belongs to (0 = the first)."""

    def exec_form(self) -> list[str]:
        """The JSON-array form of CMD/ENTRYPOINT/HEALTHCHECK CMD (fails on the shell form)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD ") :].strip()
        parsed = json.loads(text)
        assert isinstance(parsed, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(part) for part in parsed]


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Parse a Dockerfile: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, re.sub(r"\s+", " ", args.strip()), stage))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def env_instructions(instructions: list[Instruction], stage: int) -> dict[str, str]:
    """``ENV`` of one stage as a dict (``KEY=VALUE`` pairs, quotes removed)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV" and ins.stage == stage:
            for match in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', ins.args):
                env[match.group(1)] = match.group(2).strip('"')
    return env


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over a relative path."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(relative: str, path: Path = DOCKERIGNORE) -> bool:
    """Whether the build context leaves ``relative`` out: the last pattern matching the path or
    one of its parent directories wins; ``!`` re-includes (Docker's rules)."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        rules.append((negate, _ignore_regex(pattern)))
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def context_files(source: Path) -> Iterator[Path]:
    """The files under ``source`` (itself if a file) that git would track: no caches."""
    if source.is_file():
        yield source
        return
    for file in sorted(source.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            yield file
