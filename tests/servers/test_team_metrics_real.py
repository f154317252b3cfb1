"""Team models in the platform Prometheus, checked by the real promtool: the 'team-pods' scrape
job, the team models' recording rules (info series from a team's model exporter joined with the
Gateway's per-route stats), the alerts on them and the drift alert with the team's threshold.

The info series comes from a pod the team controls, so the rules must not trust the route it
names: a series claiming another team's route is tested to record nothing for that route.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from mlplane.config import parse_platform
from mlplane.core import kube
from mlplane.services import progressive, prometheus_config
from mlplane.services.progressive import GATEWAY_JOB
from mlplane.services.prometheus_config import meta_label
from mlplane.services.monitoring import CONFIG_FILE, RULES_FILE, Monitoring, MonitoringArgs
from mlplane.services.serving import ServedModel
from mlplane.team.model_extras import model_info_exposition
from mlplane.tooling.render import capture

from conftest import Root, fake_secret
from test_monitoring_rules_real import PROMETHEUS, PROMTOOL, _free_port, needs_promtool

pytestmark = pytest.mark.servers

A, B = "mlplane-team-a-serving", "mlplane-team-b-serving"
TEAM_NAMESPACES = ("mlplane-team-a", A, "mlplane-team-b", B)
#: Labels of Envoy's series as the Gateway's scrape job stores them.
GATEWAY = f'job="{GATEWAY_JOB}",namespace="mlplane-gateway"'
#: Labels of a series a pod of team B publishes (job 'team-pods', its own namespace).
FROM_TEAM_B = f'job="team-pods",namespace="{B}"'


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


def _envoy(
    cluster: str, total: int, errors: int | None, buckets: dict[str, int], base: str = ""
) -> list[dict[str, str]]:
    """Envoy's per-route series as the Gateway's job stores them (``base``: as another job would)."""
    base = (base or GATEWAY) + f',envoy_cluster_name="{cluster}"'
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


# --------------------------------------------------------------------------------------------
# Forged Envoy series from a team's pod (review finding 1)
# --------------------------------------------------------------------------------------------


def _flagger_query(query: str, namespace: str, target: str, interval: str) -> str:
    """A MetricTemplate query as Flagger renders it (its Go template variables)."""
    return (query.replace("{{ namespace }}", namespace).replace("{{ target }}", target)
            .replace("{{ interval }}", interval))


@needs_promtool
def test_envoy_series_a_team_pod_forges_move_no_other_teams_alert_or_canary(rendered: Path) -> None:
    """The reviewer's attack, had the team-pods job let the names through (it drops them: the
    real Prometheus test below): team B publishes Envoy's series for team A's route. A's
    alert and A's Flagger checks count the Gateway's job only: forged 5xx fire nothing and do
    not roll A's canary back; forged 2xx padding does not hide A's real errors from Flagger."""
    team_a = model_info_exposition([
        ServedModel("iris", A, "iris", "http://iris.a.mlplane.localhost", "iris-classifier", "v3"),
        ServedModel("wine", A, "wine", "http://wine.a.mlplane.localhost", "wine", "v1"),
    ])
    series = [
        *_info_series(A, team_a),
        # iris: healthy at the Gateway; team B forges every request as a 5xx.
        *_envoy(f"httproute/{A}/iris/rule/0", 600, 0, {"100": 600, "+Inf": 600}),
        *_envoy(f"httproute/{A}/iris/rule/0", 6000, 6000, {"100": 6000, "+Inf": 6000}, base=FROM_TEAM_B),
        # wine: 10% 5xx at the Gateway; team B pads it with fast 2xx.
        *_envoy(f"httproute/{A}/wine/rule/0", 600, 60, {"100": 600, "+Inf": 600}),
        *_envoy(f"httproute/{A}/wine/rule/0", 60000, 0, {"100": 60000, "+Inf": 60000}, base=FROM_TEAM_B),
    ]
    templates = {
        model: {name.removeprefix(f"{model}-"): spec["query"]
                for name, spec in progressive.metric_templates(model, "http://prometheus:9090").items()}
        for model in ("iris", "wine")
    }

    def flagger(model: str, value: float) -> dict[str, Any]:
        query = _flagger_query(templates[model]["error-rate"], A, model, "5m")
        return {"expr": f"abs(({query}) - {value}) < bool 0.0001", "eval_time": "15m",
                "exp_samples": [{"labels": "{}", "value": 1}]}

    tests = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "ModelErrorRateHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": A, "model": "wine"},
                    "exp_annotations": {
                        "summary": "Model wine answers 10% of requests with 5xx",
                        "description": "More than 5% of the requests to the model failed (5xx) over 5m, for 5m.",
                    },
                }]},
            ],
            "promql_expr_test": [
                _close_to("mlplane:model_error_ratio", A, "iris", 0),
                _close_to("mlplane:model_request_rate", A, "iris", 10),
                _close_to("mlplane:model_error_ratio", A, "wine", 0.1),
                # Flagger's error-rate check of A's canaries: 0 for iris, 0.1 for wine.
                flagger("iris", 0),
                flagger("wine", 0.1),
            ],
        }],
    }
    (rendered / "forged-tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "forged-tests.yml", cwd=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


#: What a pod of team B serves on its metrics port: its exporter's legitimate series and its own
#: application metric, next to every name reserved to the platform (forged for team A's route).
_FORGER_LINES = (
    '# TYPE envoy_cluster_upstream_rq_xx counter',
    f'envoy_cluster_upstream_rq_xx{{envoy_cluster_name="httproute/{A}/iris/rule/0",envoy_response_code_class="5"}} {{n}}',
    '# TYPE envoy_cluster_upstream_rq_total counter',
    f'envoy_cluster_upstream_rq_total{{job="envoy",envoy_cluster_name="httproute/{A}/iris/rule/0"}} {{n}}',
    f'flagger_canary_weight{{name="iris",namespace="{A}"}} 100',
    f'mlflow_http_request_total{{status="500"}} {{n}}',
    f'mlplane:model_error_ratio{{namespace="{A}",model="iris"}} 1',
    f'ALERTS{{alertname="ModelErrorRateHigh",alertstate="firing",namespace="{A}",model="iris"}} 1',
    'up 0',
    'scrape_samples_scraped 1',
    f'mlplane_team_model_info{{model="fraud",registered_model="fraud",route="fraud",version="v1"}} 1',
    'mlplane_model_drift_share{model="fraud",version="v1"} 0.1',
    '# TYPE http_requests_total counter',
    'http_requests_total{code="200"} {n}',
)
_RESERVED_FORGED = {"envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_rq_total", "flagger_canary_weight",
                    "mlflow_http_request_total", "mlplane:model_error_ratio", "ALERTS"}
_KEPT = {"mlplane_team_model_info", "mlplane_model_drift_share", "http_requests_total"}


def _exposition_server(lines: Sequence[str]) -> http.server.ThreadingHTTPServer:
    """Serves ``lines`` (``{n}``: a counter growing on every scrape) on /metrics and /stats/prometheus."""

    class Handler(http.server.BaseHTTPRequestHandler):
        scrapes = 0

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            type(self).scrapes += 1
            body = ("\n".join(lines).replace("{n}", str(100 * type(self).scrapes)) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server API)
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _pod(port: int, namespace: str, pod: str) -> dict[str, Any]:
    """A static target carrying the discovery labels Kubernetes SD would give the team's pod, so
    the rendered job's relabelling (keep labelled pods on port 'metrics', namespace and pod from
    discovery) runs unchanged."""
    return {"targets": [f"127.0.0.1:{port}"], "labels": {
        meta_label(kube.SCRAPE): "metrics", "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod,
    }}


def _query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not on PATH (Debian package 'prometheus' provides it)")
def test_a_real_prometheus_drops_what_a_team_pod_forges_and_keeps_what_it_may_publish(
    rendered: Path, tmp_path: Path
) -> None:
    """The rendered 'team-pods' job, relabelling included, scrapes a pod of team B serving Envoy,
    Flagger, MLflow, recording-rule and Prometheus-made names for team A's route next to its
    exporter's series and an application metric; a stand-in Envoy (job 'envoy') serves team A's
    real, error-free traffic and team A's exporter its info. Only B's legitimate series are
    stored, and A's model records no error."""
    assert PROMETHEUS is not None
    document = yaml.safe_load((rendered / CONFIG_FILE).read_text())
    [team_job] = [j for j in document["scrape_configs"] if j["job_name"] == prometheus_config.TEAM_JOB]
    cluster = f'envoy_cluster_name="httproute/{A}/iris/rule/0"'
    envoy_lines = (
        "# TYPE envoy_cluster_upstream_rq_total counter",
        f"envoy_cluster_upstream_rq_total{{{cluster}}} {{n}}",
        "# TYPE envoy_cluster_upstream_rq_time histogram",
        *(f'envoy_cluster_upstream_rq_time_bucket{{{cluster},le="{le}"}} {{n}}' for le in ("50", "+Inf")),
        f"envoy_cluster_upstream_rq_time_sum{{{cluster}}} {{n}}",
        f"envoy_cluster_upstream_rq_time_count{{{cluster}}} {{n}}",
    )
    exporter_a = model_info_exposition([ServedModel("iris", A, "iris", "http://x", "iris-classifier", "v3")]).splitlines()
    servers = [_exposition_server(_FORGER_LINES), _exposition_server(envoy_lines), _exposition_server(exporter_a)]
    forger, envoy, exporter = (s.server_address[1] for s in servers)
    team_job.pop("kubernetes_sd_configs")
    team_job["static_configs"] = [_pod(forger, B, "forger-1"), _pod(exporter, A, "model-exporter-1")]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": GATEWAY_JOB, "metrics_path": "/stats/prometheus",
             "static_configs": [{"targets": [f"127.0.0.1:{envoy}"], "labels": {"namespace": "mlplane-gateway"}}]},
            team_job,
        ],
    }
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(rendered / RULES_FILE, tmp_path / RULES_FILE)
    port = _free_port()
    log = tmp_path / "prometheus.log"
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / CONFIG_FILE}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    try:
        deadline = time.monotonic() + 60
        rate: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rate:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                rate = _query(port, f'mlplane:model_request_rate{{namespace="{A}",model="iris"}} > 0')
            except OSError:
                pass
            time.sleep(0.5)
        assert rate, f"no request rate recorded for team A's iris within 60s:\n{log.read_text()[-3000:]}"
        from_b = {s["metric"]["__name__"] for s in _query(port, f'{{job="team-pods",namespace="{B}"}}')}
        assert _KEPT <= from_b, from_b
        assert not from_b & _RESERVED_FORGED, from_b & _RESERVED_FORGED
        assert from_b - _KEPT <= {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                                  "scrape_samples_post_metric_relabeling", "scrape_series_added"}, from_b
        # Prometheus' own 'up' of B's pod, never the 'up 0' the pod published.
        [up] = _query(port, f'up{{job="team-pods",namespace="{B}"}}')
        assert up["value"][1] == "1"
        # A's error ratio is from the Gateway's job only: 0, and no alert names A's model.
        [ratio] = _query(port, f'mlplane:model_error_ratio{{namespace="{A}",model="iris"}}')
        assert float(ratio["value"][1]) == 0
        assert _query(port, f'ALERTS{{namespace="{A}"}}') == []
        assert [s["metric"]["job"] for s in _query(port, "envoy_cluster_upstream_rq_total")] == [GATEWAY_JOB]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for server in servers:
            server.shutdown()
            server.server_close()
