"""`mlplane verify` without servers: bad input exits 2 with the offending output named; a service
that is not there is reported as down, never as a traceback (the real services: test_verify_servers.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlplane.tooling.verify import VerifyInputError, probe_repository, target_from_outputs, verify
from mlplane.tooling.verify_http import status_cause

MLPLANE = str(Path(sys.executable).parent / "mlplane")


def platform_outputs(port: int = 9) -> dict:
    url = f"http://127.0.0.1:{port}"
    return {
        "urls": {"mlflow": url, "s3": url, "registry": f"{url}/v2/_catalog", "model-iris": url, "grafana": url, "prometheus": url},
        "mlflowAdminUsername": "admin", "mlflowAdminPassword": "pw", "grafanaAdminPassword": "pw",
        "s3AccessKeyId": "key", "s3SecretAccessKey": "secret", "registryPushUrl": f"127.0.0.1:{port}",
        "platform": {"name": "mlplane", "s3Region": "us-east-1"},
    }


def run(tmp_path: Path, *args: str, outputs: object = None) -> subprocess.CompletedProcess:
    argv = [MLPLANE, "verify", *args]
    if outputs is not None:
        path = tmp_path / "outputs.json"
        path.write_text(outputs if isinstance(outputs, str) else json.dumps(outputs))
        argv += ["--outputs", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stdout + done.stderr
    return done


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ("not json", "not JSON"),
        ([], "expected a JSON object of stack outputs"),
        ({}, "output 'urls' is missing"),
        ({**platform_outputs(), "urls": {"s3": "http://x"}}, "output 'urls.mlflow' is missing"),
        ({**platform_outputs(), "mlflowAdminPassword": "[secret]"}, "is a masked secret"),
        ({**platform_outputs(), "urls": {**platform_outputs()["urls"], "mlflow": "mlflow.example"}}, "'urls.mlflow' is 'mlflow.example', not an http(s) URL"),
        ({"team": {"name": "fraud"}}, "pass the platform's outputs too (--platform-outputs FILE)"),
    ],
)
def test_bad_outputs_exit_2_naming_the_output(tmp_path, outputs, message):
    done = run(tmp_path, outputs=outputs)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr, done.stderr
    assert done.stdout == ""


def test_stack_and_outputs_are_exclusive_and_inputs_are_checked(tmp_path):
    assert "exactly one of --stack NAME or --outputs FILE" in run(tmp_path).stderr
    done = run(tmp_path, "--input", "iris", outputs=platform_outputs())
    assert done.returncode == 2 and "expected MODEL=FILE" in done.stderr
    done = run(tmp_path, "--outputs", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "no such file" in done.stderr


def test_team_outputs_take_urls_from_the_platform_and_credentials_from_the_team():
    team = {"team": {"name": "fraud", "bucket": "team-fraud", "mlflowWorkspace": "team-fraud",
                     "modelUrls": {"churn": "http://churn.fraud.example"}},
            "s3AccessKeyId": "tk", "s3SecretAccessKey": "ts", "mlflowUsername": "team-fraud", "mlflowPassword": "tp"}
    target = target_from_outputs(team, platform_outputs(5000))
    assert (target.kind, target.workspace, target.bucket) == ("team", "team-fraud", "team-fraud")
    assert target.mlflow_auth == ("team-fraud", "tp") and target.s3_credentials == ("tk", "ts")
    assert target.mlflow_url == "http://127.0.0.1:5000" and target.model_urls == {"churn": "http://churn.fraud.example"}
    assert target.grafana_url is None
    assert probe_repository(target) == "fraud/mlplane-verify/probe"  # a team may push only under fraud/
    assert probe_repository(target_from_outputs(platform_outputs())) == "mlplane-verify/probe"
    pushing = target_from_outputs({**team, "registryUsername": "push.fraud", "registryPassword": "rp"},
                                  {**platform_outputs(), "registryUsername": "platform", "registryPassword": "pp"})
    assert pushing.registry_auth == ("push.fraud", "rp")
    with pytest.raises(VerifyInputError, match="mlflowPassword"):
        target_from_outputs({**team, "mlflowPassword": None}, platform_outputs())


def test_nothing_listening_is_reported_as_down_per_check(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run(tmp_path, "--json", "--timeout", "2", "--metric-wait", "0", outputs=platform_outputs(port))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["passed"] is False
    checks = {r["check"]: r for r in report["checks"]}
    for name in ("mlflow auth", "image registry push", "model iris inference", "prometheus targets", "grafana"):
        assert checks[name]["status"] == "fail"
        assert "connection refused" in checks[name]["cause"] and "down" in checks[name]["cause"], checks[name]
    assert "no run was logged" in checks["artifact in bucket"]["cause"]
    # The plain-text form (not a terminal) names each failure with its cause on one line.
    plain = run(tmp_path, "--timeout", "2", "--metric-wait", "0", outputs=platform_outputs(port))
    assert plain.returncode == 1
    assert "FAIL  mlflow auth: MLflow /health -- connection refused" in plain.stdout
    assert "check(s) failed" in plain.stdout


def test_status_causes_name_credentials_and_down_services():
    assert "wrong credentials" in status_cause(401)
    assert "not allowed" in status_cause(403)
    assert "service behind it is down" in status_cause(503)
    assert "refuses" in status_cause(405)


def test_verify_never_raises_on_an_unreachable_target():
    target = target_from_outputs(platform_outputs(9))
    rows = verify(target, timeout=1, metric_wait=0)
    assert rows[-1].check == "cleanup"
    assert all(r.status in ("pass", "fail", "skip") for r in rows)


def test_each_target_reads_the_model_info_of_its_own_serving_namespace():
    """A team's and the platform's models may share a name: each reads its own info series (the
    team's recorded from its model exporter, prometheus_config.team_model_rules)."""
    import http.server
    import threading

    from mlplane.tooling.verify import Run, _prepare_metrics

    series = [
        {"metric": {"model": "iris", "namespace": ns, "registered_model": f"{ns}-iris", "version": "v1",
                    "envoy_cluster_name": f"httproute/{ns}/iris/rule/0"}, "value": [0, "1"]}
        for ns in ("mlplane-serving", "mlplane-team-fraud-serving")
    ]

    class Prometheus(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):  # noqa: N802
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        prometheus = f"http://127.0.0.1:{server.server_address[1]}"
        platform = {**platform_outputs(), "urls": {**platform_outputs()["urls"], "prometheus": prometheus}}
        team = {"team": {"name": "fraud", "bucket": "team-fraud", "namespaces": {"serving": "mlplane-team-fraud-serving"},
                         "modelUrls": {"iris": "http://iris.fraud.example"}},
                "s3AccessKeyId": "tk", "s3SecretAccessKey": "ts", "mlflowUsername": "team-fraud", "mlflowPassword": "tp"}
        for outputs, namespace in ((team, "mlplane-team-fraud-serving"), (platform, "mlplane-serving")):
            target = target_from_outputs(outputs, platform if outputs is team else None)
            assert target.serving_namespace == namespace
            run = Run(target=target, timeout=5, metric_wait=0, inputs={})
            _prepare_metrics(run)
            assert run.model_info["iris"]["registered_model"] == f"{namespace}-iris"
    finally:
        server.shutdown()
