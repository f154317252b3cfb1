"""The Monitoring component: built-in Prometheus (declared targets, alert rules) and Grafana."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from mlplane.core import kube
from mlplane.config import AlertsConfig, PrometheusConfig, parse_platform
from mlplane.services.monitoring import CONFIG_FILE, DATASOURCE_UID, Monitoring, MonitoringArgs
from mlplane.services.prometheus_config import (
    RULES_FILE,
    check_targets,
    dashboards,
    literal,
    meta_label,
    rate_window,
    retention_size,
    rules,
)
from mlplane.tooling.render import SECRET_MASK, Capture, capture
from mlplane.services.serving import ServedModel

from conftest import Root, fake_secret, opts

GATEWAY = kube.GatewayRef(name="mlplane", namespace="mlplane-routing", domain="mlplane.localhost", http_port=8080)
ENVOY = kube.ScrapeTarget(
    job="envoy",
    namespace="envoy-gateway-system",
    selector={"app.kubernetes.io/name": "envoy", "gateway.envoyproxy.io/owning-gateway-name": "mlplane"},
    port="metrics",
    path="/stats/prometheus",
)
IRIS = ServedModel("iris", "mlplane-serving", "iris", "http://iris.mlplane.localhost", "iris-classifier", "v3", "v4", 10)
WINE = ServedModel("wine", "mlplane-serving", "wine", "http://wine.mlplane.localhost", "wine", "champion")
PREFIX = "mlplane-monitoring"


def tracking_target() -> kube.ScrapeTarget:
    """A target whose namespace is an Output, as components hand them over."""
    return kube.ScrapeTarget("mlflow", pulumi.Output.from_input("mlplane-tracking"), {"app.kubernetes.io/name": "mlflow"}, "metrics")


def builder(targets: Sequence[kube.ScrapeTarget] | None = None, models: Sequence[ServedModel] = (IRIS, WINE)):
    def build(platform, config, root) -> dict[str, Any]:
        chosen = [ENVOY, tracking_target()] if targets is None else list(targets)
        monitoring = Monitoring(PREFIX, MonitoringArgs(config.monitoring, platform, GATEWAY, chosen, list(models), prometheus_route=True), opts(root))
        return {
            "monitoring": monitoring,
            "grafana_url": monitoring.grafana_url,
            "grafana_admin_password": monitoring.grafana_admin_password,
            "prometheus_url": monitoring.prometheus_url,
            "prometheus_internal_url": monitoring.prometheus_internal_url,
        }

    return build


def manifest(result: Capture, name: str) -> dict[str, Any]:
    return result.named(name).manifest()


def prometheus_files(result: Capture) -> tuple[dict[str, Any], dict[str, Any]]:
    data = manifest(result, f"{PREFIX}-prometheus-config")["data"]
    return yaml.safe_load(data[CONFIG_FILE]), yaml.safe_load(data[RULES_FILE])


def pod_spec(result: Capture, name: str) -> dict[str, Any]:
    return manifest(result, name)["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


@pytest.fixture(scope="module")
def default_run() -> tuple[Capture, dict[str, Any]]:
    """The default config with two targets and two models, rendered once for the read-only tests.

    Same program as conftest's ``run_component``, at module scope so the read-only tests share it.
    """
    config = parse_platform({})
    box: dict[str, Any] = {}

    def program() -> None:
        provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
        platform = kube.Platform(name=config.name, provider=provider, protect_stateful=True, secret=fake_secret)
        box.update(builder()(platform, config, Root(provider)))
        for key, value in box.items():
            if isinstance(value, pulumi.Output):
                pulumi.export(key, value)

    result = capture(program)
    return result, {k: result.outputs.get(k, v) for k, v in box.items()}


# ---------------------------------------------------------------------------------- structure


def test_creates_prometheus_and_grafana_with_pinned_names_and_parents(default_run):
    result, _ = default_run
    assert result.named(PREFIX).type == "mlplane:monitoring:Monitoring"
    children = {r.name: r.type for r in result.resources if r.parent and r.parent.endswith(f"::{PREFIX}")}
    assert children == {
        f"{PREFIX}-namespace": "kubernetes:core/v1:Namespace",
        f"{PREFIX}-prometheus-service-account": "kubernetes:core/v1:ServiceAccount",
        f"{PREFIX}-scrape-envoy-role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
        f"{PREFIX}-scrape-envoy-role-binding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        f"{PREFIX}-scrape-mlflow-role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
        f"{PREFIX}-scrape-mlflow-role-binding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
        f"{PREFIX}-prometheus-config": "kubernetes:core/v1:ConfigMap",
        f"{PREFIX}-prometheus-service": "kubernetes:core/v1:Service",
        f"{PREFIX}-prometheus-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-prometheus-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-default-deny": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-allow-dns": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-prometheus-statefulset": "kubernetes:apps/v1:StatefulSet",
        f"{PREFIX}-prometheus-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        f"{PREFIX}-grafana-password": "random:index/randomPassword:RandomPassword",
        f"{PREFIX}-grafana-admin": "kubernetes:core/v1:Secret",
        f"{PREFIX}-grafana-provisioning": "kubernetes:core/v1:ConfigMap",
        f"{PREFIX}-grafana-dashboards": "kubernetes:core/v1:ConfigMap",
        f"{PREFIX}-grafana-deployment": "kubernetes:apps/v1:Deployment",
        f"{PREFIX}-grafana-service": "kubernetes:core/v1:Service",
        f"{PREFIX}-grafana-network-policy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-grafana-egress": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"{PREFIX}-grafana-route": "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
    }
    objects = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in result.manifests()}
    for kind, name in (("StatefulSet", "prometheus"), ("Deployment", "grafana"), ("HTTPRoute", "prometheus"), ("HTTPRoute", "grafana")):
        assert (kind, "mlplane-monitoring", name) in objects
    labels = manifest(result, f"{PREFIX}-namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[kube.GATEWAY_ACCESS] == "true"


def test_outputs_urls_secret_password_and_uis(default_run):
    result, out = default_run
    assert out["grafana_url"] == "http://grafana.mlplane.localhost:8080"
    assert out["prometheus_url"] == "http://prometheus.mlplane.localhost:8080"
    assert out["prometheus_internal_url"] == "http://prometheus.mlplane-monitoring.svc.cluster.local:9090"
    assert out["grafana_admin_password"] == SECRET_MASK
    monitoring = out["monitoring"]
    assert [(ui.key, ui.url) for ui in monitoring.uis] == [
        ("grafana", "http://grafana.mlplane.localhost:8080"),
        ("prometheus", "http://prometheus.mlplane.localhost:8080"),
    ]
    assert monitoring.scrape_targets == []
    routes = {manifest(result, f"{PREFIX}-{n}-route")["spec"]["hostnames"][0] for n in ("grafana", "prometheus")}
    assert routes == {"grafana.mlplane.localhost", "prometheus.mlplane.localhost"}


# ------------------------------------------------------------------------------ scrape config


def test_rendered_config_lists_exactly_the_jobs_passed_in_plus_prometheus_itself(default_run):
    result, _ = default_run
    config, _ = prometheus_files(result)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["prometheus", "envoy", "mlflow"]
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert config["rule_files"] == [RULES_FILE]
    assert config["global"] == {"scrape_interval": "30s", "evaluation_interval": "30s"}


@pytest.mark.parametrize("jobs", [[], ["envoy"], ["envoy", "mlflow", "seaweedfs"]])
def test_rendered_config_follows_the_targets_that_exist(run_component, jobs):
    targets = [kube.ScrapeTarget(job, f"ns-{job}", {"app": job}, "metrics") for job in jobs]
    result, _ = run_component(builder(targets))
    config, _ = prometheus_files(result)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["prometheus", *jobs]
    roles = sorted((m["metadata"]["namespace"], m["metadata"]["name"]) for m in result.manifests() if m["kind"] == "Role")
    assert roles == sorted((f"ns-{job}", f"mlplane-prometheus-{job}") for job in jobs)


def test_each_job_discovers_pods_in_its_namespace_only_and_keeps_selector_and_port(default_run):
    result, _ = default_run
    config, _ = prometheus_files(result)
    envoy = next(job for job in config["scrape_configs"] if job["job_name"] == "envoy")
    assert envoy["metrics_path"] == "/stats/prometheus"
    assert envoy["kubernetes_sd_configs"] == [
        {
            "role": "pod",
            "namespaces": {"names": ["envoy-gateway-system"]},
            "selectors": [{"role": "pod", "label": "app.kubernetes.io/name=envoy,gateway.envoyproxy.io/owning-gateway-name=mlplane"}],
        }
    ]
    keeps = [(r["source_labels"][0], r["regex"]) for r in envoy["relabel_configs"] if r["action"] == "keep"]
    assert keeps == [
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "envoy"),
        ("__meta_kubernetes_pod_label_gateway_envoyproxy_io_owning_gateway_name", "mlplane"),
        ("__meta_kubernetes_pod_container_port_name", "metrics"),
    ]
    mlflow = next(job for job in config["scrape_configs"] if job["job_name"] == "mlflow")
    assert mlflow["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["mlplane-tracking"]}
    assert mlflow["metrics_path"] == "/metrics"


def test_label_values_are_matched_literally():
    assert meta_label("app.kubernetes.io/name") == "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert literal("a.b+c") == r"a\.b\+c"
    assert literal("mlflow-server") == "mlflow-server"


def test_prometheus_may_list_pods_only_in_the_scraped_namespaces(default_run):
    result, _ = default_run
    kinds = {m["kind"] for m in result.manifests()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = {m["metadata"]["namespace"]: m for m in result.manifests() if m["kind"] == "Role"}
    assert set(roles) == {"envoy-gateway-system", "mlplane-tracking"}
    for role in roles.values():
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    for binding in (m for m in result.manifests() if m["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "mlplane-monitoring"}]
        assert binding["roleRef"]["name"] == roles[binding["metadata"]["namespace"]]["metadata"]["name"]


@pytest.mark.parametrize(
    ("jobs", "message"),
    [(["envoy", "envoy"], "declared twice"), (["prometheus"], "reserved"), (["Envoy_Proxy"], "DNS label")],
)
def test_targets_prometheus_could_not_tell_apart_are_rejected(jobs, message):
    with pytest.raises(ValueError, match=message):
        check_targets([kube.ScrapeTarget(job, "ns", {"app": "x"}, "metrics") for job in jobs])


# ------------------------------------------------------------------------------------- rules


def test_each_model_gets_recording_rules_labelled_with_its_name(default_run):
    result, _ = default_run
    _, document = prometheus_files(result)
    models_group = next(g for g in document["groups"] if g["name"] == "mlplane-models")
    by_model: dict[str, list[str]] = {}
    for rule in models_group["rules"]:
        by_model.setdefault(rule["labels"]["model"], []).append(rule["record"])
    expected = [
        "mlplane:model_info",
        "mlplane:model_request_rate",
        "mlplane:model_error_rate",
        "mlplane:model_error_ratio",
        "mlplane:model_latency_p99_seconds",
    ]
    assert by_model == {"iris": expected, "wine": expected}
    info = next(r for r in models_group["rules"] if r["record"] == "mlplane:model_info" and r["labels"]["model"] == "iris")
    assert info["labels"]["envoy_cluster_name"] == "httproute/mlplane-serving/iris/rule/0"
    assert (info["labels"]["version"], info["labels"]["canary_version"], info["labels"]["canary_weight"]) == ("v3", "v4", "10")
    rate = next(r for r in models_group["rules"] if r["record"] == "mlplane:model_request_rate" and r["labels"]["model"] == "wine")
    assert 'envoy_cluster_name="httproute/mlplane-serving/wine/rule/0"' in rate["expr"]


def test_latency_rule_turns_envoy_milliseconds_into_seconds():
    document = rules([IRIS], AlertsConfig(model_p99_latency_seconds=0.25), "5m")
    records = {r["record"]: r["expr"] for r in document["groups"][0]["rules"] if "record" in r}
    latency = records["mlplane:model_latency_p99_seconds"]
    assert latency.startswith("histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{")
    assert latency.endswith(") / 1000")
    alerts = {r["alert"]: r for r in document["groups"][1]["rules"]}
    assert alerts["ModelLatencyHigh"]["expr"] == "mlplane:model_latency_p99_seconds > 0.25"


def test_alerts_use_the_configured_thresholds_and_hold_time():
    alerts = AlertsConfig.model_validate({"model_error_rate": 0.1, "model_p99_latency_seconds": 2.5, "for": "10m"})
    document = rules([IRIS], alerts, "5m")
    by_name = {r["alert"]: r for r in document["groups"][-1]["rules"]}
    assert set(by_name) == {"TargetDown", "ModelErrorRateHigh", "ModelLatencyHigh"}
    assert by_name["TargetDown"]["expr"] == "up == 0"
    assert by_name["ModelErrorRateHigh"]["expr"] == "mlplane:model_error_ratio > 0.1"
    assert by_name["ModelLatencyHigh"]["expr"] == "mlplane:model_latency_p99_seconds > 2.5"
    assert {r["for"] for r in by_name.values()} == {"10m"}
    assert by_name["TargetDown"]["labels"] == {"severity": "critical"}


def test_without_models_only_the_alerts_group_is_rendered():
    document = rules([], AlertsConfig(), "5m")
    assert [g["name"] for g in document["groups"]] == ["mlplane-alerts"]


@pytest.mark.parametrize(("interval", "window"), [("15s", "5m"), ("30s", "5m"), ("90s", "6m"), ("2m", "8m"), ("100s", "400s")])
def test_model_rates_always_span_at_least_four_scrapes(interval, window):
    assert rate_window(interval) == window


def test_rules_are_plain_yaml_without_anchors(default_run):
    result, _ = default_run
    text = manifest(result, f"{PREFIX}-prometheus-config")["data"][RULES_FILE]
    assert "&id" not in text and "*id" not in text


# -------------------------------------------------------------------------------- prometheus


def test_prometheus_keeps_data_on_a_protected_volume_within_retention(default_run, run_component):
    result, _ = default_run
    record = result.named(f"{PREFIX}-prometheus-statefulset")
    assert record.protect and record.retain_on_delete
    spec = record.manifest()["spec"]
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=7d" in args
    assert "--storage.tsdb.retention.size=4096MB" in args
    assert "--web.external-url=http://prometheus.mlplane.localhost:8080" in args
    raw = {"lifecycle": {"throwaway": True}, "monitoring": {"prometheus": {"retention": "2d", "storage_size": "10Gi"}}}
    result, _ = run_component(builder(), raw, protect=False)
    record = result.named(f"{PREFIX}-prometheus-statefulset")
    assert not record.protect and not record.retain_on_delete
    args = record.manifest()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=2d" in args
    assert retention_size("10Gi") == "8192MB"


def test_prometheus_pod_meets_the_baseline_and_uses_its_token_for_discovery(default_run):
    result, _ = default_run
    statefulset = manifest(result, f"{PREFIX}-prometheus-statefulset")
    skips = statefulset["metadata"]["annotations"].values()
    assert any(v.startswith("CKV_K8S_38=") for v in skips) and any(v.startswith("CKV_K8S_43=") for v in skips)
    spec = statefulset["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "prometheus"
    assert spec["automountServiceAccountToken"] is True
    assert spec["securityContext"]["runAsUser"] == 65534
    container = spec["containers"][0]
    assert container["image"] == "docker.io/prom/prometheus:v3.15.1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "256Mi"}
    assert {p: container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {
        "livenessProbe": "/-/healthy",
        "readinessProbe": "/-/ready",
        "startupProbe": "/-/ready",
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/prometheus": "config", "/prometheus": "data"}
    account = manifest(result, f"{PREFIX}-prometheus-service-account")
    assert account["automountServiceAccountToken"] is False


def test_a_config_change_rolls_the_pods(run_component, default_run):
    result, _ = default_run
    raw = {"monitoring": {"prometheus": {"scrape_interval": "15s"}}}
    changed, _ = run_component(builder(), raw)

    def checksums(capture: Capture) -> tuple[str, str]:
        return tuple(
            manifest(capture, f"{PREFIX}-{name}")["spec"]["template"]["metadata"]["annotations"]["mlplane.dev/config-checksum"]
            for name in ("prometheus-statefulset", "grafana-deployment")
        )

    before, after = checksums(result), checksums(changed)
    assert before[0] != after[0]
    assert before[1] == after[1]


# ----------------------------------------------------------------------------------- grafana


def test_grafana_admin_password_is_generated_secret_and_read_from_a_mounted_secret(default_run):
    result, _ = default_run
    assert result.named(f"{PREFIX}-grafana-admin").masked_inputs()["stringData"] == SECRET_MASK
    spec = pod_spec(result, f"{PREFIX}-grafana-deployment")
    container = spec["containers"][0]
    env = {name: e["value"] for name, e in env_of(container).items()}
    assert env["GF_SECURITY_ADMIN_USER__FILE"] == "/etc/grafana/secrets/user"
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/etc/grafana/secrets/password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    volume = next(v for v in spec["volumes"] if v["name"] == "admin")
    assert volume["secret"]["secretName"] == "grafana-admin"
    assert {"name": "admin", "mountPath": "/etc/grafana/secrets", "readOnly": True} in container["volumeMounts"]


def test_grafana_is_locked_down_and_offline(default_run):
    result, _ = default_run
    spec = pod_spec(result, f"{PREFIX}-grafana-deployment")
    container = spec["containers"][0]
    env = {name: e.get("value") for name, e in env_of(container).items()}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    assert env["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"
    assert env["GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES"] == "false"
    assert env["GF_ANALYTICS_REPORTING_ENABLED"] == "false"
    assert env["GF_SERVER_ROOT_URL"] == "http://grafana.mlplane.localhost:8080"
    assert container["image"] == "docker.io/grafana/grafana:13.2.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 472
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    assert writable == {"/var/lib/grafana", "/var/log/grafana", "/tmp"}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/api/health", "port": "http"}


def test_grafana_keeps_the_bundled_prometheus_plugin_of_its_image(default_run):
    """Grafana 13.2 ships the Prometheus data source only in <home>/data/plugins-bundled: nothing
    may be mounted over the image's home, and only its GF_PATHS_* directories and /tmp get volumes."""
    result, _ = default_run
    spec = pod_spec(result, f"{PREFIX}-grafana-deployment")
    container = spec["containers"][0]
    env = {name: e.get("value") for name, e in env_of(container).items()}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        path = mount["mountPath"].rstrip("/")
        assert path != "/usr/share/grafana" and not path.startswith("/usr/share/grafana/"), mount
        if "emptyDir" in volumes[mount["name"]]:
            assert path in {env["GF_PATHS_DATA"], env["GF_PATHS_LOGS"], "/tmp"}, mount
    # The image's own paths (its Dockerfile ENV), the plugins dir inside the writable data path.
    assert env["GF_PATHS_DATA"] == "/var/lib/grafana"
    assert env["GF_PATHS_LOGS"] == "/var/log/grafana"
    assert env["GF_PATHS_PLUGINS"] == "/var/lib/grafana/plugins"
    assert "GF_PATHS_HOME" not in env  # the image's /usr/share/grafana, with its plugins-bundled
    # Offline: nothing is downloaded or auto-updated at start, the bundled copy is what loads.
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    assert not any(name.startswith("GF_PLUGINS_PREINSTALL_SYNC") or name == "GF_INSTALL_PLUGINS" for name in env)
    (source,) = yaml.safe_load(manifest(result, f"{PREFIX}-grafana-provisioning")["data"]["datasources.yaml"])["datasources"]
    assert source["type"] == "prometheus"


def test_grafana_is_provisioned_with_prometheus_and_the_packaged_dashboards(default_run):
    result, _ = default_run
    data = manifest(result, f"{PREFIX}-grafana-provisioning")["data"]
    (source,) = yaml.safe_load(data["datasources.yaml"])["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus.mlplane-monitoring.svc.cluster.local:9090"
    (provider,) = yaml.safe_load(data["dashboards.yaml"])["providers"]
    assert provider["options"]["path"] == "/etc/mlplane/dashboards"
    assert manifest(result, f"{PREFIX}-grafana-dashboards")["data"] == dashboards()
    spec = pod_spec(result, f"{PREFIX}-grafana-deployment")
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/etc/grafana/provisioning/datasources"] == "datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "dashboard-providers"
    assert mounts["/etc/mlplane/dashboards"] == "dashboards"


# -------------------------------------------------------------------------------- dashboards


def test_dashboards_are_packaged_as_mlplane_dashboards_json():
    files = dashboards()
    assert set(files) == {"platform-health.json", "models.json"}
    source = Path(__file__).resolve().parents[3] / "components" / "dashboards"
    assert {p.name for p in source.glob("*.json")} == set(files)


def _targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in document["panels"] for t in panel["targets"]]


def test_dashboards_query_the_provisioned_data_source():
    uids = set()
    for name, text in dashboards().items():
        document = json.loads(text)
        uids.add(document["uid"])
        assert document["title"].startswith("mlplane: "), name
        for panel in document["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, (name, panel["title"])
        assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in _targets(document))
    assert len(uids) == len(dashboards())


def test_platform_health_shows_targets_mlflow_and_resources():
    document = json.loads(dashboards()["platform-health.json"])
    exprs = " ".join(t["expr"] for t in _targets(document))
    for needle in ("sum by (job) (up)", "mlflow_http_request_total", "process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert needle in exprs


def test_model_dashboard_has_a_model_variable_and_rate_latency_and_errors():
    document = json.loads(dashboards()["models.json"])
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["model"]["query"]["query"] == "label_values(mlplane:model_info, model)"
    assert "$model" in variables["cluster"]["query"]["query"]
    panels = {p["title"]: p for p in document["panels"]}
    latency = [t["legendFormat"] for t in panels["Latency"]["targets"]]
    assert latency == ["p50", "p90", "p99"]
    assert all(t["expr"].endswith("/ 1000") for t in panels["Latency"]["targets"])
    assert panels["Latency"]["fieldConfig"]["defaults"]["unit"] == "s"
    assert "envoy_response_code_class=\"5\"" in panels["Error rate (5xx share)"]["targets"][0]["expr"]
    assert "envoy_cluster_upstream_rq_total" in panels["Request rate"]["targets"][0]["expr"]


# ------------------------------------------------------------------------------------ schema


def test_manifests_pass_strict_schema_validation_on_supported_minors(default_run):
    result, _ = default_run
    checked = 0
    for document in result.manifests():
        for version in ("1.34", "1.37"):
            try:
                kubernetes_validate.validate(document, version, strict=True)
                checked += 1
            except SchemaNotFoundError:
                assert document["kind"] == "HTTPRoute"
    assert checked >= 2 * 15


def test_prometheus_config_defaults_match_the_documented_values():
    config = PrometheusConfig()
    assert (config.retention, config.scrape_interval, config.storage_size) == ("7d", "30s", "5Gi")


def test_only_the_gateway_and_grafana_reach_prometheus_and_only_the_gateway_reaches_grafana(default_run):
    result, _ = default_run
    gateway_pods = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlplane-routing"}}}
    prometheus = manifest(result, f"{PREFIX}-prometheus-network-policy")["spec"]
    assert prometheus["ingress"] == [
        {
            "ports": [{"port": "web", "protocol": "TCP"}],
            "from": [
                gateway_pods,
                {"podSelector": {"matchLabels": selector_of(result, "grafana-deployment")}},
            ],
        }
    ]
    assert prometheus["podSelector"]["matchLabels"] == selector_of(result, "prometheus-statefulset")
    grafana = manifest(result, f"{PREFIX}-grafana-network-policy")["spec"]
    assert grafana["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [gateway_pods]}]
    assert grafana["policyTypes"] == ["Ingress"]


def selector_of(result: Capture, name: str) -> dict[str, str]:
    return manifest(result, f"{PREFIX}-{name}")["spec"]["selector"]["matchLabels"]


# --------------------------------------------------------------------------------------------
# Team pods cannot forge the platform's series (review finding: forged Envoy metrics)
# --------------------------------------------------------------------------------------------


def test_team_pods_cannot_publish_the_series_names_the_platform_reads():
    """The 'team-pods' job drops, at scrape time, every name only the platform's jobs publish."""
    import re

    from mlplane.services.prometheus_config import TEAM_JOB, team_scrape_job

    job = team_scrape_job(["mlplane-team-a", "mlplane-team-a-serving"])
    assert job["job_name"] == TEAM_JOB and "honor_labels" not in job
    [drop] = job["metric_relabel_configs"]
    assert drop["action"] == "drop" and drop["source_labels"] == ["__name__"]
    reserved = re.compile(f"^(?:{drop['regex']})$")  # Prometheus anchors relabel regexes
    for name in ("envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_time_bucket",
                 "flagger_canary_weight", "flagger_canary_status", "mlflow_http_request_total",
                 "mlplane:model_error_ratio", "mlplane:team_model_info", "job:anything:rate5m",
                 "up", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"):
        assert reserved.match(name), name
    # What the team's exporter publishes, and a team's own application metrics, are kept.
    for name in ("mlplane_team_model_info", "mlplane_model_drift_share", "mlplane_model_drift_share_threshold",
                 "mlplane_model_drift_last_run_timestamp_seconds", "http_requests_total", "process_cpu_seconds_total",
                 "my_envoy_requests_total", "uptime_seconds"):
        assert not reserved.match(name), name


def test_every_envoy_selector_of_the_rules_is_pinned_to_the_gateways_job():
    """Platform and team model rules count Envoy's series from the Gateway's job only."""
    import re

    from mlplane.services.progressive import GATEWAY_JOB

    document = rules([IRIS, WINE], AlertsConfig(), "5m", teams=True)
    exprs = [r["expr"] for g in document["groups"] for r in g["rules"]]
    selectors = [s for e in exprs for s in re.findall(r"\benvoy_[a-z_]+\{([^}]*)\}", e)]
    assert len(selectors) >= 2 * 3 + 3  # three per platform model, three in the team rules
    assert all(s.startswith(f'job="{GATEWAY_JOB}"') for s in selectors), selectors
    # No Envoy series is read without a selector either.
    assert not [e for e in exprs if re.search(r"\benvoy_cluster_upstream_[a-z_]+\b(?!\{)", e)]
