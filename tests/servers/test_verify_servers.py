"""`mlplane verify` against real services started on loopback with the settings mlplane renders.

One offline render of a platform with one served model; from it, on 127.0.0.1 with free ports:
- SeaweedFS: `weed` (scripts/bootstrap-servers.sh) with the StatefulSet's exact command line (data
  dir, ports and bind address swapped for local ones), then the grant Job's script run as rendered;
- PostgreSQL and `mlflow server` with the tracking Deployment's command, arguments and environment
  (tests/servers/test_tracking_server_real.py), its artifacts in SeaweedFS through the scoped identity,
  and its metrics sidecar; the read-only account's Job;
- the registry: Debian's `docker-registry` with the rendered container's environment;
- the model: an sklearn model logged and registered as the config names it, served by `mlflow
  models serve` with the serving Deployment's arguments and environment;
- Prometheus 3 (scripts/bootstrap-servers.sh) with the rendered prometheus.yml and rules, its
  Kubernetes discovery replaced by static targets (no cluster here);
- a team stack (start_team): team `fraud` rendered offline against the same config (MLflow runs
  with workspaces), its MLflow and S3 grant Jobs run as rendered, then verified with its outputs
  and the platform's (no team model server: see docs/verify.md);
- stand-ins, said plainly: a small Python proxy in front of the model plays Envoy's part (counts
  requests per route cluster and serves them as `envoy_cluster_upstream_rq_total` on
  /stats/prometheus; Envoy cannot be built here), and a fake Grafana answering Grafana's documented
  `/api/health` and `/api/datasources/uid/<uid>/health` (Grafana cannot be built here) by asking the
  real Prometheus.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from mlplane import program
from mlplane.backing import registry_auth
from mlplane.services.monitoring import CONFIG_FILE, RULES_FILE
from mlplane.tooling.render import capture
from mlplane.services.tracking import AUTH_CONFIG_DIR, METRICS_DIR

from test_team import render as render_team, team_raw
from test_team_grants import platform_with
from test_tracking_server_real import (
    Rendered, Servers, _Postgres, _free_port, _missing_modules, _postgres_bin, _stop, _wait_http,
)

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
SERVERS_BIN = Path(subprocess.run(["bash", str(ROOT / "scripts/bootstrap-servers.sh"), "--print-bin-dir"],
                                  capture_output=True, text=True, check=True).stdout.strip())
WEED = SERVERS_BIN / "weed"
PROMETHEUS = SERVERS_BIN / "prometheus"
REGISTRY = Path(shutil.which("docker-registry") or "/usr/bin/docker-registry")
MODEL = "iris"
#: The database Service as the rendered connection strings name it.
DATABASE_HOST = "postgres.mlplane-database.svc.cluster.local:5432"
CONFIG = {
    "serving": {"models": [{"name": MODEL, "registered_model": "iris-classifier", "alias": "champion"}]},
    "monitoring": {"prometheus": {"scrape_interval": "2s"}},
    # A team stack is verified too (its own MLflow workspace): the server runs --enable-workspaces.
    "tracking": {"workspaces": True},
}
#: The team stack verified against the same services (tests/unit/team/test_team.py's minimal team).
TEAM = "fraud"


def _pair_port() -> int:
    """A free port p with p + 10000 free too (SeaweedFS serves gRPC there)."""
    for _ in range(200):
        port = _free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def render() -> tuple[Rendered, Any]:
    result = capture(program.main, config={"mlplane:platform": json.dumps(CONFIG)})
    return Rendered(manifests=result.manifests(), outputs=result.outputs), result


@dataclass
class Stack:
    """The running services and the outputs `mlplane verify` reads."""

    servers: Servers
    ports: dict[str, int]
    outputs: dict[str, Any]
    #: The team stack's outputs with its real credentials (start_team).
    team_outputs: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    threads: list[http.server.ThreadingHTTPServer] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def _env_of(state: Servers, container: dict[str, Any]) -> dict[str, str]:
    return {**state.base_env(), **state.env(container)}


# --------------------------------------------------------------------------------------------
# Starting each service
# --------------------------------------------------------------------------------------------


def start_weed(state: Servers, ports: dict[str, int]) -> subprocess.Popen:
    container = state.rendered.container("StatefulSet", "seaweedfs", "seaweedfs")
    data = state.work / "weed"
    data.mkdir()
    local = {"-dir": str(data), "-ip.bind": "127.0.0.1", "-master.port": ports["master"], "-volume.port": ports["volume"],
             "-filer.port": ports["filer"], "-s3.port": ports["s3"], "-metricsPort": ports["weed-metrics"]}
    args = []
    for arg in container["args"]:
        flag, sep, _ = arg.partition("=")
        args.append(f"{flag}={local[flag]}" if sep and flag in local else arg)
    assert all(any(a.startswith(f"{f}=") for a in args) for f in local), args  # every swapped flag is rendered
    env = {**_env_of(state, container), "HOME": str(state.work / "home-weed")}
    log = state.work / "weed.log"
    process = subprocess.Popen([str(WEED), *args, "-ip=127.0.0.1"], env=env, cwd=data,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{ports['s3']}/", process, log, timeout=120)
    return process


def run_grant(state: Servers, job_prefix: str) -> subprocess.CompletedProcess:
    container = state.rendered.container("Job", job_prefix, "grant")
    env = _env_of(state, container)
    env["PATH"] = f"{SERVERS_BIN}:{env['PATH']}"
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=300, check=False)


def start_mlflow(state: Servers, port: int) -> subprocess.Popen:
    from test_tracking_server_real import _start_mlflow

    return _start_mlflow(state, port)


def run_job(state: Servers, prefix: str, name: str) -> None:
    container = state.rendered.container("Job", prefix, name)
    home = state.work / f"home-{name}"
    home.mkdir(exist_ok=True)
    env = {**_env_of(state, container), "HOME": str(home)}
    done = subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def start_sidecar(state: Servers, port: int) -> subprocess.Popen:
    container = state.rendered.container("Deployment", "mlflow", "metrics")
    env = {**_env_of(state, container), "EXPORTER_PORT": str(port)}
    log = state.work / "exporter.log"
    process = subprocess.Popen([sys.executable, *container["command"][1:]], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{port}/metrics", process, log, timeout=30)
    return process


def start_registry(state: Servers, capture_result: Any, port: int, name: str = "registry", readonly: bool = False) -> subprocess.Popen:
    """The registry container's rendered config (REGISTRY_CONFIG_YAML, token CA) on Debian's
    docker-registry; its token realm is the rendered token server (start_token_server)."""
    envs = dict(e.split("=", 1) for e in capture_result.named("mlplane-registry-container").inputs["envs"])
    config = yaml.safe_load(envs["REGISTRY_CONFIG_YAML"])
    ca = state.work / f"{name}-token-ca.pem"
    ca.write_text(envs["REGISTRY_TOKEN_CA"])
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["storage"]["filesystem"]["rootdirectory"] = str(state.work / f"{name}-data")
    config["auth"]["token"]["realm"] = f"http://127.0.0.1:{state.token_port}/token"  # type: ignore[attr-defined]
    config["auth"]["token"]["rootcertbundle"] = str(ca)
    if readonly:
        config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    path = state.work / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    log = state.work / f"{name}.log"
    process = subprocess.Popen([str(REGISTRY), "serve", str(path)], env=state.base_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{port}/v2/", process, log, timeout=30)
    return process


def start_token_server(state: Servers, capture_result: Any, port: int) -> tuple[subprocess.Popen, str]:
    """The rendered token server container (command and env; port and bind address local)."""
    inputs = capture_result.named("mlplane-registry-auth-container").inputs
    env = {**state.base_env(), **dict(e.split("=", 1) for e in inputs["envs"]), "TOKEN_PORT": str(port), "TOKEN_ADDR": "127.0.0.1"}
    assert inputs["command"][:2] == ["python", "-c"]
    log = state.work / "token.log"
    process = subprocess.Popen([sys.executable, *inputs["command"][1:]], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{port}/healthz", process, log, timeout=30)
    state.token_port = port  # type: ignore[attr-defined]
    return process, env["TOKEN_SECRET"]


def log_model(state: Servers) -> None:
    """Train and register the configured model as the admin (what a team's pipeline would do)."""
    admin = state.rendered.secret("mlflow-admin")
    script = f"""
import mlflow, sklearn.datasets, sklearn.linear_model
from mlflow.models import infer_signature
mlflow.set_tracking_uri({state.mlflow_url!r})
X, y = sklearn.datasets.load_iris(return_X_y=True, as_frame=True)
model = sklearn.linear_model.LogisticRegression(max_iter=300).fit(X, y)
mlflow.set_experiment("iris")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(2), registered_model_name="iris-classifier")
client = mlflow.MlflowClient()
client.set_registered_model_alias("iris-classifier", "champion", info.registered_model_version)
"""
    env = {**state.base_env(), "HOME": str(state.work / "home"), "MLFLOW_TRACKING_USERNAME": admin["username"],
           "MLFLOW_TRACKING_PASSWORD": admin["password"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def start_model(state: Servers, port: int) -> subprocess.Popen:
    container = state.rendered.container("Deployment", MODEL, "model")
    args = [state.substitute(str(a)) for a in container["args"]]
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    env = {**_env_of(state, container)}
    home = state.work / "home-model"
    home.mkdir()
    env.update(HOME=str(home), TMPDIR=str(home))
    log = state.work / "model.log"
    command = [str(Path(sys.executable).parent / container["command"][0]), *args]
    process = subprocess.Popen(command, env=env, cwd=home, stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{port}/ping", process, log, timeout=240)
    return process


class _EnvoyStandIn(http.server.BaseHTTPRequestHandler):
    """Forwards to the model server and counts upstream requests like Envoy's cluster stats."""

    upstream = ""
    cluster = ""
    count = 0

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        if self.path == "/stats/prometheus":
            body = (f"# TYPE envoy_cluster_upstream_rq_total counter\n"
                    f'envoy_cluster_upstream_rq_total{{envoy_cluster_name="{self.cluster}"}} {type(self).count}\n').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.upstream + self.path, data=data, method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        type(self).count += 1
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except OSError:
            status, body = 503, b"upstream connect error or disconnect/reset before headers"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward


def serve(handler: type, port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def grafana_stand_in(prometheus: str, password: str) -> type:
    """Grafana's documented API shape: GET /api/health, GET /api/datasources/uid/<uid>/health."""

    class Grafana(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/api/health":
                return self._send(200, {"commit": "stand-in", "database": "ok", "version": "13.2.0"})
            expected = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._send(401, {"message": "Invalid username or password"})
            if self.path != "/api/datasources/uid/prometheus/health":
                return self._send(404, {"message": "Data source not found"})
            try:
                with urllib.request.urlopen(f"{prometheus}/api/v1/query?query=1%2B1", timeout=5):
                    return self._send(200, {"status": "OK", "message": "Successfully queried the Prometheus API."})
            except OSError as error:
                return self._send(400, {"status": "ERROR", "message": f"Post \"{prometheus}/api/v1/query\": {error}"})

    return Grafana


def start_prometheus(state: Servers, ports: dict[str, int], cluster: str) -> subprocess.Popen:
    container = state.rendered.container("StatefulSet", "prometheus", "prometheus")
    files = state.rendered.one("ConfigMap", "prometheus-config")["data"]
    directory = state.work / "prometheus"
    directory.mkdir()
    config = yaml.safe_load(files[CONFIG_FILE])
    static = {"prometheus": ports["prometheus"], "envoy": ports["envoy"], "seaweedfs": ports["weed-metrics"], "mlflow": ports["sidecar"]}
    for job in config["scrape_configs"]:
        # Kubernetes discovery cannot run without a cluster: static targets stand in for the pods.
        job.pop("kubernetes_sd_configs", None)
        job.pop("relabel_configs", None)
        job["static_configs"] = [{"targets": [f"127.0.0.1:{static[job['job_name']]}"]}]
    (directory / CONFIG_FILE).write_text(yaml.safe_dump(config))
    (directory / RULES_FILE).write_text(files[RULES_FILE])
    args = []
    for arg in container["args"]:
        flag = arg.split("=", 1)[0]
        value = {"--config.file": directory / CONFIG_FILE, "--storage.tsdb.path": directory / "data",
                 "--web.listen-address": f"127.0.0.1:{ports['prometheus']}"}.get(flag)
        args.append(f"{flag}={value}" if value is not None else arg)
    log = state.work / "prometheus.log"
    process = subprocess.Popen([str(PROMETHEUS), *args], stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_http(f"http://127.0.0.1:{ports['prometheus']}/-/ready", process, log, timeout=60)
    return process


def start_team(state: Servers, token_secret: str) -> dict[str, Any]:
    """Render team TEAM offline against this platform's config and run its two setup Jobs as
    rendered: the MLflow grant (workspace, account, role) and the S3 grant (bucket, scoped
    identity). Secret references resolve to the team's rendered Secrets, or the platform's for the
    platform's own (mlflow-admin). Returns the team's outputs with the credentials the Jobs used."""
    result = render_team(team_raw(TEAM), CONFIG)
    # Its grants are the platform stack's (mlplane.services.team_grants): rendered admitting it.
    found = platform_with(TEAM, raw_platform=CONFIG).manifests()
    secrets = {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("stringData") or {} for m in found if m["kind"] == "Secret"}

    def job_env(job: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = state.base_env()
        for item in container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                own = secrets.get((job["metadata"]["namespace"], ref["name"]))
                value = own[ref["key"]] if own is not None else state.rendered.secret(ref["name"])[ref["key"]]
            else:
                value = str(item["value"])
            env[item["name"]] = state.substitute(value)
        return container["command"], env

    jobs = {m["metadata"]["namespace"]: m for m in found
            if m["kind"] == "Job" and m["spec"]["template"]["metadata"]["labels"].get("mlplane.dev/team") == TEAM}
    assert set(jobs) == {"mlplane-tracking", "mlplane-storage"}, sorted(jobs)
    command, mlflow_env = job_env(jobs["mlplane-tracking"])
    assert command[:2] == ["python", "-c"]
    home = state.work / "home-team"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", command[2]], env={**mlflow_env, "HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    command, s3_env = job_env(jobs["mlplane-storage"])
    s3_env["PATH"] = f"{SERVERS_BIN}:{s3_env['PATH']}"
    done = subprocess.run(command, env=s3_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = {k: v for k, v in result.outputs.items() if v != "[secret]"}
    # Its model (team.modelUrls) is not served here: no team model server is started.
    outputs["team"] = {**outputs["team"], "modelUrls": {}}
    identity = registry_auth.push_identity(TEAM)
    return {
        **outputs,
        "mlflowPassword": mlflow_env["TEAM_PASSWORD"],
        "s3AccessKeyId": s3_env["S3_ACCESS_KEY_ID"], "s3SecretAccessKey": s3_env["S3_SECRET_ACCESS_KEY"],
        # A team stack does not export its registry credentials: fed like the platform's.
        "registryUsername": identity, "registryPassword": registry_auth.password(token_secret, identity),
    }


# --------------------------------------------------------------------------------------------
# The fixture
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = _missing_modules()
    if missing:
        pytest.skip(f"Python modules missing: {', '.join(missing)} (pip install -e '.[test,servers]')")
    for tool, how in ((WEED, "scripts/bootstrap-servers.sh"), (PROMETHEUS, "scripts/bootstrap-servers.sh"),
                      (REGISTRY, "apt-get install docker-registry")):
        if not tool.exists():
            pytest.skip(f"{tool} not found: {how}")
    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
    rendered, result = render()
    work = Path(tempfile.mkdtemp(prefix="mlplane-verify-"))
    work.chmod(0o755)
    (work / "home-weed").mkdir()
    ports = {name: _pair_port() for name in ("master", "volume", "filer", "s3")}
    ports |= {name: _free_port() for name in ("weed-metrics", "postgres", "mlflow", "sidecar", "registry",
                                               "model", "envoy", "prometheus", "grafana", "token")}
    platform = result.outputs["platform"]
    s3 = f"http://127.0.0.1:{ports['s3']}"
    substitutions = {
        f"{platform['trackingUri'].removeprefix('http://')}": f"127.0.0.1:{ports['mlflow']}",
        platform["s3Endpoint"]: s3,
        DATABASE_HOST: f"127.0.0.1:{ports['postgres']}",
        "seaweedfs-admin.mlplane-storage.svc.cluster.local:9333": f"127.0.0.1:{ports['master']}",
        "seaweedfs-admin.mlplane-storage.svc.cluster.local:8888": f"127.0.0.1:{ports['filer']}",
        METRICS_DIR: str(work / "metrics"),
        AUTH_CONFIG_DIR: str(work / "auth"),
    }
    state = Servers(rendered, work, substitutions, f"http://127.0.0.1:{ports['mlflow']}", s3)
    running = Stack(state, ports, {})
    postgres = _Postgres(pg_bin, work / "pg", ports["postgres"])
    try:
        running.processes["weed"] = start_weed(state, ports)
        grant = run_grant(state, "s3-grant-mlflow-")
        assert grant.returncode == 0, grant.stdout + grant.stderr
        postgres.start(rendered.secret("postgres-credentials"))
        running.processes["mlflow"] = start_mlflow(state, ports["mlflow"])
        run_job(state, "mlflow-reader-", "create-reader")
        running.processes["sidecar"] = start_sidecar(state, ports["sidecar"])
        running.processes["token"], token_secret = start_token_server(state, result, ports["token"])
        running.processes["registry"] = start_registry(state, result, ports["registry"])
        log_model(state)
        running.processes["model"] = start_model(state, ports["model"])
        rules = yaml.safe_load(rendered.one("ConfigMap", "prometheus-config")["data"][RULES_FILE])
        info = next(r for g in rules["groups"] for r in g["rules"] if r.get("record") == "mlplane:model_info")
        _EnvoyStandIn.upstream, _EnvoyStandIn.cluster = running.url("model"), info["labels"]["envoy_cluster_name"]
        running.threads.append(serve(_EnvoyStandIn, ports["envoy"]))
        running.processes["prometheus"] = start_prometheus(state, ports, _EnvoyStandIn.cluster)
        grafana_password = rendered.secret("grafana-admin")["password"]
        running.threads.append(serve(grafana_stand_in(running.url("prometheus"), grafana_password), ports["grafana"]))
        admin = rendered.secret("mlflow-admin")
        keys = rendered.secret("seaweedfs-admin-credentials")
        running.outputs = {
            **{k: v for k, v in result.outputs.items() if v != "[secret]"},  # masked: set below
            "urls": {"mlflow": running.url("mlflow"), "s3": s3, "registry": f"{running.url('registry')}/v2/_catalog",
                     f"model-{MODEL}": running.url("envoy"), "grafana": running.url("grafana"),
                     "prometheus": running.url("prometheus")},
            "mlflowAdminUsername": admin["username"], "mlflowAdminPassword": admin["password"],
            "grafanaAdminPassword": grafana_password,
            "s3AccessKeyId": keys["access-key-id"], "s3SecretAccessKey": keys["secret-access-key"],
            "registryPushUrl": f"127.0.0.1:{ports['registry']}",
            # The platform identity of the token server (mlplane.backing.registry_auth); the stack does not
            # export registry credentials yet, so the test feeds them as verify documents.
            "registryUsername": registry_auth.PLATFORM_IDENTITY,
            "registryPassword": registry_auth.password(token_secret, registry_auth.PLATFORM_IDENTITY),
        }
        running.team_outputs = start_team(state, token_secret)
        _wait_targets_up(running.url("prometheus"))
        yield running
    finally:
        for server in running.threads:
            server.shutdown()
        for process in reversed(list(running.processes.values())):
            _stop(process)
        postgres.stop()
        if os.environ.get("MLPLANE_KEEP_WORK") != "1":
            shutil.rmtree(work, ignore_errors=True)


def _wait_targets_up(prometheus: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    targets: list = []
    while True:
        try:
            with urllib.request.urlopen(f"{prometheus}/api/v1/targets?state=active", timeout=5) as response:
                targets = json.load(response)["data"]["activeTargets"]
        except OSError:  # 503 until the TSDB is open
            pass
        if targets and all(t["health"] == "up" for t in targets):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"targets not up: {[(t['labels'], t['health'], t['lastError']) for t in targets]}")
        time.sleep(1)


def mlplane(*args: str, outputs: dict | None = None, tmp: Path, platform: dict | None = None) -> tuple[int, Any, str]:
    argv = [str(Path(sys.executable).parent / "mlplane"), "verify", "--json", "--timeout", "20", "--metric-wait", "30", *args]
    if outputs is not None:
        path = tmp / "outputs.json"
        path.write_text(json.dumps(outputs))
        argv += ["--outputs", str(path)]
    if platform is not None:  # a team's outputs with its platform's
        path = tmp / "platform-outputs.json"
        path.write_text(json.dumps(platform))
        argv += ["--platform-outputs", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else None
    return done.returncode, report, done.stderr


def rows(report: dict) -> dict[str, dict[str, str]]:
    return {r["check"]: r for r in report["checks"]}


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


def test_verify_passes_against_the_platform_as_rendered_and_cleans_up(stack, tmp_path):
    code, report, stderr = mlplane(outputs=stack.outputs, tmp=tmp_path)
    assert code == 0, json.dumps(report, indent=1) + stderr
    checks = rows(report)
    assert {"mlflow auth", "mlflow run", "artifact in bucket", "model registry", "image registry push",
            f"model {MODEL} inference", "prometheus targets", "model request metric", "grafana", "cleanup"} <= set(checks)
    assert all(r["status"] == "pass" for r in checks.values()), checks
    assert "envoy_cluster_upstream_rq_total" in checks["model request metric"]["detail"]
    # The rendered registry disables deletes: the probe image is the one thing left, and said so.
    assert checks["cleanup"]["detail"].startswith("left behind: image mlplane-verify/probe:"), checks["cleanup"]
    assert "the registry refuses deletes" in checks["cleanup"]["detail"]
    assert "mlplane-verify-" not in checks["cleanup"]["detail"]
    # Nothing else named mlplane-verify is left: no registered model, no live experiment, no image tag.
    admin = (stack.outputs["mlflowAdminUsername"], stack.outputs["mlflowAdminPassword"])
    from mlplane.tooling.verify_http import Http

    mlflow = Http(timeout=10, auth=admin)
    models = mlflow.request("GET", f"{stack.url('mlflow')}/api/2.0/mlflow/registered-models/search?max_results=100").json()
    assert not [m for m in models.get("registered_models", []) if m["name"].startswith("mlplane-verify-")]
    live = mlflow.request("POST", f"{stack.url('mlflow')}/api/2.0/mlflow/experiments/search",
                          body={"max_results": 100, "view_type": "ACTIVE_ONLY"}).json()
    assert not [e for e in live.get("experiments", []) if e["name"].startswith("mlplane-verify-")]


def _identity_keys(stack: Stack) -> tuple[str, str]:
    container = stack.servers.rendered.container("Job", "s3-grant-mlflow-", "grant")
    env = stack.servers.env(container)
    return env["S3_ACCESS_KEY_ID"], env["S3_SECRET_ACCESS_KEY"]


def test_the_grant_job_scopes_mlflow_identity_to_its_own_bucket(stack):
    import boto3
    from botocore.exceptions import ClientError

    bucket = stack.servers.env(stack.servers.rendered.container("Job", "s3-grant-mlflow-", "grant"))["S3_BUCKETS"]
    s3 = lambda key, secret: boto3.client("s3", endpoint_url=stack.url("s3"), region_name="us-east-1",  # noqa: E731
                                          aws_access_key_id=key, aws_secret_access_key=secret)
    admin = s3(stack.outputs["s3AccessKeyId"], stack.outputs["s3SecretAccessKey"])
    admin.create_bucket(Bucket="someone-else")
    scoped = s3(*_identity_keys(stack))
    scoped.put_object(Bucket=bucket, Key="grant-probe.txt", Body=b"ok")
    assert scoped.get_object(Bucket=bucket, Key="grant-probe.txt")["Body"].read() == b"ok"
    for action in (lambda: scoped.put_object(Bucket="someone-else", Key="x", Body=b"no"),
                   lambda: scoped.list_objects_v2(Bucket="someone-else"),
                   lambda: scoped.create_bucket(Bucket="scoped-may-not-create")):
        with pytest.raises(ClientError, match="AccessDenied"):
            action()
    scoped.delete_object(Bucket=bucket, Key="grant-probe.txt")
    # Re-running the rendered Job is harmless: the identity keeps working.
    again = run_grant(stack.servers, "s3-grant-mlflow-")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "exists" in again.stdout
    scoped.list_objects_v2(Bucket=bucket)


def test_wrong_credentials_are_named_per_service(stack, tmp_path):
    outputs = {**stack.outputs, "mlflowAdminPassword": "not-the-password", "grafanaAdminPassword": "wrong"}
    code, report, _ = mlplane(outputs=outputs, tmp=tmp_path)
    assert code == 1
    checks = rows(report)
    assert checks["mlflow auth"]["status"] == "fail"
    assert "wrong credentials" in checks["mlflow auth"]["cause"] and "401" in checks["mlflow auth"]["cause"]
    assert checks["grafana"]["status"] == "fail" and "401" in checks["grafana"]["cause"]
    assert checks["image registry push"]["status"] == "pass"  # the other services still answer

    outputs = {**stack.outputs, "s3SecretAccessKey": "wrong-secret-key-0000000000000"}
    code, report, _ = mlplane(outputs=outputs, tmp=tmp_path)
    checks = rows(report)
    assert code == 1 and checks["mlflow run"]["status"] == "pass"
    assert checks["artifact in bucket"]["status"] == "fail"
    assert "wrong storage credentials" in checks["artifact in bucket"]["cause"], checks["artifact in bucket"]
    assert "registered model" not in checks["cleanup"]["detail"]


def test_a_missing_bucket_is_named(stack, tmp_path):
    outputs = {**stack.outputs, "platform": {**stack.outputs["platform"], "artifactsBucket": "no-such-bucket"}}
    code, report, _ = mlplane(outputs=outputs, tmp=tmp_path)
    checks = rows(report)
    assert code == 1
    assert checks["artifact in bucket"]["status"] == "fail"
    assert "missing bucket: no-such-bucket" in checks["artifact in bucket"]["cause"]


def test_a_registry_refusing_the_push_and_a_stopped_registry_are_named(stack, tmp_path):
    _, result = render()
    port = _free_port()
    readonly = start_registry(stack.servers, result, port, name="registry-readonly", readonly=True)
    try:
        outputs = {**stack.outputs, "urls": {**stack.outputs["urls"], "registry": f"http://127.0.0.1:{port}/v2/_catalog"}}
        code, report, _ = mlplane(outputs=outputs, tmp=tmp_path)
        checks = rows(report)
        assert code == 1
        push = checks["image registry push"]
        assert push["status"] == "fail" and "refuses" in push["cause"], push
    finally:
        _stop(readonly)
    # The same registry stopped: connection refused, the service is down.
    code, report, _ = mlplane(outputs=outputs, tmp=tmp_path)
    push = rows(report)["image registry push"]
    assert code == 1 and "connection refused" in push["cause"] and "down" in push["cause"], push


def _experiments(stack: Stack, workspace: str, name: str) -> list[dict]:
    """Experiments called ``name`` in ``workspace`` (deleted ones too), as the platform's admin."""
    from mlplane.tooling.verify_http import Http

    admin = Http(timeout=10, auth=(stack.outputs["mlflowAdminUsername"], stack.outputs["mlflowAdminPassword"]),
                 headers={"X-MLFLOW-WORKSPACE": workspace})
    found = admin.request("POST", f"{stack.url('mlflow')}/api/2.0/mlflow/experiments/search",
                          body={"max_results": 100, "view_type": "ALL"}).json()
    return [e for e in found.get("experiments", []) if e["name"] == name]


def test_verify_passes_against_a_team_stack_in_its_workspace_bucket_and_registry_namespace(stack, tmp_path):
    code, report, stderr = mlplane(outputs=stack.team_outputs, platform=stack.outputs, tmp=tmp_path)
    assert code == 0, json.dumps(report, indent=1) + stderr
    checks = rows(report)
    assert all(r["status"] in ("pass", "skip") for r in checks.values()), checks
    assert "in workspace team-fraud" in checks["mlflow auth"]["detail"]
    # The probe image went under the team's own prefix, pushed with the team's push identity.
    push = checks["image registry push"]["detail"]
    assert push.startswith(f"pushed and pulled {TEAM}/mlplane-verify/probe:"), push
    stamp = push.split(":", 1)[1].split(" ", 1)[0]
    # The run was logged in the team's workspace, not the platform's default one; cleanup deleted it.
    (experiment,) = _experiments(stack, "team-fraud", f"mlplane-verify-{stamp}")
    assert experiment["lifecycle_stage"] == "deleted"
    assert not _experiments(stack, "default", f"mlplane-verify-{stamp}")
    # The team's bucket took the probe object with the team's credentials, and it is gone again.
    bucket = checks["artifact in bucket"]["detail"]
    assert "s3://team-fraud/" in bucket, bucket
    import boto3

    team = boto3.client("s3", endpoint_url=stack.url("s3"), region_name="us-east-1",
                        aws_access_key_id=stack.team_outputs["s3AccessKeyId"],
                        aws_secret_access_key=stack.team_outputs["s3SecretAccessKey"])
    assert not team.list_objects_v2(Bucket="team-fraud").get("Contents")
    assert checks["grafana"]["status"] == "skip" and "no Grafana credentials" in checks["grafana"]["detail"]
    assert not [c for c in checks if c.endswith(" inference") or c == "model request metric"]  # no team model server
    assert checks["cleanup"]["detail"].startswith(f"left behind: image {TEAM}/mlplane-verify/probe:"), checks["cleanup"]


def test_a_team_pointed_at_the_platforms_bucket_or_another_workspace_is_refused_and_named(stack, tmp_path):
    platform_bucket = stack.servers.env(stack.servers.rendered.container("Job", "s3-grant-mlflow-", "grant"))["S3_BUCKETS"]
    outputs = {**stack.team_outputs, "team": {**stack.team_outputs["team"], "bucket": platform_bucket}}
    code, report, _ = mlplane(outputs=outputs, platform=stack.outputs, tmp=tmp_path)
    checks = rows(report)
    assert code == 1
    bucket = checks["artifact in bucket"]
    assert bucket["status"] == "fail" and "not allowed there" in bucket["cause"], bucket
    assert checks["mlflow run"]["status"] == "pass" and checks["image registry push"]["status"] == "pass"

    # Another team's workspace (created by the admin): the team account may not write there.
    from mlplane.tooling.verify_http import Http

    admin = Http(timeout=10, auth=(stack.outputs["mlflowAdminUsername"], stack.outputs["mlflowAdminPassword"]))
    admin.expect("POST", f"{stack.url('mlflow')}/api/3.0/mlflow/workspaces", "creating a workspace", ok=(201,),
                 body={"name": "team-other", "description": "another team"})
    outputs = {**stack.team_outputs, "team": {**stack.team_outputs["team"], "mlflowWorkspace": "team-other"}}
    code, report, _ = mlplane(outputs=outputs, platform=stack.outputs, tmp=tmp_path)
    checks = rows(report)
    assert code == 1
    failed = [r for r in checks.values() if r["status"] == "fail"]
    assert failed and failed[0]["check"] in ("mlflow auth", "mlflow run"), failed
    assert "403" in failed[0]["cause"] and "not allowed" in failed[0]["cause"], failed[0]


def test_a_stopped_model_server_and_its_target_are_named(stack, tmp_path):
    """Runs last: it stops the model server for good."""
    _stop(stack.processes.pop("model"))
    code, report, _ = mlplane(outputs=stack.outputs, tmp=tmp_path)
    checks = rows(report)
    assert code == 1
    model = checks[f"model {MODEL} inference"]
    assert model["status"] == "fail" and "service behind it is down" in model["cause"], model
    assert checks["model request metric"]["status"] == "fail"
    assert checks["mlflow run"]["status"] == "pass"
    # Prometheus scrapes MLflow's sidecar: stopping it takes its target down.
    _stop(stack.processes.pop("sidecar"))
    time.sleep(6)
    code, report, _ = mlplane(outputs=stack.outputs, tmp=tmp_path)
    targets = rows(report)["prometheus targets"]
    assert targets["status"] == "fail" and "target down: mlflow/" in targets["cause"], targets
