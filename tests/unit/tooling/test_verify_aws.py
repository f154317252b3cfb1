"""`mlplane verify` on an AWS platform: target detection and input errors from the outputs, S3 with
the operator's identity against moto (objects in the artifact bucket, a team's bucket probe, no
credentials, AccessDenied), ECR login through moto's GetAuthorizationToken, and the probe push
with that token into Debian's docker-registry (distribution 2.8) requiring basic auth: moto does
not serve the registry API, so the push to ECR itself is not proven here (docs/verify.md)."""

from __future__ import annotations

import base64
import crypt
import http.server
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mlplane.tooling import verify_aws
from mlplane.tooling.verify import (
    ARTIFACT_NAME, Run, VerifyInputError, check_artifact_in_bucket, check_registry, cleanup, platform_target,
    probe_repository, target_from_outputs,
)
from mlplane.tooling.verify_http import CheckFailed, Http

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

REGION = "eu-west-1"
HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def aws_outputs(**platform: object) -> dict:
    """A platform stack's outputs on AWS, as `mlplane render --stack aws` writes them (outputs.json)."""
    return {
        "urls": {"mlflow": "https://mlflow.ml.example.com", "grafana": "https://grafana.ml.example.com"},
        "mlflowAdminUsername": "admin", "mlflowAdminPassword": "pw", "grafanaAdminPassword": "gp",
        "s3AccessKeyId": "", "s3SecretAccessKey": "", "registryPushUrl": f"{HOST}/mlplane",
        "platform": {"name": "mlplane", "target": "aws", "region": REGION, "s3Region": REGION,
                     "s3Endpoint": f"https://s3.{REGION}.amazonaws.com", "artifactsBucket": "mlplane-artifacts-abcd1234",
                     "registryRepositories": {"models": f"{HOST}/mlplane/models"}, **platform},
    }


TEAM = {"team": {"name": "fraud", "bucket": "team-fraud-abcd1234", "mlflowWorkspace": "team-fraud", "modelUrls": {}},
        "mlflowUsername": "team-fraud", "mlflowPassword": "tp"}


@pytest.fixture
def aws_env(monkeypatch):
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with moto.mock_aws():
        yield


# --- detection and input ---------------------------------------------------------------------


def test_an_aws_platform_is_detected_from_its_outputs():
    assert platform_target(aws_outputs()) == "aws"
    assert platform_target({"platform": {"name": "x"}, "registryPushUrl": "localhost:5001"}) == "local"
    # A stack deployed before platform.target was exported: its ECR registry host says it.
    assert platform_target({"registryPushUrl": f"{HOST}/mlplane", "platform": {}}) == "aws"


def test_the_aws_target_uses_the_operator_identity_the_regional_endpoint_and_the_real_names():
    target = target_from_outputs(aws_outputs())
    assert target.aws and target.s3_credentials is None  # s3AccessKeyId '' is not an error on AWS
    assert (target.s3_endpoint, target.s3_region) == (f"https://s3.{REGION}.amazonaws.com", REGION)
    assert target.bucket == "mlplane-artifacts-abcd1234"
    assert target.registry_url == f"https://{HOST}" and target.registry_auth is None
    assert probe_repository(target) == "mlplane/models"
    team = target_from_outputs(TEAM, aws_outputs())
    assert team.kind == "team" and team.s3_credentials is None and team.bucket == "team-fraud-abcd1234"
    assert probe_repository(team) == "mlplane/fraud/models"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"artifactsBucket": None}, "output 'platform.artifactsBucket' is missing"),
        ({"s3Endpoint": "s3.eu-west-1"}, "'platform.s3Endpoint' is 's3.eu-west-1', not an http(s) URL"),
        ({"region": ""}, "output 'platform.region' is ''"),
    ],
)
def test_aws_outputs_missing_what_verify_needs_are_input_errors(change, message):
    outputs = aws_outputs(**change)
    with pytest.raises(VerifyInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        target_from_outputs(outputs)


# --- S3 with the operator's identity (moto) ----------------------------------------------------


def _run_with_artifact(target) -> Run:
    run = Run(target=target, timeout=5)
    run.run_id = "0123abcd"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=target.bucket or "x", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=target.bucket, Key="other/object.txt", Body=b"unrelated")
    s3.put_object(Bucket=target.bucket, Key=f"1/{run.run_id}/artifacts/{ARTIFACT_NAME}", Body=f"{run.name}\n".encode())
    return run


def test_the_platform_artifact_is_read_from_the_real_bucket_with_the_operator_identity(aws_env):
    run = _run_with_artifact(target_from_outputs(aws_outputs()))
    detail = check_artifact_in_bucket(run)
    assert detail.startswith(f"s3://mlplane-artifacts-abcd1234/1/{run.run_id}/artifacts/{ARTIFACT_NAME} read with your AWS identity arn:aws:")


def test_a_team_bucket_is_probed_with_the_operator_identity_and_says_so(aws_env):
    target = target_from_outputs(TEAM, aws_outputs())
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=target.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    run = Run(target=target, timeout=5)
    run.run_id = "0123abcd"
    detail = check_artifact_in_bucket(run)
    assert "written, read back and deleted with your AWS identity arn:aws:" in detail
    assert "not the team's pod role" in detail and "cannot be assumed from outside the cluster" in detail
    assert boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=target.bucket).get("KeyCount") == 0


def test_a_missing_bucket_is_named(aws_env):
    run = Run(target=target_from_outputs(aws_outputs()), timeout=5)
    run.run_id = "0123abcd"
    with pytest.raises(CheckFailed, match="missing bucket: bucket mlplane-artifacts-abcd1234 does not exist"):
        check_artifact_in_bucket(run)


def test_no_aws_credentials_is_a_failing_row_naming_the_chain(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    run = Run(target=target_from_outputs(aws_outputs()), timeout=2)
    run.run_id = "0123abcd"
    with pytest.raises(CheckFailed) as failed:
        check_artifact_in_bucket(run)
    assert "no AWS credentials found" in failed.value.cause and "AWS_PROFILE" in failed.value.cause
    with pytest.raises(CheckFailed) as failed:
        verify_aws.ecr_login(REGION, 2)
    assert "no AWS credentials found" in failed.value.cause and "ecr:GetAuthorizationToken" in failed.value.cause


def test_a_missing_profile_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(CheckFailed, match="nobody"):
        verify_aws.caller(REGION, 2)


def test_access_denied_names_the_permission():
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::1:user/o is not authorized"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListObjectsV2")
    cause = verify_aws.aws_cause(denied, verify_aws.S3_LIST, "bucket b")
    assert cause.startswith("access denied: your AWS identity is not allowed s3:ListBucket on bucket b")
    assert "is not authorized" in cause
    kms = verify_aws.aws_cause(denied, verify_aws.S3_READ, "bucket b")
    assert "kms:Decrypt" in kms


def test_an_operator_without_s3_listbucket_gets_a_row_naming_it(aws_env, monkeypatch):
    """moto enforces IAM only with authentication on: an operator allowed nothing but
    sts:GetCallerIdentity is refused listing the artifact bucket."""
    import json

    from moto.core import set_initial_no_auth_action_count

    @set_initial_no_auth_action_count(6)  # the setup below: 3 S3 calls, 3 IAM calls
    def scenario() -> CheckFailed:
        target = target_from_outputs(aws_outputs())
        run = _run_with_artifact(target)
        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName="operator")
        iam.put_user_policy(UserName="operator", PolicyName="whoami", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        with pytest.raises(CheckFailed) as failed:
            check_artifact_in_bucket(run)
        return failed.value

    failed = scenario()
    assert failed.what == "reading the bucket"
    assert failed.cause.startswith("access denied: your AWS identity is not allowed s3:ListBucket on bucket mlplane-artifacts-abcd1234"), failed.cause


# --- ECR: login with moto, push into a real registry requiring that token ------------------------


def test_ecr_login_decodes_the_authorization_token(aws_env):
    assert verify_aws.ecr_login(REGION, 5) == ("AWS", "123456789012-auth-token")


def test_redirects_to_another_host_do_not_carry_the_credentials():
    seen: dict[str, str | None] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_GET(self):  # noqa: N802
            if self.path == "/blob":
                self.send_response(307)
                self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/signed")
                self.end_headers()
                return
            seen[self.headers.get("Host", "")] = self.headers.get("Authorization")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert Http(timeout=5, auth=("AWS", "secret")).request("GET", f"http://127.0.0.1:{port}/blob").body == b"ok"
        assert seen == {f"localhost:{port}": None}  # 127.0.0.1 -> localhost: another host, no Authorization
    finally:
        server.shutdown()


REGISTRY = shutil.which("docker-registry")


@pytest.fixture
def basic_auth_registry(tmp_path):
    """Debian's docker-registry (distribution 2.8) with htpasswd auth for user AWS and moto's
    ECR password: a registry that admits exactly what ECR's authorization token carries."""
    if REGISTRY is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "htpasswd").write_text(f"AWS:{crypt.crypt('123456789012-auth-token', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    (tmp_path / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: " + str(tmp_path / "data")
        + "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" + str(port)
        + "\nauth:\n  htpasswd:\n    realm: ecr-stand-in\n    path: " + str(tmp_path / "htpasswd") + "\n"
    )
    process = subprocess.Popen([REGISTRY, "serve", str(tmp_path / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            except urllib.error.HTTPError:
                break  # 401: up, asking for credentials
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("docker-registry did not start")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_probe_is_pushed_with_the_ecr_token_and_cleanup_names_what_ecr_refused(aws_env, basic_auth_registry):
    target = target_from_outputs(aws_outputs())
    target.registry_url = basic_auth_registry  # the ECR host stands in; the login is moto's ECR
    run = Run(target=target, timeout=10)
    detail = check_registry(run)
    assert detail.startswith(f"pushed and pulled mlplane/models:{run.name} (") and "as your AWS identity" in detail
    # Pulled back with the same token by an independent request: the tag is there.
    token = base64.b64encode(b"AWS:123456789012-auth-token").decode()
    request = urllib.request.Request(f"{basic_auth_registry}/v2/mlplane/models/tags/list", headers={"Authorization": f"Basic {token}"})
    assert run.name in urllib.request.urlopen(request, timeout=5).read().decode()
    # Cleanup deletes through ECR's API (BatchDeleteImage as the operator): moto's ECR has no such
    # image (it was pushed to the stand-in), and the row says what was left and why.
    left = cleanup(run)
    assert f"image mlplane/models:{run.name}" in left and ("RepositoryNotFound" in left or "ImageNotFound" in left or "missing repository" in left)


def test_a_wrong_ecr_token_is_http_401(aws_env, basic_auth_registry):
    target = target_from_outputs(aws_outputs())
    target.registry_url = basic_auth_registry
    target.registry_login = lambda: ("AWS", "expired-token")
    with pytest.raises(CheckFailed, match="HTTP 401: wrong credentials"):
        check_registry(Run(target=target, timeout=10))


def test_ecr_delete_removes_an_image_moto_holds(aws_env):
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="mlplane/models")
    manifest = '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {}, "layers": []}'
    digest = ecr.put_image(repositoryName="mlplane/models", imageManifest=manifest, imageTag="mlplane-verify-1")["image"]["imageId"]["imageDigest"]
    verify_aws.ecr_delete(REGION, "mlplane/models", digest, 5)
    assert ecr.list_images(repositoryName="mlplane/models")["imageIds"] == []


def test_the_cli_on_aws_outputs_without_credentials_exits_1_naming_them_and_2_on_bad_input(tmp_path):
    import json
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    mlplane = str(Path(sys.executable).parent / "mlplane")
    outputs = aws_outputs()
    outputs["urls"] = {"mlflow": "http://127.0.0.1:9"}  # nothing listens: the MLflow rows fail fast
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    done = subprocess.run([mlplane, "verify", "--outputs", str(path), "--json", "--timeout", "2"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    rows = {r["check"]: r for r in json.loads(done.stdout)["checks"]}
    assert rows["image registry push"]["status"] == "fail"
    assert "no AWS credentials found" in rows["image registry push"]["cause"]
    assert "ecr:GetAuthorizationToken" in rows["image registry push"]["cause"]
    path.write_text(json.dumps(aws_outputs(artifactsBucket=None)))
    done = subprocess.run([mlplane, "verify", "--outputs", str(path)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "platform.artifactsBucket' is missing" in done.stderr and done.stdout == ""
