"""Inference logging and drift, end to end on real servers: the rendered MLflow (PostgreSQL, moto
S3, from tests/servers/test_tracking_server_real.py), the logging sidecar in front of a stand-in model
server, the drift job on data with and without a shifted distribution, the exporter Prometheus
scrapes, and the ModelDrift rule under promtool.

The scripts run with the environment the rendered CronJob and sidecar carry (names and values
from the render, with the in-cluster addresses swapped for the local servers).
"""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from mlplane.services import drift, monitoring, prometheus_config
from mlplane.scripts import drift_check
from mlplane.config import parse_platform

from test_tracking_server_real import _free_port, _wait_http, servers  # noqa: F401 - the fixture

pytestmark = pytest.mark.servers

DATASETS = "mlplane-datasets"



@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    """The scripts as the pods get them: alone in a directory (the ConfigMap mount), not next to
    mlplane's modules (whose platform.py would shadow the standard library's)."""
    directory = tmp_path_factory.mktemp("scripts")
    for name in (drift.LOGGER_SCRIPT, drift.DRIFT_SCRIPT):
        (directory / name).write_text(drift.script(name))
    return directory


class _Model(http.server.BaseHTTPRequestHandler):
    """A stand-in for ``mlflow models serve``: /ping, and /invocations predicting x1 > 0."""

    def log_message(self, *args):  # noqa: D401
        return

    def do_GET(self):  # noqa: N802
        self._send(200, b"\n")

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        split = body["dataframe_split"]
        column = split["columns"].index("x1")
        self._send(200, json.dumps({"predictions": [int(row[column] > 0) for row in split["data"]]}).encode())

    def _send(self, status, data):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


def _frame(rng, n, shift=0.0):
    import pandas as pd

    return pd.DataFrame({
        "x1": rng.normal(shift, 1.0, n),
        "x2": rng.normal(5.0, 2.0, n),
        "colour": rng.choice(["red", "blue"], n, p=[0.7, 0.3] if not shift else [0.2, 0.8]),
    })


def _s3_env(servers) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto", "AWS_ENDPOINT_URL_S3": servers.moto_url,
            "AWS_DEFAULT_REGION": "us-east-1", "BUCKET": DATASETS, "NAMESPACE": "mlplane-serving",
            "LOG_PREFIX": drift.LOG_PREFIX}


def _log(servers, SCRIPTS_DIR, model_name: str, frame, tmp_path: Path) -> None:
    """Send ``frame`` through the logging sidecar (sample rate 1) to the stand-in model."""
    model_port, port = _free_port(), _free_port()
    model = http.server.ThreadingHTTPServer(("127.0.0.1", model_port), _Model)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    env = {**servers.base_env(), **_s3_env(servers), "MODEL_NAME": model_name, "MODEL_VERSION": "v1",
           "SAMPLE_RATE": "1", "EXCLUDE_FIELDS": json.dumps(["email"]), "FLUSH_SECONDS": "5",
           "LISTEN_PORT": str(port), "UPSTREAM_PORT": str(model_port), "POD_NAME": "iris-abc", "HOME": str(tmp_path)}
    log = tmp_path / f"logger-{model_name}.log"
    process = subprocess.Popen([sys.executable, str(SCRIPTS_DIR / drift.LOGGER_SCRIPT)], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}{'/-/logger/healthz'}", process, log, timeout=20)
        data = frame.assign(email="someone@example.com")
        for start in range(0, len(data), 50):
            chunk = data.iloc[start:start + 50]
            body = json.dumps({"dataframe_split": {"columns": list(chunk.columns), "data": chunk.values.tolist()}})
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert len(json.loads(response.read())["predictions"]) == len(chunk)
        # The sidecar forwards other paths too (the kubelet's readiness probe on /ping).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)  # flushes what is buffered
        process.wait(timeout=30)
        model.shutdown()


def _check(servers, SCRIPTS_DIR, model_name: str, tmp_path: Path, admin: dict[str, str]) -> str:
    env = {**servers.base_env(), **_s3_env(servers), "HOME": str(tmp_path), "MODEL_NAME": model_name,
           "MODEL_VERSION": "v1", "REGISTERED_MODEL": "drift-iris", "MODEL_REF": "1",
           "REFERENCE": "reference/data.csv", "WINDOW_SECONDS": "3600", "MIN_SAMPLES": "50",
           "PSI_THRESHOLD": "0.2", "SHARE_THRESHOLD": "0.3", "MLFLOW_TRACKING_URI": servers.mlflow_url,
           "MLFLOW_TRACKING_USERNAME": admin["username"], "MLFLOW_TRACKING_PASSWORD": admin["password"]}
    result = subprocess.run([sys.executable, str(SCRIPTS_DIR / drift.DRIFT_SCRIPT), "check"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_logged_requests_drift_scores_exporter_and_alert(servers, scripts, tmp_path, monkeypatch):
    import boto3
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    s3 = boto3.client("s3", endpoint_url=servers.moto_url, region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto")
    s3.create_bucket(Bucket=DATASETS)
    admin = servers.rendered.secret("mlflow-admin")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin["username"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin["password"])
    mlflow.set_tracking_uri(servers.mlflow_url)
    client = MlflowClient(servers.mlflow_url)
    rng = np.random.default_rng(7)

    # The model version, with its reference dataset logged in the run that registers it.
    reference = tmp_path / "reference" / "data.csv"
    reference.parent.mkdir()
    _frame(rng, 2000).to_csv(reference, index=False)
    experiment = client.create_experiment("drift")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifact(str(reference), artifact_path="reference")
    client.create_registered_model("drift-iris")
    client.create_model_version("drift-iris", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

    _log(servers, scripts, "iris", _frame(rng, 400), tmp_path)
    _log(servers, scripts, "shifted", _frame(rng, 400, shift=2.0), tmp_path)

    day = time.strftime("%Y-%m-%d", time.gmtime())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=DATASETS, Prefix="inference/")["Contents"]]
    assert keys and all(k.startswith(f"inference/mlplane-serving/") for k in keys), keys
    assert any(k.startswith(f"inference/mlplane-serving/iris/v1/date={day}/iris-abc-") for k in keys), keys
    logged = [json.loads(line) for k in keys if "/iris/" in k
              for line in s3.get_object(Bucket=DATASETS, Key=k)["Body"].read().decode().splitlines()]
    assert len(logged) == 400
    assert all("email" not in r["inputs"] and set(r["inputs"]) == {"x1", "x2", "colour"} for r in logged)
    assert {r["prediction"] for r in logged} == {0, 1}

    assert "share 0.00" in _check(servers, scripts, "iris", tmp_path, admin)
    shifted_out = _check(servers, scripts, "shifted", tmp_path, admin)
    shifted_share = float(shifted_out.split("share ")[1].split()[0])
    assert shifted_share == pytest.approx(2 / 3, abs=0.01), shifted_out  # x1 and colour moved, x2 did not

    # The exporter serves every model's last result of the namespace.
    port = _free_port()
    env = {**servers.base_env(), **_s3_env(servers), "EXPORTER_PORT": str(port), "HOME": str(tmp_path)}
    log = tmp_path / "exporter.log"
    exporter = subprocess.Popen([sys.executable, str(scripts / drift.DRIFT_SCRIPT), "serve"], env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
    servers.processes.append(exporter)
    _wait_http(f"http://127.0.0.1:{port}/healthz", exporter, log, timeout=20)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'mlplane_model_drift_share{model="iris",namespace="mlplane-serving",registered_version="1",version="v1"} 0' in text
    assert 'mlplane_model_feature_drift_psi{model="shifted"' in text and "mlplane_drift_exporter_store_up 1" in text
    assert text.count("# TYPE mlplane_model_drift_share gauge") == 1

    # The ModelDrift rule fires for the shifted model only (promtool, the rendered rule text).
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian package 'prometheus')")
    config = parse_platform({})
    rules = monitoring.rules([], config.monitoring.alerts, "5m", drift=True)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    series = []
    for line in text.splitlines():
        if line.startswith("mlplane_model_drift_share"):
            metric, value = line.rsplit(" ", 1)
            series.append({"series": metric, "values": f"{value}x20"})
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{
                "eval_time": "10m",
                "alertname": "ModelDrift",
                "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "namespace": "mlplane-serving", "model": "shifted", "version": "v1"},
                    "exp_annotations": {
                        "summary": "Model shifted (v1) inputs drifted: 66.67% of features",
                        "description": prometheus_config.drift_rules(config.monitoring.alerts)[0]["annotations"]["description"]
                        .replace("{{ $labels.namespace }}", "mlplane-serving").replace("{{ $labels.model }}", "shifted"),
                    },
                }],
            }],
        }],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    import numpy as np

    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 5000)
    assert drift_check.psi_numeric(reference, rng.normal(0, 1, 2000)) < 0.05
    assert drift_check.psi_numeric(reference, rng.normal(1.5, 1, 2000)) > 0.5
    assert drift_check.psi_numeric(np.zeros(10), np.ones(10)) > 1  # constant reference
    assert drift_check.psi_categorical(["a"] * 70 + ["b"] * 30, ["a"] * 69 + ["b"] * 31) < 0.01
