"""A team's Grafana dashboard and the platform Prometheus's access to its namespaces."""

from __future__ import annotations

import json
from typing import Any

import pulumi_kubernetes as k8s

from mlplane.config.team import TeamConfig
from mlplane.services import monitoring
from mlplane.team.names import GRAFANA_DASHBOARDS_CONFIGMAP, PROMETHEUS_ACCOUNT, PROMETHEUS_ROLE


class Dashboard:
    """The Team's dashboard in the platform's Grafana and Prometheus's pod discovery."""

    def _monitoring(self) -> None:
        """Pod discovery for the platform Prometheus in the team's namespaces, and the team dashboard."""
        cfg, plat = self._args.config, self._args.platform
        monitoring_ns = f"{plat.name}-monitoring"
        for space in (self.work, self.serving):
            labels = self._labels("prometheus")
            role = k8s.rbac.v1.Role(
                f"{self._name}-{space.role}-prometheus-role",
                metadata={"name": PROMETHEUS_ROLE, "namespace": space.name, "labels": labels},
                rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
                opts=self._child(),
            )
            k8s.rbac.v1.RoleBinding(
                f"{self._name}-{space.role}-prometheus-binding",
                metadata={"name": PROMETHEUS_ROLE, "namespace": space.name, "labels": labels},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
                subjects=[{"kind": "ServiceAccount", "name": PROMETHEUS_ACCOUNT, "namespace": monitoring_ns}],
                opts=self._child(),
            )
        window = monitoring.rate_window(plat.monitoring.prometheus.scrape_interval)
        # Server-side apply of one key: the platform stack keeps owning every other key, and
        # Grafana's file provider picks the new file up without a restart.
        k8s.core.v1.ConfigMapPatch(
            f"{self._name}-grafana-dashboard",
            metadata={"name": GRAFANA_DASHBOARDS_CONFIGMAP, "namespace": monitoring_ns},
            data={dashboard_file(cfg): json.dumps(team_dashboard(cfg, self.serving.name, window), indent=1)},
            opts=self._child(),
        )




def dashboard_file(team: TeamConfig) -> str:
    """Key of the team's dashboard in the platform's Grafana dashboards ConfigMap."""
    return f"{team.identity}.json"




def _panel(
    panel_id: int, title: str, expr: str, unit: str, y: int, description: str, legend: str = "{{model}}"
) -> dict[str, Any]:
    source = {"type": "prometheus", "uid": monitoring.DATASOURCE_UID}
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": source,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((panel_id - 1) % 2), "y": y},
        "targets": [{"datasource": source, "refId": "A", "expr": expr, "legendFormat": legend, "range": True}],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    }


def team_dashboard(team: TeamConfig, serving_namespace: str, window: str) -> dict[str, Any]:
    """The team's Grafana dashboard: its models' traffic, from the Envoy per-route stats Prometheus
    already scrapes for the platform (no recording rules needed)."""
    cluster = f'envoy_cluster_name=~"httproute/{serving_namespace}/.*"'

    def by_model(expr: str) -> str:
        return (
            f'label_replace({expr}, "model", "$1", "envoy_cluster_name", '
            f'"httproute/{serving_namespace}/([^/]+)/.*")'
        )

    requests = f"sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_total{{{cluster}}}[{window}]))"
    errors = (
        f'sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class="5"}}[{window}]))'
    )
    latency = (
        f"histogram_quantile(0.99, sum by (envoy_cluster_name, le) "
        f"(rate(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}[{window}]))) / 1000"
    )
    panels = [
        _panel(1, "Requests per second", by_model(requests), "reqps", 0,
               "Requests to each of the team's models through the Gateway."),
        _panel(2, "Error ratio (5xx)", by_model(f"({errors}) / ({requests})"), "percentunit", 0,
               "Share of requests answered with a 5xx."),
        _panel(3, "p99 latency", by_model(latency), "s", 8,
               "99th percentile of the upstream request time, per model."),
    ]
    # The drift results come from the team's model exporter (job team-pods: 'namespace' is the
    # exporter's own, the serving namespace), only when a model checks drift.
    own = f'namespace="{serving_namespace}"'
    if team.serving.drift:
        panels += [
            _panel(4, "Input drift (share of drifted features)", f"max by (model) (mlplane_model_drift_share{{{own}}})",
                   "percentunit", 8, "Share of features whose PSI is above the model's threshold (ModelDrift fires "
                   "at drift.thresholds.share)."),
            _panel(5, "Feature drift (PSI)", f"max by (model, feature) (mlplane_model_feature_drift_psi{{{own}}})",
                   "none", 16, "Population stability index of each feature against the reference dataset.",
                   legend="{{model}} {{feature}}"),
        ]
    if team.serving.progressive:
        # Flagger's gauge from the team's controller (job flagger-teams, in the Flagger namespace,
        # so the canary's own namespace is exported as 'exported_namespace').
        panels.append(_panel(
            6, "Canary weight (progressive delivery)",
            f'max by (workload) (flagger_canary_weight{{exported_namespace="{serving_namespace}"}})', "percent", 16,
            "Share of requests Flagger sends to each model's canary and primary during a rollout.",
            legend="{{workload}}",
        ))
    return {
        "uid": team.identity,
        "title": f"Team {team.name}",
        "description": f"Models of team {team.name} (stack {team.stack}), from the Gateway's per-route stats.",
        "tags": ["mlplane", "team", team.identity],
        "editable": False,
        "schemaVersion": 41,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "panels": panels,
    }
