"""The Helm chart, linted and rendered with Helm's Go SDK (helm-python-sdk), no cluster: every
object valid for Kubernetes (kubernetes-validate, strict), the things that matter asserted."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from gateway.config import load_config
from tests.deploy.support import (
    CHART,
    CRD_KINDS,
    NAMESPACE,
    ROOT,
    by_kind,
    env_of,
    gateway_container,
    manifests,
    one,
    production_values,
    render,
)

# The chart's minimum (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

SQLITE_MESSAGE = "each pod would have its own SQLite file"


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return manifests(render())


@pytest.fixture(scope="module")
def production_objects() -> list[dict[str, Any]]:
    return manifests(render(production_values()))


@pytest.fixture(params=["default", "production"])
def objects(
    request: pytest.FixtureRequest,
    default_objects: list[dict[str, Any]],
    production_objects: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = (
        default_objects if request.param == "default" else production_objects
    )
    return chosen


# ---- lint and schema validity --------------------------------------------------------------------


@pytest.mark.parametrize("values", ["default", "production"])
def test_helm_lint_strict_has_no_warning(values: str) -> None:
    report = helm.lint(
        CHART,
        None if values == "default" else production_values(),
        strict=True,
        namespace=NAMESPACE,
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, report
    assert not report["errors"], report


def test_every_object_is_valid_kubernetes(objects: list[dict[str, Any]]) -> None:
    checked = 0
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate: see test_prometheus_operator_objects
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 4


def test_strict_validation_catches_a_misspelt_field(
    default_objects: list[dict[str, Any]],
) -> None:
    """The validator is strict: an unknown field (a typo in a template) does not pass."""
    deployment = copy.deepcopy(one(default_objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_production_renders_every_optional_object(
    production_objects: list[dict[str, Any]],
) -> None:
    kinds = sorted({o["kind"] for o in production_objects})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    assert len(by_kind(production_objects, "ConfigMap")) == 2  # routes + dashboard


def test_default_renders_no_optional_object(default_objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in default_objects}
    assert not kinds & {"HorizontalPodAutoscaler", "PodDisruptionBudget", *CRD_KINDS}


def test_prometheus_operator_objects(production_objects: list[dict[str, Any]]) -> None:
    """The CRDs, structurally: what prometheus-operator reads, with the right types."""
    monitor = one(production_objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(production_objects, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]

    rule = one(production_objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert isinstance(group["name"], str)
        assert group["rules"]
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alert["alert"])
            assert isinstance(alert["expr"], str)
            assert all(isinstance(v, str) for v in alert["labels"].values())
            assert all(isinstance(v, str) for v in alert["annotations"].values())
            if "for" in alert:
                assert re.fullmatch(r"\d+[smh]", alert["for"])


# ---- the Deployment ------------------------------------------------------------------------------


def test_probes_point_at_readyz_and_healthz(objects: list[dict[str, Any]]) -> None:
    container = gateway_container(objects)
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_runs_the_image_command_non_root_read_only(objects: list[dict[str, Any]]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    assert "command" not in container
    assert container["args"] == ["serve"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    config_map = one_routes_configmap(objects)["metadata"]["name"]
    assert volumes[mounts["/etc/gateway"]]["configMap"]["name"] == config_map
    env = env_of(container)
    assert env["GATEWAY_HOST"]["value"] == "0.0.0.0"
    assert env["GATEWAY_CONFIG"]["value"] == "/etc/gateway/gateway.yaml"


def test_sqlite_data_dir_is_an_empty_dir(default_objects: list[dict[str, Any]]) -> None:
    pod = one(default_objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(default_objects)
    store = env_of(container)["GATEWAY_FLAG_STORE"]["value"]
    assert store.startswith("sqlite:///")
    data_dir = str(Path(store.removeprefix("sqlite:///")).parent)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == data_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume
    assert one(default_objects, "Deployment")["spec"]["replicas"] == 1


def test_redis_store_has_no_data_dir_and_takes_its_url_from_a_secret(
    production_objects: list[dict[str, Any]],
) -> None:
    container = gateway_container(production_objects)
    store = env_of(container)["GATEWAY_FLAG_STORE"]
    assert store["valueFrom"]["secretKeyRef"] == {"name": "gateway-redis", "key": "url"}
    assert "value" not in store
    assert env_of(container)["GATEWAY_FLAG_STORE_NAMESPACE"]["value"]
    assert "/var/lib/gateway" not in {m["mountPath"] for m in container["volumeMounts"]}
    # The HPA owns the replica count.
    assert "replicas" not in one(production_objects, "Deployment")["spec"]


@pytest.mark.parametrize(("grace", "pre_stop", "margin"), [(30, 5, 10), (7.5, 0, 3)])
def test_termination_grace_covers_the_drain(grace: float, pre_stop: int, margin: int) -> None:
    objects = manifests(
        render(
            {
                "shutdownGraceSeconds": grace,
                "preStopSleepSeconds": pre_stop,
                "terminationMarginSeconds": margin,
            }
        )
    )
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == pre_stop + int(-(-grace // 1)) + margin
    container = gateway_container(objects)
    assert float(env_of(container)["GATEWAY_SHUTDOWN_GRACE_S"]["value"]) == grace
    hook = container.get("lifecycle", {}).get("preStop")
    assert (hook["exec"]["command"] == ["sleep", str(pre_stop)]) if pre_stop else hook is None


# ---- secrets: referenced, never inlined ----------------------------------------------------------


def test_keys_come_from_secrets(objects: list[dict[str, Any]]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    env = env_of(container)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for setting, secret in (
        ("GATEWAY_CLIENT_KEYS_FILE", "gateway-client-keys"),
        ("GATEWAY_ADMIN_KEYS_FILE", "gateway-admin-keys"),
    ):
        path = Path(env[setting]["value"])
        name = next(n for n, m in mounts.items() if m == str(path.parent))
        assert volumes[name]["secret"]["secretName"] == secret
        assert [i["path"] for i in volumes[name]["secret"]["items"]] == [path.name]
    assert "GATEWAY_CLIENT_KEYS" not in env
    assert "GATEWAY_ADMIN_KEYS" not in env
    assert not by_kind(objects, "Secret"), "the chart creates no Secret: it references them"


def test_every_upstream_key_variable_is_a_secret_key_ref(objects: list[dict[str, Any]]) -> None:
    routes = yaml.safe_load(one_routes_configmap(objects)["data"]["gateway.yaml"])
    env = env_of(gateway_container(objects))
    wanted = {u["api_key_env"] for u in routes["upstreams"].values() if u.get("api_key_env")}
    assert wanted
    for name in wanted:
        assert set(env[name]) == {"name", "valueFrom"}
        assert env[name]["valueFrom"]["secretKeyRef"]["name"]


def test_production_upstream_key_override(production_objects: list[dict[str, Any]]) -> None:
    env = env_of(gateway_container(production_objects))
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "openai-credentials",
        "key": "api-key",
    }


def test_no_key_material_in_the_rendered_output() -> None:
    values = production_values()
    text = "\n".join(t for p, t in render(values).items() if p.endswith(".yaml"))
    assert not re.search(r"\bsk-[A-Za-z0-9_-]{8,}", text)
    assert not re.search(r"redis(s)?://[^\s\"']*:[^\s\"'@/]+@", text)
    for obj in manifests(render(values)):
        for container in (
            obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            for var in container.get("env", []):
                if re.search(r"KEY|TOKEN|SECRET|PASSWORD", var["name"]) and not var[
                    "name"
                ].endswith("_FILE"):
                    assert var["name"] == "GATEWAY_OVERRIDE_KEYS" or "valueFrom" in var, var


def test_upstream_key_without_a_secret_refuses_to_render() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"api_key_env=OPENAI_API_KEY needs a Secret"):
        render({"upstreamKeys": {"existingSecret": ""}})


def test_no_client_keys_refuses_to_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="refuses to serve without client keys"):
        render({"clientKeys": {"existingSecret": ""}})


# ---- tracing -------------------------------------------------------------------------------------

TRACING = {
    "enabled": True,
    "endpoint": "http://otel-collector.observability:4318",
    "ratio": 0.25,
    "headers": {"existingSecret": "otel-collector", "key": "otlp-headers"},
    "resourceAttributes": {"deployment.environment.name": "prod"},
}
POD = "gw-gateway-7d9f8c-x2x4q"


def _kubelet_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it for pod ``POD``: a fieldRef to
    metadata.name is the pod's name, a secretKeyRef stands for ``<secret>/<key>``, and
    ``$(NAME)`` in a value is expanded when NAME is defined earlier in the list."""
    built: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: built.get(m.group(1), m.group(0)),
                var["value"],
            )
        elif "fieldRef" in var["valueFrom"]:
            assert var["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name"}, var
            value = POD
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            value = f"{ref['name']}/{ref['key']}"
        built[var["name"]] = value
    return built


def test_tracing_is_off_by_default(objects: list[dict[str, Any]]) -> None:
    names = set(env_of(gateway_container(objects)))
    assert not {n for n in names if n.startswith("OTEL_")}, names
    assert "K8S_POD_NAME" not in names


def test_tracing_on_gives_the_pods_the_variables_the_gateway_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.telemetry.tracing import exporter_names

    values = production_values()
    values["tracing"] = TRACING
    objects = manifests(render(values))
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
    container = gateway_container(objects)
    env = env_of(container)
    assert env["OTEL_TRACES_EXPORTER"]["value"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == TRACING["endpoint"]
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
    # The collector's token is referenced, never written into the manifest.
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "name": "OTEL_EXPORTER_OTLP_HEADERS",
        "valueFrom": {"secretKeyRef": {"name": "otel-collector", "key": "otlp-headers"}},
    }
    assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"

    # What the gateway and the OpenTelemetry SDK make of the pod's environment.
    built = _kubelet_environment(container)
    assert exporter_names(built) == ["otlp"]
    for name, value in built.items():
        if name.startswith(("OTEL_", "K8S_")):
            monkeypatch.setenv(name, value)
    attributes = Resource.create().attributes
    assert attributes["service.name"] == "gw-gateway"
    assert attributes["k8s.namespace.name"] == NAMESPACE
    assert attributes["k8s.deployment.name"] == "gw-gateway"
    assert attributes["k8s.pod.name"] == POD
    assert attributes["deployment.environment.name"] == "prod"
    provider = TracerProvider()
    try:
        description = provider.sampler.get_description()
    finally:
        provider.shutdown()
    assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}"), description


def test_tracing_sampler_without_a_ratio_and_a_service_name() -> None:
    values: dict[str, Any] = {
        "tracing": {
            "enabled": True,
            "endpoint": "https://otlp.example.com",
            "sampler": "parentbased_always_on",
            "serviceName": "llm-gateway-eu",
        }
    }
    env = env_of(gateway_container(manifests(render(values))))
    assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_always_on"
    assert "OTEL_TRACES_SAMPLER_ARG" not in env
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env
    assert env["OTEL_SERVICE_NAME"]["value"] == "llm-gateway-eu"


def test_tracing_refuses_the_same_variable_from_extra_env() -> None:
    values = production_values()
    values["tracing"] = TRACING
    values["extraEnv"].append(
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "valueFrom": {"configMapKeyRef": {"name": "gateway-otel", "key": "endpoint"}},
        }
    )
    with pytest.raises(helm.HelmRenderError, match="extraEnv sets OTEL_EXPORTER_OTLP_ENDPOINT"):
        render(values)
    values["tracing"] = {"enabled": False}
    assert manifests(render(values)), "without tracing, extraEnv may set OTEL_* (as before)"


# ---- the values schema ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "3"}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"workers": 1.5}, "/workers"),
        ({"shutdownGraceSeconds": "30s"}, "/shutdownGraceSeconds"),
        ({"replicaCoun": 2}, "replicaCoun"),
        ({"clientKeys": {"existingSecret": "x", "key": "k", "keys": {"a": "sk-1"}}}, "clientKeys"),
        ({"env": {"GATEWAY_CLIENT_KEYS": '{"a": "sk-1"}'}}, "GATEWAY_CLIENT_KEYS"),
        ({"env": {"GATEWAY_API_TOKEN": "t"}}, "GATEWAY_API_TOKEN"),
        ({"extraEnv": [{"name": "OPENAI_API_KEY", "value": "sk-1"}]}, "/extraEnv"),
        (
            {"routes": {"upstreams": {"o": {"base_url": "http://o", "api_key": "sk-1"}}}},
            "/routes/upstreams/o",
        ),
        ({"flagStore": {"type": "redis", "redis": {"url": "redis://:pw@r:6379"}}}, "/url"),
        ({"flagStore": {"type": "etcd"}}, "/flagStore/type"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"prompts": {"../etc/passwd": "x"}}, "../etc/passwd"),
        ({"routes": {"prices": {}}}, "/routes"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/enabled"),
        ({"metrics": {"prometheusRule": {"rampPausedFor": "1 hour"}}}, "/rampPausedFor"),
        ({"tracing": {"enabled": True}}, "/tracing/endpoint"),
        ({"tracing": {"enabled": True, "endpoint": "otel:4317"}}, "/tracing/endpoint"),
        ({"tracing": {"endpoint": "https://u:pw@otlp.example.com"}}, "/tracing/endpoint"),
        ({"tracing": {"protocol": "grpc"}}, "'protocol' not allowed"),
        ({"tracing": {"headers": {"value": "authorization=Bearer x"}}}, "'value' not allowed"),
        ({"tracing": {"sampler": "ratio"}}, "/tracing/sampler"),
        ({"tracing": {"ratio": 1.5}}, "/tracing/ratio"),
        ({"tracing": {"resourceAttributes": {"k8s.pod.name": "x"}}}, "k8s.pod.name"),
        ({"tracing": {"resourceAttributes": {"team": "a,b=c"}}}, "/tracing/resourceAttributes"),
    ],
)
def test_schema_rejects(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render(values)


def test_schema_accepts_the_defaults_and_production() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(None)
        chart.validate_schema(production_values())
        schema = chart.schema
    assert schema is not None
    assert schema["properties"]["replicaCount"]["type"] == "integer"


@pytest.mark.parametrize(
    "values",
    [{"replicaCount": 2}, {"autoscaling": {"enabled": True}}],
    ids=["replicas", "hpa"],
)
def test_more_than_one_replica_needs_redis(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmRenderError) as raised:
        render(values)
    message = str(raised.value)
    assert SQLITE_MESSAGE in message
    assert "flagStore.type=redis" in message
    redis = {"type": "redis", "redis": {"existingSecret": "gateway-redis", "key": "url"}}
    assert manifests(render({**values, "flagStore": redis}))


def test_redis_without_url_or_secret_refuses_to_render() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"flagStore\.redis\.existingSecret"):
        render({"flagStore": {"type": "redis"}})


# ---- config: the ConfigMap is a routes file the gateway loads; changes roll the pods -------------


def one_routes_configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap mounted at /etc/gateway (not the dashboard's)."""
    return next(c for c in by_kind(objects, "ConfigMap") if "gateway.yaml" in c["data"])


def _mounted_config(objects: list[dict[str, Any]], into: Path) -> Path:
    """Write the routes ConfigMap as the kubelet would mount it (the volume's items)."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    data = one_routes_configmap(objects)["data"]
    assert volume["configMap"]["name"] == one_routes_configmap(objects)["metadata"]["name"]
    for item in volume["configMap"]["items"]:
        target = into / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]], encoding="utf-8")
    assert set(data) == {i["key"] for i in volume["configMap"]["items"]}
    return into / "gateway.yaml"


def test_mounted_routes_file_loads_in_the_gateway(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = load_config(_mounted_config(objects, tmp_path))
    assert "support-triage" in config.routes
    route = config.routes["support-triage"]
    assert route.candidate == "finetuned"
    assert route.fallback == "prompted"


def test_prompt_files_reach_their_variant(
    production_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = load_config(_mounted_config(production_objects, tmp_path))
    prompted = config.routes["support-triage"].variants["prompted"]
    assert prompted.system_prompt
    assert "triage assistant" in prompted.system_prompt
    assert len(prompted.few_shot) == 6


def test_routes_file_and_prompts_from_set_file(tmp_path: Path) -> None:
    """``--set-file routes=config/openai.example.yaml`` and the prompt files, as the docs say: the
    mounted file is the repository's, byte for byte, and the gateway loads it."""
    prompts = sorted((ROOT / "config" / "prompts").rglob("*.*"))
    expression = ",".join(
        [
            f"routes={ROOT / 'config' / 'openai.example.yaml'}",
            *(
                "prompts." + p.relative_to(ROOT / "config").as_posix().replace(".", "\\.") + f"={p}"
                for p in prompts
            ),
        ]
    )
    values = helm.parse_set_file(expression)
    objects = manifests(render(values))
    config_file = _mounted_config(objects, tmp_path)
    original = (ROOT / "config" / "openai.example.yaml").read_text(encoding="utf-8")
    assert config_file.read_text(encoding="utf-8").rstrip() == original.rstrip()
    for prompt in prompts:
        mounted = tmp_path / prompt.relative_to(ROOT / "config")
        assert mounted.read_text(encoding="utf-8") == prompt.read_text(encoding="utf-8")
    config = load_config(config_file)
    assert config.routes["support-triage"].variants["prompted"].few_shot


def test_routes_text_that_is_not_a_routes_file_refuses_to_render() -> None:
    with pytest.raises(helm.HelmRenderError, match="needs 'upstreams' and 'routes'"):
        render({"routes": "just: text\n"})
    with pytest.raises(helm.HelmRenderError, match="not valid YAML"):
        render({"routes": "routes: [unclosed\n"})


def test_routes_value_replaces_the_example(production_objects: list[dict[str, Any]]) -> None:
    example = (CHART / "files" / "routes.example.yaml").read_text(encoding="utf-8")
    default = one_routes_configmap(manifests(render()))["data"]["gateway.yaml"]
    assert default.rstrip() == example.rstrip()
    production = yaml.safe_load(one_routes_configmap(production_objects)["data"]["gateway.yaml"])
    assert production == production_values()["routes"], "no key of the example merged in"


def _checksum(values: dict[str, Any]) -> str:
    deployment = one(manifests(render(values)), "Deployment")
    checksum: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", checksum)
    return checksum


def test_config_checksum_changes_when_routes_or_prompts_change() -> None:
    base = production_values()
    changed_route = copy.deepcopy(base)
    changed_route["routes"]["routes"]["support-triage"]["flag"]["weight"] = 5000
    new_route = copy.deepcopy(base)
    new_route["routes"]["routes"]["billing-summary"] = copy.deepcopy(
        base["routes"]["routes"]["support-triage"]
    )
    changed_prompt = copy.deepcopy(base)
    changed_prompt["prompts"]["prompts/support-triage/system.md"] += "Be brief.\n"
    unrelated = copy.deepcopy(base)
    unrelated["resources"]["limits"]["memory"] = "2Gi"

    checksums = [_checksum(v) for v in (base, changed_route, new_route, changed_prompt)]
    assert len(set(checksums)) == 4, "every config change rolls the pods"
    assert _checksum(unrelated) == checksums[0], "a non-config change keeps the checksum"


# ---- the rest ------------------------------------------------------------------------------------


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(
    objects: list[dict[str, Any]],
) -> None:
    (dashboard,) = [c for c in by_kind(objects, "ConfigMap") if "gateway.json" in c["data"]]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["gateway.json"])["title"]
    assert dashboard["data"]["gateway.json"] == (CHART / "dashboards" / "gateway.json").read_text(
        encoding="utf-8"
    ).rstrip("\n")


def test_hpa_and_pdb_target_the_deployment(production_objects: list[dict[str, Any]]) -> None:
    deployment = one(production_objects, "Deployment")
    hpa = one(production_objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == 3
    pdb = one(production_objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_notes_name_the_secrets_to_create() -> None:
    notes = next(t for p, t in render(production_values()).items() if p.endswith("NOTES.txt"))
    for secret in ("gateway-client-keys", "gateway-admin-keys", "openai-credentials"):
        assert secret in notes
    assert "port-forward" in notes
    assert "gateway flags" in notes
