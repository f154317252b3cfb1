"""Metrics, dashboards and alerts: a small built-in Prometheus and Grafana.

Prometheus scrapes exactly the targets the other components declare (``scrape_targets``), each
through pod discovery restricted to the target's namespace, with read access to pods granted by a
Role in that namespace only. Per-model request rate, error ratio and latency come from the Envoy
Gateway proxy's per-route stats and are recorded under ``mlplane:model_*`` names carrying a
``model`` label, which the alerts and the Grafana dashboards use.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from mlplane.core import kube
from mlplane.config import AlertsConfig, MonitoringConfig, PrometheusConfig, duration_seconds, memory_bytes
from mlplane.services.serving import ServedModel

TYPE = "mlplane:monitoring:Monitoring"
#: UID of ``nobody`` in the Prometheus image (its USER).
PROMETHEUS_UID = 65534
#: UID of the ``grafana`` user in the Grafana image (its files are owned by it).
GRAFANA_UID = 472
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 3000
CONFIG_DIR = "/etc/prometheus"
CONFIG_FILE = "prometheus.yml"
#: Rules file, next to the config (rule_files paths are relative to the config file).
RULES_FILE = "mlplane-rules.yml"
DATA_DIR = "/prometheus"
#: Job of Prometheus scraping itself; reserved.
SELF_JOB = "prometheus"
#: Shortest window the model rates and quantiles are computed over.
MIN_RATE_WINDOW_SECONDS = 300
#: Share of the TSDB volume Prometheus may fill before it deletes the oldest blocks.
RETENTION_SIZE_SHARE = 0.8
DATASOURCE_UID = "prometheus"
DASHBOARD_DIR = "/etc/mlplane/dashboards"
HOME_DASHBOARD = "platform-health.json"
ADMIN_USER = "admin"
#: Where the Grafana admin Secret is mounted (read through GF_SECURITY_ADMIN_*__FILE).
ADMIN_SECRET_DIR = "/etc/grafana/secrets"
#: Grafana's writable paths: the image's own GF_PATHS_* values (grafana/grafana ``Dockerfile``
#: ENV, the directories it creates and hands to the grafana user), set explicitly so the
#: emptyDirs below and the paths Grafana writes to cannot drift apart.
GRAFANA_PATHS = {
    "GF_PATHS_DATA": "/var/lib/grafana",
    "GF_PATHS_LOGS": "/var/log/grafana",
    "GF_PATHS_PLUGINS": "/var/lib/grafana/plugins",
}
#: Where the image keeps Grafana itself (GF_PATHS_HOME), including
#: ``data/plugins-bundled``: from Grafana 13.2 the Prometheus data source plugin lives only
#: there (grafana/grafana PRs 129166, 129332). Nothing may be mounted at or under it.
GRAFANA_HOME = "/usr/share/grafana"
#: Team pods labelled ``mlplane.dev/scrape: metrics`` are scraped on their port of that name
#: (team.SCRAPE_PORT; team stacks grant pod discovery in their namespaces).
TEAM_SCRAPE_PORT = "metrics"
#: Pod template annotation that changes (and so rolls the pod) when the configuration changes.
CHECKSUM_ANNOTATION = "mlplane.dev/config-checksum"
_JOB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class MonitoringArgs:
    config: MonitoringConfig
    platform: kube.Platform
    gateway: kube.GatewayRef
    #: What Prometheus scrapes: every component's ``scrape_targets``.
    scrape_targets: Sequence[kube.ScrapeTarget]
    #: Served models to record metrics and alert for (``Serving.models``).
    models: Sequence[ServedModel]
    #: Expose Prometheus (no authentication of its own) on the Gateway: only on a kind cluster
    #: by default (PlatformConfig.prometheus_route).
    prometheus_route: bool = False
    #: Add the ModelDrift alert (a model sets ``drift``; the scores come from drift exporters).
    drift_alerts: bool = False
    #: Namespaces whose pods query Prometheus' API (Flagger's metric checks: Serving.prometheus_clients).
    prometheus_clients: Sequence[str] = ()


# --------------------------------------------------------------------------------------------
# Prometheus configuration and rules (pure functions, tested directly and with promtool)
# --------------------------------------------------------------------------------------------


def check_targets(targets: Sequence[kube.ScrapeTarget]) -> None:
    """Reject scrape targets Prometheus could not tell apart or that would clash with its own job."""
    seen: set[str] = set()
    for target in targets:
        if not _JOB.match(target.job) or len(target.job) > 40:
            raise ValueError(
                f"scrape target job '{target.job}' must be a DNS label of at most 40 characters "
                "(it names a Role in the target's namespace)"
            )
        if target.job == SELF_JOB:
            raise ValueError(f"scrape target job '{SELF_JOB}' is reserved for Prometheus itself")
        if target.job in seen:
            raise ValueError(f"scrape target job '{target.job}' is declared twice; jobs must be unique")
        seen.add(target.job)


def prometheus_internal_url(platform_name: str) -> str:
    """Prometheus' URL in the cluster (its headless Service in ``<platform>-monitoring``)."""
    return f"http://prometheus.{platform_name}-monitoring.svc.cluster.local:{PROMETHEUS_PORT}"


def rate_window(scrape_interval: str) -> str:
    """The window of model rates: at least 5m and at least four scrapes, so a rate never lacks samples."""
    seconds = math.ceil(max(MIN_RATE_WINDOW_SECONDS, 4 * duration_seconds(scrape_interval)))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def meta_label(pod_label: str) -> str:
    """The pod discovery meta label carrying a pod label (characters outside [a-zA-Z0-9_] become '_')."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def literal(value: str) -> str:
    """A regular expression matching exactly ``value`` (Prometheus anchors relabel regexes)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def scrape_job(target: kube.ScrapeTarget, namespace: str) -> dict[str, Any]:
    """A scrape config discovering the target's pods in its namespace only.

    Pods are kept when every selector label matches and the container port has the target's
    port name; the label selector is also sent to the API server to keep the watch small.
    """
    selector = sorted(target.selector.items())
    discovery: dict[str, Any] = {"role": "pod", "namespaces": {"names": [namespace]}}
    if selector:
        discovery["selectors"] = [{"role": "pod", "label": ",".join(f"{k}={v}" for k, v in selector)}]
    return {
        "job_name": target.job,
        "metrics_path": target.path,
        "kubernetes_sd_configs": [discovery],
        "relabel_configs": [
            *({"action": "keep", "source_labels": [meta_label(k)], "regex": literal(v)} for k, v in selector),
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": literal(target.port)},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Succeeded|Failed"},
            {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def prometheus_config(jobs: Sequence[tuple[kube.ScrapeTarget, str]], config: PrometheusConfig) -> dict[str, Any]:
    """prometheus.yml: Prometheus itself plus one job per (target, resolved namespace)."""
    return {
        "global": {"scrape_interval": config.scrape_interval, "evaluation_interval": config.scrape_interval},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": SELF_JOB, "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
            *(scrape_job(target, namespace) for target, namespace in jobs),
        ],
    }


def _number(value: float) -> str:
    return format(value, "g")


def model_rules(model: ServedModel, window: str) -> list[dict[str, Any]]:
    """Recording rules for one model, from its route's Envoy cluster stats, labelled ``model``.

    Envoy's latency histogram counts milliseconds; the recorded quantile is in seconds.
    """
    cluster = f'envoy_cluster_name="{model.envoy_cluster}"'
    requests = f"sum(rate(envoy_cluster_upstream_rq_total{{{cluster}}}[{window}]))"
    # Envoy creates the 5xx counter on the first 5xx: until then the error rate is 0, not absent.
    errors = (
        f'sum(rate(envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class="5"}}[{window}])) '
        "or vector(0)"
    )
    buckets = f"sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}[{window}]))"
    info = {
        "model": model.name,
        "registered_model": model.registered_model,
        "version": model.version,
        "namespace": model.namespace,
        "route": model.route,
        "envoy_cluster_name": model.envoy_cluster,
    }
    if model.canary_version is not None:
        info |= {"canary_version": model.canary_version, "canary_weight": str(model.canary_weight)}
    labels = {"model": model.name}
    return [
        {"record": "mlplane:model_info", "expr": "vector(1)", "labels": info},
        {"record": "mlplane:model_request_rate", "expr": requests, "labels": labels},
        {"record": "mlplane:model_error_rate", "expr": errors, "labels": labels},
        {"record": "mlplane:model_error_ratio", "expr": f"({errors}) / {requests}", "labels": labels},
        {
            "record": "mlplane:model_latency_p99_seconds",
            "expr": f"histogram_quantile(0.99, {buckets}) / 1000",
            "labels": labels,
        },
    ]


def alerting_rules(alerts: AlertsConfig, window: str) -> list[dict[str, Any]]:
    """Target down, and per-model error ratio and p99 latency above the thresholds."""
    hold = alerts.for_
    error_threshold = _number(alerts.model_error_rate)
    error_percent = _number(alerts.model_error_rate * 100)
    latency_threshold = _number(alerts.model_p99_latency_seconds)
    return [
        {
            "alert": "TargetDown",
            "expr": "up == 0",
            "for": hold,
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.job }} target {{ $labels.instance }} is down",
                "description": f"Prometheus could not scrape {{{{ $labels.instance }}}} (job {{{{ $labels.job }}}}) for {hold}.",
            },
        },
        {
            "alert": "ModelErrorRateHigh",
            "expr": f"mlplane:model_error_ratio > {error_threshold}",
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Model {{ $labels.model }} answers {{ $value | humanizePercentage }} of requests with 5xx",
                "description": f"More than {error_percent}% of the requests to the model failed (5xx) over {window}, for {hold}.",
            },
        },
        {
            "alert": "ModelLatencyHigh",
            "expr": f"mlplane:model_latency_p99_seconds > {latency_threshold}",
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Model {{ $labels.model }} p99 latency is {{ $value | humanizeDuration }}",
                "description": f"The model's p99 latency over {window} was above {latency_threshold}s for {hold}.",
            },
        },
    ]


#: Labels identifying one drift result (drift_check.exposition).
DRIFT_KEYS = "namespace, model, version"


def drift_rules(alerts: AlertsConfig) -> list[dict[str, Any]]:
    """ModelDrift: a model's share of drifted features reached its threshold (both exported by the
    drift exporter, so each model's threshold from config applies, teams' models included);
    ModelDriftCheckStale: no drift result for a day."""
    share = f"max by ({DRIFT_KEYS}) (mlplane_model_drift_share)"
    threshold = f"max by ({DRIFT_KEYS}) (mlplane_model_drift_share_threshold)"
    return [
        {
            "alert": "ModelDrift",
            "expr": f"{share} >= on ({DRIFT_KEYS}) {threshold}",
            "for": alerts.for_,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Model {{ $labels.model }} ({{ $labels.version }}) inputs drifted: {{ $value | humanizePercentage }} of features",
                "description": "The last drift check of {{ $labels.namespace }}/{{ $labels.model }} found the share of features "
                "whose PSI is above the threshold at or above the model's drift.thresholds.share. See docs/models.md.",
            },
        },
        {
            "alert": "ModelDriftCheckStale",
            "expr": "time() - mlplane_model_drift_last_run_timestamp_seconds > 86400",
            "for": alerts.for_,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No drift check of model {{ $labels.model }} for more than a day",
                "description": "CronJob {{ $labels.model }}-drift in {{ $labels.namespace }} has not written a result for 24h.",
            },
        },
    ]


def rules(
    models: Sequence[ServedModel], alerts: AlertsConfig, window: str, drift: bool = False
) -> dict[str, Any]:
    """The rules file: model recording rules (when there are models), then the alerts (and the
    drift alerts when a model checks drift)."""
    groups: list[dict[str, Any]] = []
    if models:
        groups.append({"name": "mlplane-models", "rules": [r for m in models for r in model_rules(m, window)]})
    groups.append({"name": "mlplane-alerts", "rules": alerting_rules(alerts, window)})
    if drift:
        groups.append({"name": "mlplane-drift", "rules": drift_rules(alerts)})
    return {"groups": groups}


def dashboards() -> dict[str, str]:
    """The packaged Grafana dashboards (``mlplane/dashboards/*.json``), file name -> JSON text."""
    folder = importlib.resources.files("mlplane") / "dashboards"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated objects out in full: no YAML anchors and aliases in generated files."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, width=1000)


def _checksum(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def retention_size(storage_size: str) -> str:
    """--storage.tsdb.retention.size: a share of the volume, so the disk never fills up."""
    return f"{int(memory_bytes(storage_size) * RETENTION_SIZE_SHARE) // 2**20}MB"


# --------------------------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------------------------


class Monitoring(pulumi.ComponentResource):
    """Prometheus (scraping the declared targets, with alert rules) and Grafana with dashboards.

    Outputs: ``grafana_url``, ``grafana_admin_user``, ``grafana_admin_password`` (secret),
    ``prometheus_url`` (through the Gateway), ``prometheus_internal_url`` (in the cluster),
    ``scrape_targets`` (empty), ``uis`` (Grafana and Prometheus).
    """

    grafana_url: pulumi.Output[str]
    grafana_admin_user: pulumi.Output[str]
    grafana_admin_password: pulumi.Output[str]
    prometheus_url: pulumi.Output[str]
    prometheus_internal_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        check_targets(args.scrape_targets)
        platform, gateway = args.platform, args.gateway
        self.scrape_targets: list[kube.ScrapeTarget] = []
        ns_name = f"{platform.name}-monitoring"
        ns = kube.namespace(
            platform, f"{name}-namespace", ns_name, parent=self, component="monitoring", gateway_access=True
        )
        self.prometheus_internal_url = pulumi.Output.from_input(prometheus_internal_url(platform.name))
        self._prometheus(name, args, ns)
        self._grafana(name, args, ns)
        self._egress(name, args, ns)
        self.grafana_url = pulumi.Output.from_input(gateway.url("grafana"))
        # Without a route Prometheus is reached in the cluster (or `kubectl port-forward`) only.
        self.prometheus_url = (
            pulumi.Output.from_input(gateway.url("prometheus")) if args.prometheus_route else self.prometheus_internal_url
        )
        self.grafana_admin_user = pulumi.Output.from_input(ADMIN_USER)
        self.uis: list[kube.Ui] = [
            kube.Ui(key="grafana", title=f"Grafana (user {ADMIN_USER})", url=gateway.url("grafana")),
        ]
        if args.prometheus_route:
            self.uis.append(kube.Ui(key="prometheus", title="Prometheus", url=gateway.url("prometheus")))
        self.register_outputs(
            {
                "grafana_url": self.grafana_url,
                "grafana_admin_password": self.grafana_admin_password,
                "prometheus_url": self.prometheus_url,
            }
        )

    # -------------------------------------------------------------------------------- egress

    def _egress(self, name: str, args: MonitoringArgs, ns: k8s.core.v1.Namespace) -> None:
        """Default deny; Prometheus reaches the API server (Kubernetes service discovery) and
        its targets (each scrape target's pods on their metrics port, and team pods labelled for
        scraping), Grafana reaches Prometheus."""
        platform = args.platform
        namespace = ns.metadata.name
        labels = platform.labels("monitoring")
        kube.isolate_namespace(name, namespace=namespace, labels=labels, parent=self)
        targets = [
            {"to": [kube.pods_peer(target.namespace, target.selector)], "ports": kube.tcp(target.port)}
            for target in args.scrape_targets
        ]
        teams = {
            "namespaceSelector": {"matchExpressions": [{"key": kube.TEAM_LABEL, "operator": "Exists"}]},
            "podSelector": {"matchLabels": {kube.SCRAPE: TEAM_SCRAPE_PORT}},
        }
        kube.egress_only_to(
            f"{name}-prometheus-egress",
            name="prometheus-egress",
            namespace=namespace,
            labels=platform.labels("monitoring", "prometheus"),
            pods=platform.selector("monitoring", "prometheus"),
            rules=[kube.api_server_egress(), *targets, {"to": [teams], "ports": kube.tcp(TEAM_SCRAPE_PORT)}],
            parent=self,
        )
        kube.egress_only_to(
            f"{name}-grafana-egress",
            name="grafana-egress",
            namespace=namespace,
            labels=platform.labels("monitoring", "grafana"),
            pods=platform.selector("monitoring", "grafana"),
            rules=[
                {
                    "to": [{"podSelector": {"matchLabels": platform.selector("monitoring", "prometheus")}}],
                    "ports": kube.tcp(PROMETHEUS_PORT),
                }
            ],
            parent=self,
        )

    # ---------------------------------------------------------------------------- Prometheus

    def _prometheus(self, name: str, args: MonitoringArgs, ns: k8s.core.v1.Namespace) -> None:
        platform, cfg = args.platform, args.config.prometheus
        labels = platform.labels("monitoring", "prometheus")
        selector = platform.selector("monitoring", "prometheus")
        namespace = ns.metadata.name
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-prometheus-service-account",
            metadata={"name": "prometheus", "namespace": namespace, "labels": labels},
            automount_service_account_token=False,
            opts=child,
        )
        for target in args.scrape_targets:
            self._grant_pod_discovery(name, platform, target, account, namespace)

        targets = list(args.scrape_targets)
        window = rate_window(cfg.scrape_interval)
        rules_text = _dump(rules(args.models, args.config.alerts, window, args.drift_alerts))
        data = pulumi.Output.all(*[pulumi.Output.from_input(t.namespace) for t in targets]).apply(
            lambda namespaces: {
                CONFIG_FILE: _dump(prometheus_config(list(zip(targets, namespaces)), cfg)),
                RULES_FILE: rules_text,
            }
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-prometheus-config",
            metadata={"name": "prometheus-config", "namespace": namespace, "labels": labels},
            data=data,
            opts=child,
        )
        svc = kube.service(
            f"{name}-prometheus-service",
            name="prometheus",
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[("web", PROMETHEUS_PORT, "web")],
            parent=self,
            # Governs the StatefulSet (serviceName); clients resolve it to the pod's IP.
            headless=True,
        )
        kube.ingress_only_on(
            f"{name}-prometheus-network-policy",
            name="prometheus",
            namespace=namespace,
            labels=labels,
            pods=selector,
            port="web",
            parent=self,
            # The Gateway's Envoy proxies, and Grafana next door.
            sources=[
                kube.namespace_peer(args.gateway.proxies_namespace),
                {"podSelector": {"matchLabels": platform.selector("monitoring", "grafana")}},
                *(kube.namespace_peer(client) for client in args.prometheus_clients),
            ],
        )
        template = self._prometheus_workload(platform, args, account, config_map).template(labels)
        template["metadata"]["annotations"] = {CHECKSUM_ANNOTATION: data.apply(_checksum)}
        k8s.apps.v1.StatefulSet(
            f"{name}-prometheus-statefulset",
            metadata={
                "name": "prometheus",
                "namespace": namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_38", "Prometheus discovers pods through the API: it needs its token"),
                ),
            },
            spec={
                # The literal name: serviceName is immutable and must not depend on the Service,
                # which is replaced when it becomes headless (see kube.service).
                "serviceName": "prometheus",
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": template,
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain" if platform.protect_stateful else "Delete",
                    "whenScaled": "Retain",
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": labels},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": cfg.storage_size}},
                        },
                    }
                ],
            },
            opts=platform.stateful(self),
        )
        if not args.prometheus_route:
            return
        kube.http_route(
            f"{name}-prometheus-route",
            name="prometheus",
            namespace=namespace,
            labels=labels,
            gateway=args.gateway,
            host=args.gateway.host("prometheus"),
            backends=[("prometheus", PROMETHEUS_PORT, 100)],
            parent=self,
            depends_on=[svc],
        )

    def _grant_pod_discovery(
        self,
        name: str,
        platform: kube.Platform,
        target: kube.ScrapeTarget,
        account: k8s.core.v1.ServiceAccount,
        monitoring_namespace: pulumi.Input[str],
    ) -> None:
        """A Role and RoleBinding letting Prometheus list pods in the target's namespace, and only there."""
        role_name = f"{platform.name}-prometheus-{target.job}"
        labels = platform.labels("monitoring", "prometheus")
        child = pulumi.ResourceOptions(parent=self)
        role = k8s.rbac.v1.Role(
            f"{name}-scrape-{target.job}-role",
            metadata={"name": role_name, "namespace": target.namespace, "labels": labels},
            rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-scrape-{target.job}-role-binding",
            metadata={"name": role_name, "namespace": target.namespace, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": monitoring_namespace}],
            opts=child,
        )

    @staticmethod
    def _prometheus_workload(
        platform: kube.Platform,
        args: MonitoringArgs,
        account: k8s.core.v1.ServiceAccount,
        config_map: k8s.core.v1.ConfigMap,
    ) -> kube.Workload:
        cfg = args.config.prometheus
        startup = kube.http_probe("/-/ready", "web", period=5, failures=60)
        container = kube.container(
            "prometheus",
            platform.image("prometheus"),
            cfg.resources,
            args=[
                f"--config.file={CONFIG_DIR}/{CONFIG_FILE}",
                f"--storage.tsdb.path={DATA_DIR}",
                f"--storage.tsdb.retention.time={cfg.retention}",
                f"--storage.tsdb.retention.size={retention_size(cfg.storage_size)}",
                f"--web.listen-address=:{PROMETHEUS_PORT}",
                f"--web.external-url={args.gateway.url('prometheus')}",
            ],
            ports=[("web", PROMETHEUS_PORT)],
            liveness=kube.http_probe("/-/healthy", "web", period=15, failures=4),
            readiness=kube.http_probe("/-/ready", "web", period=5),
            mounts=[
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "data", "mountPath": DATA_DIR},
            ],
        )
        # Replaying the write-ahead log after a restart can take minutes on a full volume.
        container["startupProbe"] = startup
        return kube.Workload(
            containers=[container],
            uid=PROMETHEUS_UID,
            fs_group=PROMETHEUS_UID,
            volumes=[{"name": "config", "configMap": {"name": config_map.metadata.name}}],
            service_account=account.metadata.name,
            automount_token=True,
        )

    # ------------------------------------------------------------------------------- Grafana

    def _grafana(self, name: str, args: MonitoringArgs, ns: k8s.core.v1.Namespace) -> None:
        platform = args.platform
        labels = platform.labels("monitoring", "grafana")
        selector = platform.selector("monitoring", "grafana")
        namespace = ns.metadata.name
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(f"{name}-grafana-password", length=32, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": "grafana-admin", "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data={"user": ADMIN_USER, "password": password.result},
            opts=child,
        )
        provisioning_data = self._provisioning(ns)
        provisioning = k8s.core.v1.ConfigMap(
            f"{name}-grafana-provisioning",
            metadata={"name": "grafana-provisioning", "namespace": namespace, "labels": labels},
            data=provisioning_data,
            opts=child,
        )
        dashboard_data = dashboards()
        dashboard_map = k8s.core.v1.ConfigMap(
            f"{name}-grafana-dashboards",
            metadata={"name": "grafana-dashboards", "namespace": namespace, "labels": labels},
            data=dashboard_data,
            opts=child,
        )
        workload = self._grafana_workload(platform, args, secret, provisioning, dashboard_map)
        template = workload.template(labels)
        template["metadata"]["annotations"] = {
            CHECKSUM_ANNOTATION: provisioning_data.apply(lambda data: _checksum({**data, **dashboard_data}))
        }
        k8s.apps.v1.Deployment(
            f"{name}-grafana-deployment",
            metadata={
                "name": "grafana",
                "namespace": namespace,
                "labels": labels,
                "annotations": kube.checkov_skips(
                    kube.DIGEST_SKIP,
                    ("CKV_K8S_40", "Grafana runs as the image's own user 472, which owns its files"),
                ),
            },
            spec={"replicas": 1, "selector": {"matchLabels": selector}, "template": template},
            opts=child,
        )
        svc = kube.service(
            f"{name}-grafana-service",
            name="grafana",
            namespace=namespace,
            labels=labels,
            selector=selector,
            ports=[("http", GRAFANA_PORT, "http")],
            parent=self,
        )
        kube.ingress_only_on(
            f"{name}-grafana-network-policy",
            name="grafana",
            namespace=namespace,
            labels=labels,
            pods=selector,
            port="http",
            parent=self,
            sources=[kube.namespace_peer(args.gateway.proxies_namespace)],
        )
        kube.http_route(
            f"{name}-grafana-route",
            name="grafana",
            namespace=namespace,
            labels=labels,
            gateway=args.gateway,
            host=args.gateway.host("grafana"),
            backends=[("grafana", GRAFANA_PORT, 100)],
            parent=self,
            depends_on=[svc],
        )
        self.grafana_admin_password = pulumi.Output.secret(password.result)

    @staticmethod
    def _provisioning(ns: k8s.core.v1.Namespace) -> pulumi.Output[dict[str, str]]:
        """Grafana provisioning files: the Prometheus data source and the dashboard folder."""

        def files(namespace: str) -> dict[str, str]:
            datasources = {
                "apiVersion": 1,
                "datasources": [
                    {
                        "name": "Prometheus",
                        "uid": DATASOURCE_UID,
                        "type": "prometheus",
                        "access": "proxy",
                        "url": f"http://prometheus.{namespace}.svc.cluster.local:{PROMETHEUS_PORT}",
                        "isDefault": True,
                        "editable": False,
                    }
                ],
            }
            providers = {
                "apiVersion": 1,
                "providers": [
                    {
                        "name": "mlplane",
                        "orgId": 1,
                        "folder": "mlplane",
                        "type": "file",
                        "disableDeletion": True,
                        "allowUiUpdates": False,
                        "updateIntervalSeconds": 30,
                        "options": {"path": DASHBOARD_DIR, "foldersFromFilesStructure": False},
                    }
                ],
            }
            return {"datasources.yaml": _dump(datasources), "dashboards.yaml": _dump(providers)}

        return ns.metadata.name.apply(files)

    @staticmethod
    def _grafana_workload(
        platform: kube.Platform,
        args: MonitoringArgs,
        secret: k8s.core.v1.Secret,
        provisioning: k8s.core.v1.ConfigMap,
        dashboard_map: k8s.core.v1.ConfigMap,
    ) -> kube.Workload:
        settings = {
            "GF_SERVER_HTTP_PORT": str(GRAFANA_PORT),
            "GF_SERVER_ROOT_URL": args.gateway.url("grafana"),
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_SECURITY_DISABLE_GRAVATAR": "true",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
            # Offline: no plugin is downloaded at start. The bundled plugins (Prometheus among
            # them) load from GRAFANA_HOME/data/plugins-bundled whatever this says: preinstall
            # only adds downloads, and its auto-update is what unlinks a bundled plugin on a
            # read-only root and leaves it unregistered (grafana/grafana issue 132528; settings
            # in pkg/setting/setting_plugins.go). See docs/components/monitoring.md.
            "GF_PLUGINS_PREINSTALL_DISABLED": "true",
            "GF_NEWS_NEWS_FEED_ENABLED": "false",
            "GF_LOG_MODE": "console",
            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{DASHBOARD_DIR}/{HOME_DASHBOARD}",
            **GRAFANA_PATHS,
        }
        container = kube.container(
            "grafana",
            platform.image("grafana"),
            args.config.grafana.resources,
            # Grafana reads <setting>__FILE from a file: the credentials stay out of the environment.
            env=[
                {"name": "GF_SECURITY_ADMIN_USER__FILE", "value": f"{ADMIN_SECRET_DIR}/user"},
                {"name": "GF_SECURITY_ADMIN_PASSWORD__FILE", "value": f"{ADMIN_SECRET_DIR}/password"},
                *({"name": key, "value": value} for key, value in settings.items()),
            ],
            ports=[("http", GRAFANA_PORT)],
            liveness=kube.http_probe("/api/health", "http", period=15, failures=4),
            readiness=kube.http_probe("/api/health", "http", period=5),
            mounts=[
                # Writable: the data path (SQLite database; the plugins dir is inside it), logs
                # and /tmp. Nothing over GRAFANA_HOME, where the bundled plugins are.
                {"name": "data", "mountPath": GRAFANA_PATHS["GF_PATHS_DATA"]},
                {"name": "logs", "mountPath": GRAFANA_PATHS["GF_PATHS_LOGS"]},
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "datasources", "mountPath": "/etc/grafana/provisioning/datasources", "readOnly": True},
                {"name": "dashboard-providers", "mountPath": "/etc/grafana/provisioning/dashboards", "readOnly": True},
                {"name": "dashboards", "mountPath": DASHBOARD_DIR, "readOnly": True},
                {"name": "admin", "mountPath": ADMIN_SECRET_DIR, "readOnly": True},
            ],
        )
        # The SQLite database is created and migrated on every start (its volume is an emptyDir).
        container["startupProbe"] = kube.http_probe("/api/health", "http", period=5, failures=36)
        provisioning_name = provisioning.metadata.name
        return kube.Workload(
            containers=[container],
            uid=GRAFANA_UID,
            fs_group=GRAFANA_UID,
            volumes=[
                {"name": "data", "emptyDir": {"sizeLimit": "512Mi"}},
                {"name": "logs", "emptyDir": {"sizeLimit": "16Mi"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                {
                    "name": "datasources",
                    "configMap": {"name": provisioning_name, "items": [{"key": "datasources.yaml", "path": "mlplane.yaml"}]},
                },
                {
                    "name": "dashboard-providers",
                    "configMap": {"name": provisioning_name, "items": [{"key": "dashboards.yaml", "path": "mlplane.yaml"}]},
                },
                {"name": "dashboards", "configMap": {"name": dashboard_map.metadata.name}},
                {"name": "admin", "secret": {"secretName": secret.metadata.name, "defaultMode": 0o440}},
            ],
        )
