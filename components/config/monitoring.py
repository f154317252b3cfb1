"""The config of monitoring: Prometheus, Grafana and the alert thresholds."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from mlplane.config.scalars import Duration, Storage
from mlplane.config.blocks import _Model, Resources, resources


class AlertsConfig(_Model):
    """Alert thresholds."""

    model_error_rate: float = Field(
        default=0.05, gt=0, lt=1, description="Alert when a model's 5xx share of requests exceeds this."
    )
    model_p99_latency_seconds: float = Field(
        default=1.0, gt=0, description="Alert when a model's p99 latency exceeds this many seconds."
    )
    for_: Duration = Field(
        default="5m", alias="for", description="How long a condition must hold before it fires."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PrometheusConfig(_Model):
    """The built-in Prometheus."""

    retention: Duration = Field(default="7d", description="How long samples are kept.")
    scrape_interval: Duration = Field(default="30s", description="Scrape interval.")
    storage_size: Storage = Field(default="5Gi", description="Size of the TSDB volume.")
    resources: Resources = Field(
        default_factory=resources("50m", "256Mi", "1", "768Mi"),
        description="Requests and limits of Prometheus.",
    )
    route: bool | None = Field(
        default=None,
        description=(
            "Expose Prometheus (no authentication of its own) at prometheus.<domain>. Default: only "
            "on a kind cluster (the Gateway is on 127.0.0.1); any other cluster refuses it: use "
            "Grafana or `kubectl port-forward`."
        ),
    )


class GrafanaConfig(_Model):
    """The built-in Grafana."""

    resources: Resources = Field(
        default_factory=resources("25m", "128Mi", "500m", "384Mi"),
        description="Requests and limits of Grafana.",
    )


class MonitoringConfig(_Model):
    """Metrics, dashboards and alerts."""

    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig, description="Prometheus settings.")
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig, description="Grafana settings.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert thresholds.")
