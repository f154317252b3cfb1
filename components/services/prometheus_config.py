"""Prometheus configuration and rules of the built-in monitoring: scrape jobs, recording and
alerting rules, the dashboards, retention (pure functions, tested directly and with promtool)."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import re
from typing import Any, Sequence

import yaml

from mlplane.config import AlertsConfig, PrometheusConfig, duration_seconds, memory_bytes
from mlplane.core import kube
from mlplane.services.progressive import GATEWAY_JOB
from mlplane.services.serving import ServedModel


PROMETHEUS_PORT = 9090
#: Rules file, next to the config (rule_files paths are relative to the config file).
RULES_FILE = "mlplane-rules.yml"
#: Job of Prometheus scraping itself; reserved.
SELF_JOB = "prometheus"
#: Shortest window the model rates and quantiles are computed over.
MIN_RATE_WINDOW_SECONDS = 300
#: Share of the TSDB volume Prometheus may fill before it deletes the oldest blocks.
RETENTION_SIZE_SHARE = 0.8
_JOB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_targets(targets: Sequence[kube.ScrapeTarget]) -> None:
    """Reject scrape targets Prometheus could not tell apart or that would clash with its own job."""
    seen: set[str] = set()
    for target in targets:
        if not _JOB.match(target.job) or len(target.job) > 40:
            raise ValueError(
                f"scrape target job '{target.job}' must be a DNS label of at most 40 characters "
                "(it names a Role in the target's namespace)"
            )
        if target.job in (SELF_JOB, TEAM_JOB):
            raise ValueError(f"scrape target job '{target.job}' is reserved (Prometheus itself, team pods)")
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


def prometheus_config(
    jobs: Sequence[tuple[kube.ScrapeTarget, str]], config: PrometheusConfig, team_namespaces: Sequence[str] = ()
) -> dict[str, Any]:
    """prometheus.yml: Prometheus itself plus one job per (target, resolved namespace), and the
    team pods' job when teams are scraped."""
    return {
        "global": {"scrape_interval": config.scrape_interval, "evaluation_interval": config.scrape_interval},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": SELF_JOB, "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
            *(scrape_job(target, namespace) for target, namespace in jobs),
            *([team_scrape_job(team_namespaces)] if team_namespaces else []),
        ],
    }


def _number(value: float) -> str:
    return format(value, "g")


def model_rules(model: ServedModel, window: str) -> list[dict[str, Any]]:
    """Recording rules for one model, from its route's Envoy cluster stats, labelled ``model``.

    Envoy's latency histogram counts milliseconds; the recorded quantile is in seconds.
    """
    # Only the Gateway's own job counts: a series of that name from any other job never does.
    cluster = f'job="{GATEWAY_JOB}",envoy_cluster_name="{model.envoy_cluster}"'
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


#: The job discovering team pods labelled ``mlplane.dev/scrape: metrics`` (port ``metrics``) in
#: the namespaces of the admitted teams that use 'monitoring' (each grants Prometheus pod
#: discovery there: mlplane.team.dashboard).
TEAM_JOB = "team-pods"
#: What a team's model exporter publishes per served model (mlplane.team.model_extras).
TEAM_MODEL_INFO = "mlplane_team_model_info"
#: Labels of a team model's info series, as published; ``namespace`` is the scraped pod's.
TEAM_INFO_LABELS = ("namespace", "model", "registered_model", "version", "route", "canary_version", "canary_weight")
#: Series names a team pod may not publish, dropped at scrape time (``metric_relabel_configs``):
#: what only the platform's own jobs publish and its rules, Flagger's checks and its dashboards
#: read, so a team cannot forge another team's or the platform's model metrics: Envoy's stats
#: (job 'envoy'), Flagger's (jobs 'flagger', 'flagger-teams'), MLflow's (job 'mlflow'), any
#: name with a colon (recording rules' names by Prometheus' naming convention, 'mlplane:*'
#: included), and the series Prometheus makes itself (``up``, ``scrape_*``, ``ALERTS``).
#: Everything else a team publishes is kept under job 'team-pods' with the pod's namespace:
#: its exporter's ``mlplane_team_model_info`` and drift results, and its own application metrics.
TEAM_RESERVED_METRICS = ("envoy_.*", "flagger_.*", "mlflow_.*", ".*:.*", "up", "scrape_.*", "ALERTS", "ALERTS_FOR_STATE")


def team_scrape_job(namespaces: Sequence[str]) -> dict[str, Any]:
    """The scrape config of team pods: every pod labelled for scraping in those namespaces,
    without the series names reserved to the platform (:data:`TEAM_RESERVED_METRICS`)."""
    target = kube.ScrapeTarget(job=TEAM_JOB, namespace="", selector={kube.SCRAPE: "metrics"}, port="metrics")
    job = scrape_job(target, "")
    job["kubernetes_sd_configs"][0]["namespaces"] = {"names": sorted(namespaces)}
    job["metric_relabel_configs"] = [
        {"action": "drop", "source_labels": ["__name__"], "regex": "|".join(TEAM_RESERVED_METRICS)},
    ]
    return job


def team_model_rules(window: str) -> list[dict[str, Any]]:
    """Recording rules of every team model, from the info series its team's exporter publishes.

    The info series is published by a pod the team controls, so the route is not taken from it:
    ``envoy_cluster_name`` is rebuilt from the scraped pod's own namespace (set by Prometheus,
    never by the pod) and the published route, so a team can only describe routes in its own
    serving namespace. Every series is labelled ``namespace`` and ``model`` (platform models:
    ``model`` only), so a team model never collides with a platform model of the same name.
    """
    keep = ", ".join(TEAM_INFO_LABELS)
    info = (
        f'max without (route_path) (label_replace(label_join(max by ({keep}) ({TEAM_MODEL_INFO}{{job="{TEAM_JOB}"}}), '
        f'"route_path", "/", "namespace", "route"), "envoy_cluster_name", "httproute/$1/rule/0", "route_path", "(.+)"))'
    )
    join = "max by (envoy_cluster_name, namespace, model) (mlplane:team_model_info)"

    def per_model(metric: str, matcher: str = "", by: str = "namespace, model") -> str:
        # Only the Gateway's own job counts (team pods cannot publish envoy_* either: team_scrape_job).
        selector = ",".join([f'job="{GATEWAY_JOB}"', *([matcher] if matcher else [])])
        return (
            f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]) "
            f"* on (envoy_cluster_name) group_left (namespace, model) {join})"
        )

    requests = per_model("envoy_cluster_upstream_rq_total")
    # As for platform models: 0 until Envoy creates the 5xx counter, not absent.
    errors = (
        f'{per_model("envoy_cluster_upstream_rq_xx", "envoy_response_code_class=" + chr(34) + "5" + chr(34))} '
        "or on (namespace, model) (0 * max by (namespace, model) (mlplane:team_model_info))"
    )
    latency = f'histogram_quantile(0.99, {per_model("envoy_cluster_upstream_rq_time_bucket", by="namespace, model, le")}) / 1000'
    return [
        {"record": "mlplane:team_model_info", "expr": info},
        {"record": "mlplane:model_info", "expr": "mlplane:team_model_info"},
        {"record": "mlplane:team_model_request_rate", "expr": requests},
        {"record": "mlplane:team_model_error_rate", "expr": errors},
        {"record": "mlplane:model_request_rate", "expr": "mlplane:team_model_request_rate"},
        {"record": "mlplane:model_error_rate", "expr": "mlplane:team_model_error_rate"},
        {"record": "mlplane:model_error_ratio", "expr": "mlplane:team_model_error_rate / mlplane:team_model_request_rate"},
        {"record": "mlplane:model_latency_p99_seconds", "expr": latency},
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
    models: Sequence[ServedModel], alerts: AlertsConfig, window: str, drift: bool = False, teams: bool = False
) -> dict[str, Any]:
    """The rules file: model recording rules (when there are models), the team models' rules
    (when teams are scraped), then the alerts (and the drift alerts when a model checks drift or
    teams are scraped: a team may turn drift on without a platform update)."""
    groups: list[dict[str, Any]] = []
    if models:
        groups.append({"name": "mlplane-models", "rules": [r for m in models for r in model_rules(m, window)]})
    if teams:
        groups.append({"name": "mlplane-team-models", "rules": team_model_rules(window)})
    drift = drift or teams
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
