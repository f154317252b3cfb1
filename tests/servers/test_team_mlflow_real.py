"""The team MLflow Jobs, run as rendered against a real MLflow server with workspaces on.

MLflow is started on 127.0.0.1 (free port, SQLite stores, the platform's rendered basic-auth file
with workspaces on, ``--enable-workspaces``); each team's rendered Job script runs with the Job's
environment, its Secret references resolved from the rendered Secrets and the in-cluster tracking
URI swapped for the local server. Proven: each team account manages its own workspace and cannot
read, list or write the other's; re-running a grant is harmless; revoking removes the account (and
the workspace with its content unless data is kept). Not covered here: PostgreSQL (the platform's
store; SQLite stands in) and Kubernetes itself.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from mlplane.services.tracking import ADMIN_SECRET, auth_ini

from test_team import one, team_raw
from test_team_grants import platform_with, team_jobs

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed in this environment"),
]

ADMIN_PASSWORD = "admin-password-for-tests"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if mlflow is None:
        pytest.skip("the mlflow command is not next to this Python")
    base = tmp_path_factory.mktemp("mlflow")
    (base / "auth.ini").write_text(auth_ini(f"sqlite:///{base}/auth.db", ADMIN_PASSWORD, workspaces=True))
    port = _free_port()
    log = (base / "server.log").open("w")
    process = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--artifacts-destination", str(base / "artifacts"),
         "--app-name", "basic-auth", "--enable-workspaces"],
        env={**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(base / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited {process.returncode}: {(base / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server not up: {(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def run_job(url: str, name: str, offboarding: str | None = None) -> tuple[str, str]:
    """Run the team's rendered MLflow Job; returns (its output, the team account's password)."""
    # The platform stack makes a team's grants (mlplane.services.team_grants).
    result = platform_with(name, offboarding={name: offboarding} if offboarding else None)
    job = team_jobs(result, name)["mlplane-tracking"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp"}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["name"] == ADMIN_SECRET:
                # The platform's own admin Secret: the Job reads it and no copy of it is made.
                env[item["name"]] = {"password": ADMIN_PASSWORD, "username": "admin"}[ref["key"]]
                continue
            env[item["name"]] = one(result, "Secret", "mlplane-tracking", ref["name"])["stringData"][ref["key"]]
    env["MLFLOW_ADMIN_PASSWORD"] = ADMIN_PASSWORD  # the platform's admin, created by the server above
    env["MLFLOW_TRACKING_URI"] = url
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    done = subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert env["TEAM_PASSWORD"] not in done.stdout + done.stderr
    return done.stdout, env["TEAM_PASSWORD"]


def call(url: str, user: str, password: str, method: str, path: str, body: Any = None, workspace: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
               "Content-Type": "application/json"}
    if workspace:
        headers["X-MLFLOW-WORKSPACE"] = workspace
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def teams(server) -> dict[str, str]:
    return {name: run_job(server, name)[1] for name in ("fraud", "risk")}


def test_each_team_account_manages_its_own_workspace_only(server, teams):
    fraud, risk = ("team-fraud", teams["fraud"]), ("team-risk", teams["risk"])
    status, created = call(server, *fraud, "POST", "/api/2.0/mlflow/experiments/create", {"name": "churn"}, "team-fraud")
    assert status == 200, created
    experiment = created["experiment_id"]
    status, found = call(server, *fraud, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 10}, "team-fraud")
    assert [e["name"] for e in found["experiments"]] == ["churn"]
    # The other team sees nothing there, cannot read the experiment, cannot write into the workspace.
    status, seen = call(server, *risk, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 10}, "team-fraud")
    assert status != 200 or not seen.get("experiments")
    status, _ = call(server, *risk, "GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}", None, "team-risk")
    assert status == 403
    status, _ = call(server, *risk, "POST", "/api/2.0/mlflow/experiments/create", {"name": "intruder"}, "team-fraud")
    assert status == 403
    # Neither account is an admin.
    status, _ = call(server, *fraud, "GET", "/api/2.0/mlflow/users/get?username=team-risk")
    assert status == 403


def test_regranting_is_harmless_and_rotates_the_password(server, teams):
    output, password = run_job(server, "fraud")
    assert "reset the password of user team-fraud" in output
    assert password == teams["fraud"]  # stand-in secrets are stable; the Job reapplies them
    status, _ = call(server, "team-fraud", password, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1}, "team-fraud")
    assert status == 200


def test_revoking_with_keep_data_removes_the_account_but_keeps_the_workspace(server, teams):
    output, _ = run_job(server, "risk", offboarding="keep-data")
    assert "deleted user team-risk" in output
    status, _ = call(server, "team-risk", teams["risk"], "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1}, "team-risk")
    assert status == 401
    status, _ = call(server, "admin", ADMIN_PASSWORD, "GET", "/api/3.0/mlflow/workspaces/team-risk")
    assert status == 200


def test_revoking_with_delete_data_removes_the_account_and_the_workspace(server, teams):
    output, _ = run_job(server, "fraud", offboarding="delete-data")
    assert "deleted user team-fraud" in output and "deleted workspace team-fraud" in output
    status, _ = call(server, "admin", ADMIN_PASSWORD, "GET", "/api/3.0/mlflow/workspaces/team-fraud")
    assert status == 404
    again, _ = run_job(server, "fraud", offboarding="delete-data")
    assert "deleted" not in again
