"""Metrics, dashboards and alerts: a small built-in Prometheus and Grafana.

Prometheus scrapes exactly the targets the other components declare (``scrape_targets``), each
through pod discovery restricted to the target's namespace, with read access to pods granted by a
Role in that namespace only. Per-model request rate, error ratio and latency come from the Envoy
Gateway proxy's per-route stats and are recorded under ``mlplane:model_*`` names carrying a
``model`` label, which the alerts and the Grafana dashboards use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from mlplane.config import MonitoringConfig
from mlplane.core import kube
from mlplane.services.serving import ServedModel
from mlplane.services.prometheus_config import (
    _checksum,
    _dump,
    check_targets,
    dashboards,
    prometheus_config,
    prometheus_internal_url,
    PROMETHEUS_PORT,
    rate_window,
    retention_size,
    rules,
    RULES_FILE,
)


TYPE = "mlplane:monitoring:Monitoring"
#: UID of ``nobody`` in the Prometheus image (its USER).
PROMETHEUS_UID = 65534
#: UID of the ``grafana`` user in the Grafana image (its files are owned by it).
GRAFANA_UID = 472
GRAFANA_PORT = 3000
CONFIG_DIR = "/etc/prometheus"
CONFIG_FILE = "prometheus.yml"
DATA_DIR = "/prometheus"
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
#: The Prometheus configuration and rules: ConfigMap ``prometheus-config-<digest of its data>``.
PROMETHEUS_CONFIG_MAP = "prometheus-config"


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
    #: The work and serving namespaces of the admitted teams that use 'monitoring': their pods
    #: labelled for scraping (a team's model exporter) are scraped by job 'team-pods', and the
    #: team models' recording rules and the drift alerts are added.
    team_namespaces: Sequence[str] = ()



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
        teams = sorted(args.team_namespaces)
        rules_text = _dump(rules(args.models, args.config.alerts, window, args.drift_alerts, teams=bool(teams)))
        data = pulumi.Output.all(*[pulumi.Output.from_input(t.namespace) for t in targets]).apply(
            lambda namespaces: {
                CONFIG_FILE: _dump(prometheus_config(list(zip(targets, namespaces)), cfg, teams)),
                RULES_FILE: rules_text,
            }
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-prometheus-config",
            # Named after its content: a change creates the new ConfigMap first and rolls the
            # StatefulSet onto it (an update). With a fixed name the provider replaces a changed
            # ConfigMap by deleting it first, and the engine then replaces the StatefulSet that
            # mounts it as well (a StatefulSet must never be replaced: docs/upgrading.md).
            metadata={
                "name": data.apply(lambda d: f"{PROMETHEUS_CONFIG_MAP}-{_checksum(d)[:10]}"),
                "namespace": namespace,
                "labels": labels,
            },
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
            placement=platform.place("system"),
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
            placement=platform.place("system"),
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
