"""The rendered Prometheus config, rules and dashboard queries, checked by the real promtool and Prometheus.

Nothing is installed here: the tests use ``promtool`` and ``prometheus`` from PATH (Debian package
``prometheus``) and skip with the reason when they are missing.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from mlplane.core import kube
from mlplane.config import parse_platform
from mlplane.services.monitoring import CONFIG_FILE, RULES_FILE, Monitoring, MonitoringArgs, dashboards
from mlplane.tooling.render import capture
from mlplane.services.serving import ServedModel

from conftest import Root, fake_secret

pytestmark = pytest.mark.servers

# Prometheus 3 of the pinned release when scripts/bootstrap-servers.sh built it (with Kubernetes
# discovery), else Debian's 2.42 from PATH.
_SERVERS_BIN = Path.home() / ".cache/mlplane/servers/bin"
PROMTOOL = str(_SERVERS_BIN / "promtool") if (_SERVERS_BIN / "promtool").exists() else shutil.which("promtool")
PROMETHEUS = str(_SERVERS_BIN / "prometheus") if (_SERVERS_BIN / "prometheus").exists() else shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not on PATH (Debian package 'prometheus' provides it)"
)

NS = "mlplane-serving"
MODELS = [
    ServedModel("iris", NS, "iris", "http://iris.mlplane.localhost", "iris-classifier", "v3"),
    ServedModel("wine", NS, "wine", "http://wine.mlplane.localhost", "wine", "champion"),
    ServedModel("digits", NS, "digits", "http://digits.mlplane.localhost", "digits", "v1", "v2", 10),
]
TARGETS = [
    kube.ScrapeTarget("envoy", "envoy-gateway-system", {"app.kubernetes.io/name": "envoy"}, "metrics", "/stats/prometheus"),
    kube.ScrapeTarget("mlflow", pulumi.Output.from_input("mlplane-tracking"), {"app.kubernetes.io/name": "mlflow"}, "metrics"),
]


def _render() -> dict[str, str]:
    """Render the Monitoring component offline; return the Prometheus ConfigMap's files."""
    config = parse_platform({})

    def program() -> None:
        provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
        platform = kube.Platform(name="mlplane", provider=provider, protect_stateful=True, secret=fake_secret)
        gateway = kube.GatewayRef(name="mlplane", namespace="mlplane-routing", domain="mlplane.localhost", http_port=80)
        Monitoring(
            "mlplane-monitoring",
            MonitoringArgs(config.monitoring, platform, gateway, TARGETS, MODELS),
            pulumi.ResourceOptions(parent=Root(provider)),
        )

    return capture(program).named("mlplane-monitoring-prometheus-config").manifest()["data"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the rendered prometheus.yml and rules file, as mounted in the pod."""
    directory = tmp_path_factory.mktemp("prometheus")
    for name, text in _render().items():
        (directory / name).write_text(text)
    return directory


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)


def _passed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0


# --------------------------------------------------------------------------------------------
# promtool check
# --------------------------------------------------------------------------------------------


@needs_promtool
def test_promtool_accepts_the_rendered_rules(rendered: Path) -> None:
    result = promtool("check", "rules", RULES_FILE, cwd=rendered)
    assert _passed(result), result.stdout + result.stderr
    # 5 recording rules per model and 3 alerts.
    assert f"SUCCESS: {5 * len(MODELS) + 3} rules found" in result.stdout


@needs_promtool
def test_promtool_accepts_the_rendered_config(rendered: Path) -> None:
    result = promtool("check", "config", CONFIG_FILE, cwd=rendered)
    output = result.stdout + result.stderr
    if "field kubernetes_sd_configs not found" in output:
        pytest.skip(
            "this promtool was built without Kubernetes service discovery (Debian's package strips "
            "it); the static-discovery variant below still checks everything else"
        )
    assert _passed(result), output
    assert "SUCCESS: 1 rule files found" in output


@needs_promtool
def test_promtool_accepts_the_rendered_config_with_discovery_swapped_for_static_targets(rendered: Path, tmp_path: Path) -> None:
    """Relabelling, globals and the rule file reference, checked by any promtool build."""
    document = yaml.safe_load((rendered / CONFIG_FILE).read_text())
    for job in document["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(document))
    shutil.copy(rendered / RULES_FILE, tmp_path / RULES_FILE)
    result = promtool("check", "config", CONFIG_FILE, cwd=tmp_path)
    assert _passed(result), result.stdout + result.stderr
    # The rule file is found relative to the config, as in the pod, and checked along with it.
    assert "SUCCESS: 1 rule files found" in result.stdout


# --------------------------------------------------------------------------------------------
# promtool test rules: series that must fire each alert, and series that must not
# --------------------------------------------------------------------------------------------


def _cluster(model: str) -> str:
    return f'envoy_cluster_name="httproute/{NS}/{model}/rule/0"'


def _counter(per_minute: int) -> str:
    return f"0+{per_minute}x20" if per_minute else "0x20"


def _traffic(
    model: str, requests: int, errors: int | None, buckets: dict[str, int], job: str = 'job="envoy"'
) -> list[dict[str, str]]:
    """Series for one model: requests and 5xx per minute (None: no 5xx counter), cumulative buckets in ms,
    as the ``job`` (by default the Gateway's scrape job) stores them."""
    labels = f"{job},{_cluster(model)}"
    series = [{"series": f"envoy_cluster_upstream_rq_total{{{labels}}}", "values": _counter(requests)}]
    if errors is not None:
        series.append(
            {
                "series": f'envoy_cluster_upstream_rq_xx{{{labels},envoy_response_code_class="5"}}',
                "values": _counter(errors),
            }
        )
    series += [
        {"series": f'envoy_cluster_upstream_rq_time_bucket{{{labels},le="{le}"}}', "values": _counter(count)}
        for le, count in buckets.items()
    ]
    return series


def _close_to(record: str, model: str, value: float) -> dict[str, Any]:
    """A promql_expr_test: the model's recorded value is within 1e-4 of ``value`` at 15m."""
    return {
        "expr": f'abs({record}{{model="{model}"}} - {value}) < bool 0.0001',
        "eval_time": "15m",
        "exp_samples": [{"labels": f'{{model="{model}"}}', "value": 1}],
    }


def _unit_tests() -> dict[str, Any]:
    # Default thresholds: 5% errors, p99 1s, held 5m; rates over 5m.
    series = [
        {"series": 'up{job="envoy",instance="10.0.0.1:19001"}', "values": "0x20"},
        {"series": 'up{job="mlflow",instance="10.0.0.2:5000"}', "values": "1x20"},
        # iris: 10% errors, every request between 2.5s and 5s -> p99 4.975s.
        *_traffic("iris", 600, 60, {"1000": 0, "2500": 0, "5000": 600, "+Inf": 600}),
        # wine: 1% errors, every request between 50ms and 100ms -> p99 99.5ms.
        *_traffic("wine", 600, 6, {"50": 0, "100": 600, "+Inf": 600}),
        # digits: never answered a 5xx (Envoy has not created the counter), fast.
        *_traffic("digits", 600, None, {"100": 600, "+Inf": 600}),
    ]
    return {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    # Conditions hold from the start but not yet for 5m: nothing fires.
                    {"eval_time": "3m", "alertname": "TargetDown", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "ModelErrorRateHigh", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "ModelLatencyHigh", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "TargetDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "job": "envoy", "instance": "10.0.0.1:19001"},
                                "exp_annotations": {
                                    "summary": "envoy target 10.0.0.1:19001 is down",
                                    "description": "Prometheus could not scrape 10.0.0.1:19001 (job envoy) for 5m.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "ModelErrorRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model": "iris"},
                                "exp_annotations": {
                                    "summary": "Model iris answers 10% of requests with 5xx",
                                    "description": "More than 5% of the requests to the model failed (5xx) over 5m, for 5m.",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "ModelLatencyHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model": "iris"},
                                "exp_annotations": {
                                    "summary": "Model iris p99 latency is 4.975s",
                                    "description": "The model's p99 latency over 5m was above 1s for 5m.",
                                },
                            }
                        ],
                    },
                ],
                "promql_expr_test": [
                    # Envoy's buckets are milliseconds; the recorded quantile is in seconds.
                    _close_to("mlplane:model_latency_p99_seconds", "iris", 4.975),
                    _close_to("mlplane:model_latency_p99_seconds", "wine", 0.0995),
                    _close_to("mlplane:model_error_ratio", "iris", 0.1),
                    _close_to("mlplane:model_error_ratio", "wine", 0.01),
                    # No 5xx counter yet means no errors, not an unknown error ratio.
                    _close_to("mlplane:model_error_ratio", "digits", 0),
                    {
                        "expr": 'mlplane:model_info{model="digits"}',
                        "eval_time": "1m",
                        "exp_samples": [
                            {
                                "labels": 'mlplane:model_info{model="digits",registered_model="digits",version="v1",'
                                f'namespace="{NS}",route="digits",envoy_cluster_name="httproute/{NS}/digits/rule/0",'
                                'canary_version="v2",canary_weight="10"}',
                                "value": 1,
                            }
                        ],
                    },
                ],
            }
        ],
    }


@needs_promtool
def test_alerts_fire_for_bad_series_and_stay_quiet_for_good_ones(rendered: Path) -> None:
    (rendered / "unit-tests.yml").write_text(yaml.safe_dump(_unit_tests(), sort_keys=False))
    result = promtool("test", "rules", "unit-tests.yml", cwd=rendered)
    assert _passed(result), result.stdout + result.stderr


#: Where a team's pod lands (job 'team-pods', its own namespace), had it published Envoy's names.
FORGED = 'job="team-pods",namespace="mlplane-team-b-serving",pod="forger-1"'


@needs_promtool
def test_envoy_series_from_another_job_never_fire_or_hide_a_platform_models_alert(rendered: Path) -> None:
    """Review finding: a team pod publishing Envoy-named series for a platform model's route.
    The team-pods job drops those names (test_team_metrics_real.py proves it on a real
    Prometheus); the rules also count the Gateway's job only, checked here: forged 100% 5xx on
    healthy 'wine' fires nothing, forged 2xx padding on failing 'iris' hides nothing."""
    series = [
        # wine: healthy at the Gateway (1% 5xx, fast); forged: every request a 5xx, 10s each.
        *_traffic("wine", 600, 6, {"50": 0, "100": 600, "+Inf": 600}),
        *_traffic("wine", 6000, 6000, {"10000": 0, "+Inf": 6000}, job=FORGED),
        # iris: 10% 5xx and slow at the Gateway; forged: 100x as many fast 2xx.
        *_traffic("iris", 600, 60, {"1000": 0, "2500": 0, "5000": 600, "+Inf": 600}),
        *_traffic("iris", 60000, 0, {"50": 60000, "+Inf": 60000}, job=FORGED),
    ]
    tests = {
        "rule_files": [RULES_FILE],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "ModelErrorRateHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "model": "iris"},
                    "exp_annotations": {
                        "summary": "Model iris answers 10% of requests with 5xx",
                        "description": "More than 5% of the requests to the model failed (5xx) over 5m, for 5m.",
                    },
                }]},
                {"eval_time": "15m", "alertname": "ModelLatencyHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "model": "iris"},
                    "exp_annotations": {
                        "summary": "Model iris p99 latency is 4.975s",
                        "description": "The model's p99 latency over 5m was above 1s for 5m.",
                    },
                }]},
            ],
            "promql_expr_test": [
                _close_to("mlplane:model_error_ratio", "wine", 0.01),
                _close_to("mlplane:model_error_ratio", "iris", 0.1),
                _close_to("mlplane:model_request_rate", "iris", 10),
                _close_to("mlplane:model_latency_p99_seconds", "wine", 0.0995),
            ],
        }],
    }
    (rendered / "forged-tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "forged-tests.yml", cwd=rendered)
    assert _passed(result), result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Dashboard queries are valid PromQL
# --------------------------------------------------------------------------------------------

_GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$model": "iris", "$cluster": f"httproute/{NS}/iris/rule/0"}


def _dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for name, text in dashboards().items():
        document = json.loads(text)
        for panel in document["panels"]:
            found += [(f"{name}: {panel['title']}", target["expr"]) for target in panel["targets"]]
        found += [(f"{name}: ${v['name']}", v["query"]["query"]) for v in document["templating"]["list"]]
    return found


def _as_promql(query: str) -> str:
    """Grafana's variables replaced by values; label_values(m, l) checked as the selector m."""
    for variable, value in _GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    match = re.fullmatch(r"label_values\((.+), *[a-z_]+\)", query)
    return match[1] if match else query


@needs_promtool
def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert queries
    document = {
        "groups": [
            {"name": "dashboards", "rules": [{"record": f"dashboard:query_{i}", "expr": _as_promql(q)} for i, (_, q) in enumerate(queries)]}
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(document))
    result = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert _passed(result), result.stdout + result.stderr + "\n" + "\n".join(f"{i}: {t}" for i, (t, _) in enumerate(queries))


# --------------------------------------------------------------------------------------------
# A real Prometheus loads the rules and records model series from Envoy-shaped metrics
# --------------------------------------------------------------------------------------------


class _FakeEnvoy(http.server.BaseHTTPRequestHandler):
    """Serves Envoy-shaped /stats/prometheus for the iris route; counters grow on every scrape."""

    scrapes = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        type(self).scrapes += 1
        count = 100 * type(self).scrapes
        cluster = _cluster("iris")
        lines = [
            "# TYPE envoy_cluster_upstream_rq_total counter",
            f"envoy_cluster_upstream_rq_total{{{cluster}}} {count}",
            "# TYPE envoy_cluster_upstream_rq_time histogram",
            *(f'envoy_cluster_upstream_rq_time_bucket{{{cluster},le="{le}"}} {count}' for le in ("50", "100", "+Inf")),
            f"envoy_cluster_upstream_rq_time_sum{{{cluster}}} {40 * count}",
            f"envoy_cluster_upstream_rq_time_count{{{cluster}}} {count}",
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server API)
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_envoy() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeEnvoy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not on PATH (Debian package 'prometheus' provides it)")
def test_real_prometheus_loads_the_rules_and_records_model_series(rendered: Path, tmp_path: Path, fake_envoy: int) -> None:
    assert PROMETHEUS is not None
    shutil.copy(rendered / RULES_FILE, tmp_path / RULES_FILE)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"127.0.0.1:{fake_envoy}"]}],
            }
        ],
    }
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(config))
    port = _free_port()
    log = tmp_path / "prometheus.log"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / CONFIG_FILE}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        recorded = _wait_for_recorded_rate(port, process, log)
        groups = _api(port, "rules")["groups"]
        assert sorted(g["name"] for g in groups) == ["mlplane-alerts", "mlplane-models"]
        assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
        assert float(recorded["value"][1]) > 0
        models = _api(port, "query", query="mlplane:model_info")["result"]
        assert sorted(s["metric"]["model"] for s in models) == ["digits", "iris", "wine"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_recorded_rate(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> dict[str, Any]:
    """Wait until the iris request rate is recorded from scraped samples; return that sample."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            result = _api(port, "query", query='mlplane:model_request_rate{model="iris"}')["result"]
        except OSError:
            result = []
        if result and float(result[0]["value"][1]) > 0:
            return result[0]
        time.sleep(0.5)
    pytest.fail("Prometheus recorded no request rate for iris within 30s")
