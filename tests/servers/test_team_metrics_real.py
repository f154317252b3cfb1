"""Team models in the platform Prometheus, checked by the real promtool: the 'team-pods' scrape
job, the team models' recording rules (info series from a team's model exporter joined with the
Gateway's per-route stats), the alerts on them and the drift alert with the team's threshold.

The info series comes from a pod the team controls, so the rules must not trust the route it
names: a series claiming another team's route is tested to record nothing for that route.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from mlplane.config import parse_platform
from mlplane.core import kube
from mlplane.services import prometheus_config
from mlplane.services.monitoring import CONFIG_FILE, RULES_FILE, Monitoring, MonitoringArgs
from mlplane.services.serving import ServedModel
from mlplane.team.model_extras import model_info_exposition
from mlplane.tooling.render import capture

from conftest import Root, fake_secret
from test_monitoring_rules_real import PROMTOOL, needs_promtool

pytestmark = pytest.mark.servers

A, B = "mlplane-team-a-serving", "mlplane-team-b-serving"
TEAM_NAMESPACES = ("mlplane-team-a", A, "mlplane-team-b", B)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = parse_platform({})

    def program() -> None:
        provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
        platform = kube.Platform(name="mlplane", provider=provider, protect_stateful=True, secret=fake_secret)
        gateway = kube.GatewayRef(name="mlplane", namespace="mlplane-routing", domain="mlplane.localhost", http_port=80)
        Monitoring(
            "mlplane-monitoring",
            MonitoringArgs(config.monitoring, platform, gateway, [], [], team_namespaces=TEAM_NAMESPACES),
            pulumi.ResourceOptions(parent=Root(provider)),
        )

    directory = tmp_path_factory.mktemp("prometheus")
    for name, text in capture(program).named("mlplane-monitoring-prometheus-config").manifest()["data"].items():
        (directory / name).write_text(text)
    return directory


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_team_pods_job_discovers_labelled_pods_in_the_team_namespaces_only(rendered: Path) -> None:
    config = yaml.safe_load((rendered / CONFIG_FILE).read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == prometheus_config.TEAM_JOB]
    [discovery] = job["kubernetes_sd_configs"]
    assert discovery["namespaces"] == {"names": sorted(TEAM_NAMESPACES)}
    assert discovery["selectors"] == [{"role": "pod", "label": "mlplane.dev/scrape=metrics"}]
    keeps = [r for r in job["relabel_configs"] if r["action"] == "keep"]
    assert {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics"} in keeps
    # The namespace label is the scraped pod's, set by Prometheus (a pod cannot choose it).
    assert {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"} in job["relabel_configs"]
    assert "honor_labels" not in job


@needs_promtool
def test_promtool_accepts_the_team_rules_and_config(rendered: Path, tmp_path: Path) -> None:
    result = promtool("check", "rules", RULES_FILE, cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    document = yaml.safe_load((rendered / CONFIG_FILE).read_text())
    for job in document["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(document))
    shutil.copy(rendered / RULES_FILE, tmp_path / RULES_FILE)
    result = promtool("check", "config", CONFIG_FILE, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _info_series(namespace: str, exposition: str) -> list[dict[str, str]]:
    """The exporter's exposition as promtool input series, labelled as job 'team-pods' sets them."""
    series = []
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        name_labels = line.rsplit(" ", 1)[0]
        name, labels = name_labels.split("{", 1)
        extra = f'job="team-pods",namespace="{namespace}",pod="model-exporter-1",'
        series.append({"series": f"{name}{{{extra}{labels}", "values": "1x30"})
    return series


def _envoy(cluster: str, total: int, errors: int | None, buckets: dict[str, int]) -> list[dict[str, str]]:
    base = f'envoy_cluster_name="{cluster}",namespace="mlplane-gateway"'
    series = [
        {"series": f'envoy_cluster_upstream_rq_total{{{base},pod="envoy-1"}}', "values": f"0+{total // 2}x30"},
        {"series": f'envoy_cluster_upstream_rq_total{{{base},pod="envoy-2"}}', "values": f"0+{total - total // 2}x30"},
    ]
    if errors is not None:
        series.append({"series": f'envoy_cluster_upstream_rq_xx{{{base},pod="envoy-1",envoy_response_code_class="5"}}',
                       "values": f"0+{errors}x30"})
    series += [
        {"series": f'envoy_cluster_upstream_rq_time_bucket{{{base},pod="envoy-1",le="{le}"}}', "values": f"0+{n}x30"}
        for le, n in buckets.items()
    ]
    return series


def _close_to(record: str, namespace: str, model: str, value: float) -> dict[str, Any]:
    return {
        "expr": f'abs({record}{{namespace="{namespace}",model="{model}"}} - {value}) < bool 0.0001',
        "eval_time": "15m",
        "exp_samples": [{"labels": f'{{namespace="{namespace}",model="{model}"}}', "value": 1}],
    }


@needs_promtool
def test_team_models_get_info_rates_alerts_and_drift_alerts_from_their_exporter(rendered: Path) -> None:
    team_a = model_info_exposition([
        ServedModel("iris", A, "iris", "http://iris.a.mlplane.localhost", "iris-classifier", "v3", "v4", 10),
    ])
    # Team B's exporter claims team A's route 'iris' under a model of its own.
    team_b = model_info_exposition([ServedModel("stolen", B, "iris", "http://x", "x", "v1")])
    drift = [
        {"series": f'mlplane_model_drift_share{{job="team-pods",namespace="{A}",exported_namespace="{A}",model="iris",version="v3"}}',
         "values": "0.5x30"},
        {"series": f'mlplane_model_drift_share_threshold{{job="team-pods",namespace="{A}",exported_namespace="{A}",model="iris",version="v3"}}',
         "values": "0.4x30"},
    ]
    series = [
        *_info_series(A, team_a), *_info_series(B, team_b), *drift,
        # 10 requests/s over two Envoy pods, 1/s answered 5xx, p99 99ms.
        *_envoy(f"httproute/{A}/iris/rule/0", 600, 60, {"50": 300, "100": 600, "+Inf": 600}),
    ]
    tests = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "ModelErrorRateHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": A, "model": "iris"},
                    "exp_annotations": {
                        "summary": "Model iris answers 10% of requests with 5xx",
                        "description": "More than 5% of the requests to the model failed (5xx) over 5m, for 5m.",
                    },
                }]},
                {"eval_time": "15m", "alertname": "ModelDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": A, "model": "iris", "version": "v3"},
                    "exp_annotations": {
                        "summary": "Model iris (v3) inputs drifted: 50% of features",
                        "description": f"The last drift check of {A}/iris found the share of features whose PSI is above "
                        "the threshold at or above the model's drift.thresholds.share. See docs/models.md.",
                    },
                }]},
            ],
            "promql_expr_test": [
                _close_to("mlplane:model_request_rate", A, "iris", 10),
                _close_to("mlplane:model_error_ratio", A, "iris", 0.1),
                _close_to("mlplane:model_latency_p99_seconds", A, "iris", 0.099),
                {
                    "expr": f'mlplane:model_info{{namespace="{A}"}}',
                    "eval_time": "1m",
                    "exp_samples": [{
                        "labels": f'mlplane:model_info{{namespace="{A}",model="iris",registered_model="iris-classifier",'
                        f'version="v3",route="iris",envoy_cluster_name="httproute/{A}/iris/rule/0",'
                        'canary_version="v4",canary_weight="10"}',
                        "value": 1,
                    }],
                },
                # Team B's claim is rebuilt in its own namespace, where that route has no traffic.
                {
                    "expr": 'mlplane:model_info{model="stolen"}',
                    "eval_time": "1m",
                    "exp_samples": [{
                        "labels": f'mlplane:model_info{{namespace="{B}",model="stolen",registered_model="x",'
                        f'version="v1",route="iris",envoy_cluster_name="httproute/{B}/iris/rule/0"}}',
                        "value": 1,
                    }],
                },
                {"expr": 'mlplane:model_request_rate{model="stolen"}', "eval_time": "15m", "exp_samples": []},
                {"expr": 'mlplane:model_latency_p99_seconds{model="stolen"}', "eval_time": "15m", "exp_samples": []},
            ],
        }],
    }
    (rendered / "team-tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "team-tests.yml", cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_team_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    from mlplane.config.team import parse_team
    from mlplane.team.dashboard import team_dashboard

    team = parse_team({"name": "a", "platform_stack": "local", "serving": {"models": [
        {"name": "iris", "registered_model": "iris", "version": 1, "logging": {"sample_rate": 0.1}, "drift": {}},
        {"name": "wine", "registered_model": "wine", "version": 2, "canary": {"mode": "progressive"}},
    ]}})
    panels = team_dashboard(team, A, "5m")["panels"]
    assert [p["id"] for p in panels] == [1, 2, 3, 4, 5, 6]
    document = {"groups": [{"name": "team", "rules": [
        {"record": f"dashboard:team_{p['id']}", "expr": p["targets"][0]["expr"]} for p in panels]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(document))
    result = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
