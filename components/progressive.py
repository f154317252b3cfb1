"""Progressive delivery of served models with Flagger (``serving.models[].canary.mode: progressive``).

Flagger (github.com/fluxcd/flagger v1.36.1, the highest version ``go list -m -versions`` lists;
its ``gatewayapi:v1`` router in pkg/router/gateway_api.go) takes over the model's Deployment as
its target: on a change of the pod template (a new model version) it runs the new version as
``<model>-canary`` next to ``<model>-primary``, shifts the HTTPRoute's weights step by step
(``analysis.stepWeights``), checks the route's error ratio and p99 latency in Prometheus every
``interval`` (MetricTemplates over the Envoy Gateway per-route stats Monitoring also records) and
rolls back after ``failed_checks`` failed checks. Flagger creates the Services ``<model>``,
``<model>-primary``, ``<model>-canary`` and the HTTPRoute ``<model>`` itself, so in this mode
Serving creates neither. Types: flagger ``pkg/apis/flagger/v1beta1`` (canary.go,
metric_template.go); validated against ``artifacts/flagger/crd.yaml`` of the same module in
tests/test_progressive.py.
"""

from __future__ import annotations

from typing import Any

from .config import ModelConfig

API_VERSION = "flagger.app/v1beta1"
PROVIDER = "gatewayapi:v1"
FLAGGER_VERSION = "v1.36.1"
#: The Envoy Gateway stats of the route Flagger creates (one rule; primary and canary share it).
ROUTE_CLUSTER = 'envoy_cluster_name="httproute/{{ namespace }}/{{ target }}/rule/0"'


def error_rate_query() -> str:
    """Share of 5xx answers on the model's route over the check interval (0 without 5xx)."""
    total = f"sum(rate(envoy_cluster_upstream_rq_total{{{ROUTE_CLUSTER}}}[{{{{ interval }}}}]))"
    errors = (
        f'(sum(rate(envoy_cluster_upstream_rq_xx{{{ROUTE_CLUSTER},envoy_response_code_class="5"}}'
        f"[{{{{ interval }}}}])) or vector(0))"
    )
    return f"{errors} / {total}"


def latency_query() -> str:
    """p99 latency in seconds (Envoy's histogram counts milliseconds)."""
    buckets = f"sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{{{ROUTE_CLUSTER}}}[{{{{ interval }}}}]))"
    return f"histogram_quantile(0.99, {buckets}) / 1000"


def metric_templates(model: str, prometheus_url: str) -> dict[str, dict[str, Any]]:
    """MetricTemplate specs, name -> spec."""
    provider = {"type": "prometheus", "address": prometheus_url}
    return {
        f"{model}-error-rate": {"provider": provider, "query": error_rate_query()},
        f"{model}-latency": {"provider": provider, "query": latency_query()},
    }


def canary_spec(model: ModelConfig, gateway_name: str, gateway_namespace: str, host: str, port: int) -> dict[str, Any]:
    """The Canary spec of one model in mode 'progressive'."""
    canary = model.canary
    assert canary is not None and canary.mode == "progressive"
    limits = canary.thresholds
    return {
        "provider": PROVIDER,
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name},
        "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": model.name},
        # The new version downloads and loads its model before it is ready.
        "progressDeadlineSeconds": model.startup_timeout_seconds + 120,
        "service": {
            "port": port,
            "targetPort": "http",
            "hosts": [host],
            "gatewayRefs": [{"name": gateway_name, "namespace": gateway_namespace}],
        },
        "analysis": {
            "interval": canary.interval,
            "threshold": limits.failed_checks,
            "stepWeights": list(canary.steps),
            "metrics": [
                {
                    "name": "error-rate",
                    "templateRef": {"name": f"{model.name}-error-rate"},
                    "thresholdRange": {"max": limits.error_rate},
                    "interval": canary.interval,
                },
                {
                    "name": "latency",
                    "templateRef": {"name": f"{model.name}-latency"},
                    "thresholdRange": {"max": limits.p99_latency_seconds},
                    "interval": canary.interval,
                },
            ],
        },
    }
