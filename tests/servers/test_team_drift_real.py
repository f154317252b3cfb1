"""A team's inference logging, drift job and model exporter, run as the team stack renders them
against a real MLflow (workspaces on, basic auth) and moto's S3 server.

The team's MLflow account and workspace are made by the platform's packaged grant script
(scripts/team_mlflow.py) with the admin account, as in a deployed platform. Then, with the
environment of the rendered sidecar, CronJob and exporter (Secret references resolved to the team's
credentials, in-cluster addresses swapped for the local servers):

- the sidecar logs a sample to the team's bucket under its serving namespace;
- the drift job reads the model version's reference dataset from the team's workspace with the
  team's account, scores the logged window and writes the result to the team's bucket;
- the same job with another team's account cannot read the model (workspace isolation);
- the exporter serves the team's model info series and its drift results.

Not covered here: SeaweedFS' per-bucket identities (moto does not enforce them; the grant is
tested in tests/unit/backing/test_object_storage.py) and Kubernetes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from mlplane.services import drift
from mlplane.services.tracking import auth_ini

from test_drift_real import _Model, _frame
from test_team import one, render, team_raw
from test_team_mlflow_real import _free_port

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("mlflow", "moto", "boto3", "pandas")),
        reason="mlflow, moto, boto3 and pandas are needed (the servers extra)",
    ),
]

ADMIN = "admin-password-for-tests"
NS = "mlplane-team-fraud-serving"
LOGGING = {"sample_rate": 1, "exclude_fields": ["email"], "flush_seconds": 5}
DRIFT = {"min_samples": 50, "thresholds": {"psi": 0.2, "share": 0.3}}


def _wait(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} not up: {log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Iterator[dict[str, str]]:
    """MLflow with workspaces and basic auth (SQLite, local artifacts) and moto's S3 server."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if mlflow is None:
        pytest.skip("the mlflow command is not next to this Python")
    base = tmp_path_factory.mktemp("team-drift")
    (base / "auth.ini").write_text(auth_ini(f"sqlite:///{base}/auth.db", ADMIN, workspaces=True))
    mlflow_port, moto_port = _free_port(), _free_port()
    processes = []
    try:
        log = base / "mlflow.log"
        processes.append(subprocess.Popen(
            [mlflow, "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts"),
             "--app-name", "basic-auth", "--enable-workspaces"],
            env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(base / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"},
            stdout=log.open("w"), stderr=subprocess.STDOUT))
        _wait(f"http://127.0.0.1:{mlflow_port}/health", processes[-1], log)
        log = base / "moto.log"
        processes.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                          stdout=log.open("w"), stderr=subprocess.STDOUT))
        _wait(f"http://127.0.0.1:{moto_port}/moto-api/", processes[-1], log, timeout=30)
        yield {"mlflow": f"http://127.0.0.1:{mlflow_port}", "s3": f"http://127.0.0.1:{moto_port}", "base": str(base)}
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _grant(local: dict[str, str], team: str, password: str) -> None:
    """The platform's grant script: the team's workspace, account and MANAGE role."""
    from mlplane import scripts

    env = {"PATH": os.environ["PATH"], "HOME": local["base"], "MLFLOW_TRACKING_URI": local["mlflow"],
           "MLFLOW_ADMIN_USERNAME": "admin", "MLFLOW_ADMIN_PASSWORD": ADMIN, "TEAM_ACTION": "grant",
           "TEAM_WORKSPACE": f"team-{team}", "TEAM_USERNAME": f"team-{team}", "TEAM_ROLE": "team",
           "TEAM_DESCRIPTION": f"Team {team}", "TEAM_DELETE_DATA": "false", "TEAM_PASSWORD": password}
    done = subprocess.run([sys.executable, "-c", scripts.text("team_mlflow.py")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _env(container: dict[str, Any], secrets: dict[str, dict[str, str]], swap: dict[str, str]) -> dict[str, str]:
    """A rendered container's environment, Secret references resolved, addresses swapped."""
    values = {"PATH": os.environ["PATH"]}
    for item in container["env"]:
        if "value" in item:
            value = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        else:
            continue
        for old, new in swap.items():
            value = value.replace(old, new)
        values[item["name"]] = value
    return values


@pytest.fixture(scope="module")
def rendered():
    model = {"name": "scorer", "registered_model": "fraud-scorer", "version": 1, "logging": LOGGING, "drift": DRIFT}
    result = render(team_raw("fraud", serving={"models": [model]}))
    return result


def test_the_teams_drift_job_runs_with_its_own_identities(local, rendered, tmp_path):
    import boto3
    import numpy as np
    from mlflow import MlflowClient

    password, other = "fraud-password-1", "risk-password-1"
    _grant(local, "fraud", password)
    _grant(local, "risk", other)
    s3 = boto3.client("s3", endpoint_url=local["s3"], region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto")
    s3.create_bucket(Bucket="team-fraud")

    # As the team, in its workspace: the model version and its reference dataset.
    rng = np.random.default_rng(11)
    reference = tmp_path / "reference" / "data.csv"
    reference.parent.mkdir()
    _frame(rng, 2000).to_csv(reference, index=False)
    team_env = {"MLFLOW_TRACKING_USERNAME": "team-fraud", "MLFLOW_TRACKING_PASSWORD": password,
                "MLFLOW_WORKSPACE": "team-fraud", "MLFLOW_TRACKING_URI": local["mlflow"]}
    script = (
        "import mlflow, sys\n"
        "from mlflow import MlflowClient\n"
        "client = MlflowClient()\n"
        "experiment = client.create_experiment('fraud-drift')\n"
        "with mlflow.start_run(experiment_id=experiment) as run:\n"
        f"    mlflow.log_artifact({str(reference)!r}, artifact_path='reference')\n"
        "client.create_registered_model('fraud-scorer')\n"
        "client.create_model_version('fraud-scorer', f'runs:/{run.info.run_id}/model', run_id=run.info.run_id)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, **team_env, "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr

    store = one(rendered, "Secret", NS, drift.STORE_SECRET)["stringData"]
    secrets = {
        drift.STORE_SECRET: {"access-key-id": "moto", "secret-access-key": "moto"},
        "mlflow-credentials": {"username": "team-fraud", "password": password},
    }
    assert store["access-key-id"] == one(rendered, "Secret", "mlplane-team-fraud", "s3-credentials")["stringData"]["AWS_ACCESS_KEY_ID"]
    s3_endpoint = next(e["value"] for e in one(rendered, "Deployment", NS, "scorer")["spec"]["template"]["spec"]["containers"][1]["env"]
                       if e["name"] == "AWS_ENDPOINT_URL_S3")
    tracking = next(e["value"] for e in one(rendered, "CronJob", NS, "scorer-drift")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
                    if e["name"] == "MLFLOW_TRACKING_URI")
    swap = {s3_endpoint: local["s3"], tracking: local["mlflow"]}
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in (drift.LOGGER_SCRIPT, drift.DRIFT_SCRIPT):
        (scripts / name).write_text(drift.script(name))

    # The sidecar, as rendered, in front of a stand-in model server.
    sidecar = one(rendered, "Deployment", NS, "scorer")["spec"]["template"]["spec"]["containers"][1]
    assert sidecar["name"] == "inference-logger"
    model_port, port = _free_port(), _free_port()
    import http.server

    model = http.server.ThreadingHTTPServer(("127.0.0.1", model_port), _Model)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    env = {**_env(sidecar, secrets, swap), "LISTEN_PORT": str(port), "UPSTREAM_PORT": str(model_port),
           "POD_NAME": "scorer-abc", "HOME": str(tmp_path)}
    log = tmp_path / "logger.log"
    logger = subprocess.Popen([sys.executable, str(scripts / drift.LOGGER_SCRIPT)], env=env, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{port}/-/logger/healthz", logger, log, timeout=20)
        data = _frame(rng, 300, shift=2.0).assign(email="someone@example.com")
        for start in range(0, len(data), 50):
            chunk = data.iloc[start:start + 50]
            body = json.dumps({"dataframe_split": {"columns": list(chunk.columns), "data": chunk.values.tolist()}})
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
    finally:
        logger.send_signal(signal.SIGTERM)
        logger.wait(timeout=30)
        model.shutdown()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-fraud", Prefix="inference/")["Contents"]]
    assert keys and all(k.startswith(f"inference/{NS}/scorer/v1/date=") for k in keys), keys

    # The drift job, as rendered: the team's account in its workspace, the team's bucket.
    job = one(rendered, "CronJob", NS, "scorer-drift")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {**_env(job, secrets, swap), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    assert env["MLFLOW_WORKSPACE"] == "team-fraud" and env["BUCKET"] == "team-fraud"
    done = subprocess.run([sys.executable, str(scripts / drift.DRIFT_SCRIPT), "check"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "300 samples" in done.stdout and "share 0.67" in done.stdout, done.stdout
    result = s3.get_object(Bucket="team-fraud", Key=f"drift-metrics/{NS}/scorer.prom")["Body"].read().decode()
    assert f'mlplane_model_drift_share{{model="scorer",namespace="{NS}",registered_version="1",version="v1"}}' in result

    # Another team's account cannot read the model from the team's workspace.
    intruder = {**env, "MLFLOW_TRACKING_USERNAME": "team-risk", "MLFLOW_TRACKING_PASSWORD": other}
    denied = subprocess.run([sys.executable, str(scripts / drift.DRIFT_SCRIPT), "check"], env=intruder,
                            capture_output=True, text=True, timeout=180)
    assert denied.returncode != 0
    assert "PERMISSION_DENIED" in denied.stderr or "403" in denied.stderr or "RESOURCE_DOES_NOT_EXIST" in denied.stderr, denied.stderr[-2000:]

    # The exporter, as rendered: the info series and the drift results of the namespace.
    exporter = one(rendered, "Deployment", NS, drift.TEAM_EXPORTER)["spec"]["template"]["spec"]["containers"][0]
    info = tmp_path / "models.prom"
    info.write_text(one(rendered, "ConfigMap", NS, "model-info")["data"][drift.INFO_FILE])
    metrics_port = _free_port()
    env = {**_env(exporter, secrets, swap), "HOME": str(tmp_path), "INFO_FILE": str(info), "EXPORTER_PORT": str(metrics_port)}
    log = tmp_path / "exporter.log"
    process = subprocess.Popen([sys.executable, str(scripts / drift.DRIFT_SCRIPT), "serve"], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait(f"http://127.0.0.1:{metrics_port}/healthz", process, log, timeout=20)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert 'mlplane_team_model_info{model="scorer",registered_model="fraud-scorer",route="scorer",version="v1"} 1' in text
    assert f'mlplane_model_drift_share{{model="scorer",namespace="{NS}"' in text
    assert "mlplane_drift_exporter_store_up 1" in text
