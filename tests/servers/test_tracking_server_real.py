"""MLflow started exactly as the rendered TrackingServer Deployment runs it, on real servers.

Everything on 127.0.0.1 with free ports, started and removed by this module: a PostgreSQL
cluster (Debian's `postgresql` package), moto's S3 server, then `mlflow server` with the
Deployment's command, arguments and environment taken from the offline render. Secret
references are resolved from the rendered Secrets, mounted files are written from them, and the
in-cluster host names are swapped for the local servers; nothing else is changed. The Job that
creates the read-only account runs its rendered script too, and so does the metrics sidecar.

What it cannot cover here: SeaweedFS itself (no binary; moto stands in for S3) and Kubernetes
(probes, Secrets and volumes are emulated, not run by a kubelet).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from mlplane.core import kube
from mlplane.config import parse_platform
from mlplane.backing.database import Database, DatabaseArgs
from mlplane.backing.object_storage import ObjectStorage, ObjectStorageArgs
from mlplane.tooling.render import Capture, capture
from mlplane.services.tracking import AUTH_CONFIG_DIR, METRICS_DIR, TrackingArgs, TrackingServer

from conftest import Root, fake_secret

pytestmark = pytest.mark.servers

#: The artifacts bucket MLflow must write to: a non-default name, so the test proves the wiring.
BUCKET = "e2e-artifacts"
PYTHON_MODULES = ("mlflow", "flask_wtf", "prometheus_flask_exporter", "psycopg2", "boto3", "moto.server")


def _missing_modules() -> list[str]:
    missing = []
    for module in PYTHON_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    return missing


def _postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not up after {timeout}s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------
# The render
# --------------------------------------------------------------------------------------------


@dataclass
class Rendered:
    manifests: list[dict[str, Any]]
    outputs: dict[str, Any] = field(default_factory=dict)

    def one(self, kind: str, name_prefix: str) -> dict[str, Any]:
        found = [m for m in self.manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)]
        assert len(found) == 1, (kind, name_prefix, [m["metadata"]["name"] for m in found])
        return found[0]

    def secret(self, name: str) -> dict[str, str]:
        return self.one("Secret", name)["stringData"]

    def container(self, kind: str, name_prefix: str, container: str) -> dict[str, Any]:
        pod = self.one(kind, name_prefix)["spec"]["template"]["spec"]
        return next(c for c in pod["containers"] if c["name"] == container)

    def volumes(self, kind: str, name_prefix: str) -> dict[str, dict[str, Any]]:
        pod = self.one(kind, name_prefix)["spec"]["template"]["spec"]
        return {v["name"]: v for v in pod["volumes"]}


def render() -> Rendered:
    config = parse_platform({"object_storage": {"buckets": {"artifacts": BUCKET}}, "tracking": {"auth": True}})

    def program() -> None:
        provider = k8s.Provider("k8s", render_yaml_to_directory="/nonexistent")
        platform = kube.Platform(name=config.name, provider=provider, protect_stateful=False, secret=fake_secret)
        root = Root(provider)
        gateway = kube.GatewayRef("mlplane", "mlplane-gateway", config.routing.domain, 80)
        parent = pulumi.ResourceOptions(parent=root)
        database = Database("mlplane-database", DatabaseArgs(config.database, platform), parent)
        storage = ObjectStorage("mlplane-storage", ObjectStorageArgs(config.object_storage, platform, gateway), parent)
        tracking = TrackingServer(
            "mlplane-tracking", TrackingArgs(config.tracking, platform, database, storage, gateway), parent
        )
        pulumi.export("database_host", pulumi.Output.concat(database.host, ":", database.port.apply(str)))
        pulumi.export("s3_endpoint", storage.endpoint)
        pulumi.export("internal_url", tracking.internal_url)

    result: Capture = capture(program)
    return Rendered(manifests=result.manifests(), outputs=result.outputs)


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@dataclass
class Servers:
    rendered: Rendered
    work: Path
    substitutions: dict[str, str]
    mlflow_url: str
    moto_url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        for old, new in self.substitutions.items():
            text = text.replace(old, new)
        return text

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's env: literals and secretKeyRefs resolved, in-cluster names swapped."""
        env = {}
        for item in container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                value = self.rendered.secret(ref["name"])[ref["key"]]
            else:
                value = str(item["value"])
            env[item["name"]] = self.substitute(value)
        return env

    def base_env(self) -> dict[str, str]:
        """What a container starts with besides its own env: no AWS or MLflow settings."""
        return {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    missing = _missing_modules()
    if missing:
        pytest.skip(f"Python modules missing: {', '.join(missing)} (pip install -e '.[test,servers]')")
    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")

    rendered = render()
    work = Path(tempfile.mkdtemp(prefix="mlplane-real-"))
    work.chmod(0o755)
    mlflow_port = _free_port()
    moto_port = _free_port()
    pg_port = _free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    substitutions = {
        rendered.outputs["database_host"]: f"127.0.0.1:{pg_port}",
        rendered.outputs["s3_endpoint"]: moto_url,
        rendered.outputs["internal_url"].removeprefix("http://"): f"127.0.0.1:{mlflow_port}",
        METRICS_DIR: str(work / "metrics"),
        AUTH_CONFIG_DIR: str(work / "auth"),
    }
    state = Servers(rendered, work, substitutions, f"http://127.0.0.1:{mlflow_port}", moto_url)
    postgres = _Postgres(pg_bin, work / "pg", pg_port)
    try:
        postgres.start(rendered.secret("postgres-credentials"))
        state.processes.append(_start_moto(work, moto_port))
        state.processes.append(_start_mlflow(state, mlflow_port))
        yield state
    finally:
        for process in reversed(state.processes):
            _stop(process)
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


class _Postgres:
    """A throwaway cluster run as a non-root user (PostgreSQL refuses root)."""

    def __init__(self, bin_dir: Path, directory: Path, port: int):
        self.bin, self.dir, self.port = bin_dir, directory, port
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")

    def _run(self, *args: str) -> None:
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid}
        result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, **kwargs)
        assert result.returncode == 0, f"{args[0]} failed: {result.stdout}\n{result.stderr}"

    def start(self, credentials: dict[str, str]) -> None:
        self.dir.mkdir()
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        user, password, database = credentials["username"], credentials["password"], credentials["database"]
        sql = f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'; CREATE DATABASE \"{database}\" OWNER \"{user}\";"
        for statement in sql.split("; "):
            self._run(str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                      "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement)

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _start_moto(work: Path, port: int) -> subprocess.Popen:
    log = work / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    _wait_http(f"http://127.0.0.1:{port}/moto-api/", process, log, timeout=30)
    import boto3

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto")
    s3.create_bucket(Bucket=BUCKET)
    return process


def _start_mlflow(state: Servers, port: int) -> subprocess.Popen:
    rendered = state.rendered
    container = rendered.container("Deployment", "mlflow", "mlflow")
    volume = rendered.volumes("Deployment", "mlflow")["auth-config"]["secret"]
    auth_dir = Path(state.substitute(AUTH_CONFIG_DIR))
    auth_dir.mkdir()
    for item in volume["items"]:
        text = rendered.secret(volume["secretName"])[item["key"]]
        auth_dir.joinpath(item["path"]).write_text(state.substitute(text))
    args = [state.substitute(str(a)) for a in container["args"]]
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:], *args]
    home = state.work / "home"
    home.mkdir()
    env = {**state.base_env(), **state.env(container)}
    env["HOME"] = str(home)
    log = state.work / "mlflow.log"
    process = subprocess.Popen(command, env=env, cwd=home, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{port}/health", process, log)
    return process


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _run_job_script(state: Servers, kind: str, prefix: str, container_name: str) -> subprocess.CompletedProcess:
    container = state.rendered.container(kind, prefix, container_name)
    home = state.work / f"home-{container_name}"
    home.mkdir(exist_ok=True)
    env = {**state.base_env(), **state.env(container), "HOME": str(home)}
    assert container["command"][0] == "python"
    return subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_mlflow_runs_as_rendered_with_proxied_artifacts_auth_and_a_read_only_account(servers, monkeypatch, tmp_path):
    import boto3
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # Probes and scraping: /health needs no credentials, MLflow's own /metrics does.
    assert _status(f"{servers.mlflow_url}/health") == 200
    assert _status(f"{servers.mlflow_url}/metrics") == 401
    assert _status(f"{servers.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1") == 401

    # The client holds no storage credentials and no S3 endpoint: artifacts go through MLflow.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    admin = servers.rendered.secret("mlflow-admin")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", admin["username"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin["password"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", servers.mlflow_url)
    mlflow.set_tracking_uri(servers.mlflow_url)
    client = MlflowClient(servers.mlflow_url)

    weights = tmp_path / "model" / "weights.txt"
    weights.parent.mkdir()
    weights.write_text("w=42\n")
    experiment = client.create_experiment("e2e")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_artifacts(str(weights.parent), artifact_path="model")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    client.create_registered_model("e2e-model")
    version = client.create_model_version("e2e-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("e2e-model", "champion", version.version)

    downloaded = Path(mlflow.artifacts.download_artifacts("models:/e2e-model@champion", dst_path=str(tmp_path / "dl")))
    assert downloaded.joinpath("weights.txt").read_text() == "w=42\n"

    s3 = boto3.client("s3", endpoint_url=servers.moto_url, region_name="us-east-1",
                      aws_access_key_id="moto", aws_secret_access_key="moto")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/model/weights.txt") for k in keys), keys

    # The rendered Job creates the read-only account; running it again only resets its password.
    for _ in range(2):
        job = _run_job_script(servers, "Job", "mlflow-reader-", "create-reader")
        assert job.returncode == 0, job.stdout + job.stderr
    reader = servers.rendered.secret("mlflow-reader")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", reader["username"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", reader["password"])
    assert client.get_model_version_by_alias("e2e-model", "champion").version == version.version
    again = Path(mlflow.artifacts.download_artifacts("models:/e2e-model@champion", dst_path=str(tmp_path / "dl2")))
    assert again.joinpath("weights.txt").read_text() == "w=42\n"
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.set_registered_model_alias("e2e-model", "reader-was-here", version.version)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.delete_experiment(experiment)
    from mlflow.server import get_app_client

    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        get_app_client("basic-auth", tracking_uri=servers.mlflow_url).create_user("intruder", "password-1234")


def test_metrics_sidecar_serves_mlflow_metrics_without_credentials(servers):
    container = servers.rendered.container("Deployment", "mlflow", "metrics")
    port = _free_port()
    env = {**servers.base_env(), **servers.env(container), "EXPORTER_PORT": str(port)}
    log = servers.work / "exporter.log"
    process = subprocess.Popen([sys.executable, *container["command"][1:]], env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    servers.processes.append(process)
    _wait_http(f"http://127.0.0.1:{port}/metrics", process, log, timeout=20)
    _status(f"{servers.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "mlflow_http_request_total" in text, text[:2000]
