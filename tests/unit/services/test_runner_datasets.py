"""CI job pods get an S3 identity limited to the datasets bucket (ci_runners.datasets_access).

Render tests: the grant Job and its actions per setting, the Secret in the runner namespace, the
job pod template's env, the runner namespace's egress, and nothing of it when off, in 'dind' or
with an external store; team job pods get their team's S3 Secret. Then a real SeaweedFS
(`weed`, scripts/bootstrap-servers.sh) started with the rendered StatefulSet's command line runs
the rendered grant Jobs' scripts, and an S3 client built from the job pods' env alone shows what
the identity may do: read and write the datasets bucket ('read-write'), read only ('read-only'),
and nothing on the artifacts bucket.
"""

from __future__ import annotations

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
import yaml

from mlplane.services import ci_runners
from mlplane import program
from mlplane.config import ConfigError, parse_platform
from mlplane.backing.object_storage import RESERVED_IDENTITIES, RUNNERS_IDENTITY, BucketGrant, bucket_grant_job
from mlplane.tooling.render import capture

ROOT = Path(__file__).resolve().parents[3]
RUNNERS = {"github_config_url": "https://github.com/acme/models", "github_token_key": "githubToken"}
SECRETS = {"mlplane:githubToken": "token"}
#: The keys of the external store in the 'external' case.
EXTERNAL_SECRETS = {"mlplane:s3Key": "key", "mlplane:s3Secret": "secret"}
RUNNER_NS = "mlplane-ci-runners"


def render(runners: dict[str, Any] | None = None, **config: Any) -> list[dict[str, Any]]:
    platform = {"ci_runners": {**RUNNERS, **(runners or {})}, **config}
    result = capture(program.main, config={"mlplane:platform": json.dumps(platform), **SECRETS,
                                                   **(EXTERNAL_SECRETS if "object_storage" in config and config["object_storage"].get("mode") == "external" else {})})
    return result.manifests()


def one(manifests: list[dict], kind: str, name_prefix: str, namespace: str | None = None) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)
             and (namespace is None or m["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, (kind, name_prefix, [m["metadata"]["name"] for m in found])
    return found[0]


def none_of(manifests: list[dict], kind: str, name_prefix: str, namespace: str | None = None) -> bool:
    return not [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name_prefix)
                and (namespace is None or m["metadata"].get("namespace") == namespace)]


def job_env(manifests: list[dict]) -> list[dict[str, Any]]:
    template = yaml.safe_load(one(manifests, "ConfigMap", ci_runners.JOB_TEMPLATE)["data"][ci_runners.JOB_TEMPLATE_FILE])
    return template["spec"]["containers"][0]["env"]


def grant_env(manifests: list[dict], identity: str) -> dict[str, Any]:
    job = one(manifests, "Job", f"s3-grant-{identity}-")
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def s3_egress(manifests: list[dict]) -> list[dict[str, Any]]:
    policy = one(manifests, "NetworkPolicy", "runner-egress", RUNNER_NS)
    return [rule for rule in policy["spec"]["egress"] if {"port": 8333, "protocol": "TCP"} in rule.get("ports", [])]


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


# --------------------------------------------------------------------------------------------
# Render
# --------------------------------------------------------------------------------------------


def test_default_is_a_read_only_identity_on_the_datasets_bucket_only(default):
    env = grant_env(default, RUNNERS_IDENTITY)
    assert env["S3_IDENTITY"] == "ci-runners"
    assert env["S3_BUCKETS"] == env["CREATE_BUCKETS"] == "mlplane-datasets"
    assert env["S3_ACTIONS"] == "Read,List"
    # The key comes from the identity's Secret in the storage namespace, never a literal.
    assert env["S3_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-identity-ci-runners", "key": "secret-access-key"}}


def test_read_write_grants_the_bucket_actions_and_a_custom_bucket_is_followed():
    manifests = render({"datasets_access": "read-write"}, object_storage={"buckets": {"datasets": "acme-data"}})
    env = grant_env(manifests, RUNNERS_IDENTITY)
    assert env["S3_ACTIONS"] == "Read,Write,List,Tagging"
    assert env["S3_BUCKETS"] == "acme-data"
    assert one(manifests, "Secret", ci_runners.S3_SECRET, RUNNER_NS)["stringData"]["MLPLANE_BUCKET"] == "acme-data"


def test_runner_namespace_secret_carries_the_identity_endpoint_region_and_bucket(default):
    data = one(default, "Secret", ci_runners.S3_SECRET, RUNNER_NS)["stringData"]
    identity = one(default, "Secret", "s3-identity-ci-runners", "mlplane-storage")["stringData"]
    assert sorted(data) == sorted(ci_runners.S3_ENV)
    assert data["AWS_ACCESS_KEY_ID"] == identity["access-key-id"]
    assert data["AWS_SECRET_ACCESS_KEY"] == identity["secret-access-key"]
    assert data["AWS_ENDPOINT_URL_S3"] == "http://seaweedfs.mlplane-storage.svc.cluster.local:8333"
    assert data["AWS_DEFAULT_REGION"] == "us-east-1"
    assert data["MLPLANE_BUCKET"] == "mlplane-datasets"


def test_job_pods_read_every_s3_variable_from_the_secret(default):
    env = {e["name"]: e for e in job_env(default)}
    for key in ci_runners.S3_ENV:
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": key}}}
    # MLflow's credentials are still there.
    assert "MLFLOW_TRACKING_PASSWORD" in env


def test_runner_namespace_reaches_seaweedfs_s3_port_only(default):
    rules = s3_egress(default)
    assert len(rules) == 1
    assert rules[0]["ports"] == [{"port": 8333, "protocol": "TCP"}]
    assert rules[0]["to"] == [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlplane-storage"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "storage", "app.kubernetes.io/part-of": "mlplane",
                                        "app.kubernetes.io/name": "seaweedfs"}},
    }]


@pytest.mark.parametrize(
    "runners, config",
    [
        ({"datasets_access": "none"}, {}),
        ({"container_mode": "dind", "allow_privileged_runners": True}, {}),
        ({}, {"object_storage": {"mode": "external", "external": {
            "endpoint": "https://s3.example.com", "access_key_id_key": "s3Key", "secret_access_key_key": "s3Secret"}}}),
    ],
    ids=["none", "dind", "external"],
)
def test_no_identity_no_secret_no_env_and_no_egress_when_not_wanted_or_not_possible(runners, config):
    manifests = render(runners, **config)
    assert none_of(manifests, "Job", f"s3-grant-{RUNNERS_IDENTITY}-")
    assert none_of(manifests, "Secret", ci_runners.S3_SECRET, RUNNER_NS)
    if runners.get("container_mode") != "dind":
        assert not {"AWS_ACCESS_KEY_ID", "MLPLANE_BUCKET"} & {e["name"] for e in job_env(manifests)}
    assert s3_egress(manifests) == []


def test_runners_off_create_no_identity():
    result = capture(program.main, config={"mlplane:platform": json.dumps({})})
    assert none_of(result.manifests(), "Job", f"s3-grant-{RUNNERS_IDENTITY}-")


def test_a_bad_datasets_access_is_named():
    with pytest.raises(ConfigError) as error:
        parse_platform({"ci_runners": {**RUNNERS, "datasets_access": "write"}})
    assert "datasets_access" in str(error.value) and "read-only" in str(error.value)


def test_a_team_cannot_take_the_runners_identity():
    assert RUNNERS_IDENTITY in RESERVED_IDENTITIES
    grant = BucketGrant(identity=RUNNERS_IDENTITY, buckets=("team-data",), access_key_id="k", secret_access_key="s")
    with pytest.raises(ValueError, match="reserved"):
        bucket_grant_job("x", grant, None)  # type: ignore[arg-type]


def test_team_job_pods_get_the_team_bucket_identity_and_may_reach_s3():
    """Team job pods run in the work namespace: the team's own S3 Secret (its bucket only) and
    the work namespace's egress to SeaweedFS's S3 port; the platform's datasets key never."""
    import test_team  # noqa: PLC0415

    result = test_team.render(test_team.team_raw("fraud", ci_runners=test_team.RUNNERS, network={"allow_internet_https": True}))
    template = test_team.one(result, "ConfigMap", "mlplane-team-fraud-runners", ci_runners.JOB_TEMPLATE)
    env = {e["name"]: e for e in yaml.safe_load(template["data"][ci_runners.JOB_TEMPLATE_FILE])["spec"]["containers"][0]["env"]}
    for key in ci_runners.S3_ENV:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "s3-credentials", "key": key}
    secret = test_team.one(result, "Secret", "mlplane-team-fraud", "s3-credentials")["stringData"]
    assert sorted(secret) == sorted(ci_runners.S3_ENV)
    import test_team_grants  # noqa: PLC0415

    platform = test_team_grants.platform_with("fraud")
    (grant,) = [m for m in test_team.manifests(platform, "Job", "mlplane-storage") if m["metadata"]["name"].startswith("s3-grant-team-")]
    grant_env = {e["name"]: e.get("value") for e in grant["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert secret["MLPLANE_BUCKET"] == grant_env["S3_BUCKETS"] and grant_env["S3_IDENTITY"] != RUNNERS_IDENTITY
    policies = test_team.manifests(result, "NetworkPolicy", "mlplane-team-fraud")
    assert any({"port": 8333, "protocol": "TCP"} in rule.get("ports", [])
               for p in policies for rule in p["spec"].get("egress", []))


def test_team_without_object_storage_gets_no_s3_env():
    import test_team  # noqa: PLC0415

    raw = test_team.team_raw("fraud", ci_runners=test_team.RUNNERS, services=["tracking"],
                             network={"allow_internet_https": True})
    result = test_team.render(raw)
    template = test_team.one(result, "ConfigMap", "mlplane-team-fraud-runners", ci_runners.JOB_TEMPLATE)
    names = {e["name"] for e in yaml.safe_load(template["data"][ci_runners.JOB_TEMPLATE_FILE])["spec"]["containers"][0]["env"]}
    assert not names & set(ci_runners.S3_ENV)


# --------------------------------------------------------------------------------------------
# Against a real SeaweedFS
# --------------------------------------------------------------------------------------------


def _bin_dir() -> Path:
    out = subprocess.run(["bash", str(ROOT / "scripts/bootstrap-servers.sh"), "--print-bin-dir"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def _free_pair() -> int:
    """A free port p with p + 10000 free too (SeaweedFS serves gRPC there)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def _secret_env(manifests: list[dict], container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = one(manifests, "Secret", ref["name"])["stringData"][ref["key"]]
        else:
            env[item["name"]] = str(item["value"])
    return env


class Weed:
    def __init__(self, manifests: list[dict], work: Path, bin_dir: Path):
        self.bin_dir = bin_dir
        self.ports = {name: _free_pair() for name in ("master", "volume", "filer", "s3")}
        self.ports["metrics"] = _free_pair()
        server = one(manifests, "StatefulSet", "seaweedfs")["spec"]["template"]["spec"]["containers"][0]
        data = work / "weed"
        data.mkdir()
        local = {"-dir": str(data), "-ip.bind": "127.0.0.1", "-master.port": self.ports["master"],
                 "-volume.port": self.ports["volume"], "-filer.port": self.ports["filer"],
                 "-s3.port": self.ports["s3"], "-metricsPort": self.ports["metrics"]}
        args = []
        for arg in server["args"]:
            flag, sep, _ = arg.partition("=")
            args.append(f"{flag}={local[flag]}" if sep and flag in local else arg)
        env = {"PATH": os.environ["PATH"], "HOME": str(work), **_secret_env(manifests, server)}
        env["HOME"] = str(work)
        self.log = work / "weed.log"
        self.process = subprocess.Popen([str(bin_dir / "weed"), *args, "-ip=127.0.0.1"], env=env, cwd=data,
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # answering (403 without credentials)
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"weed did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def grant(self, manifests: list[dict], identity: str) -> None:
        """Run the rendered grant Job's script, with the Job's env, against this server."""
        job = one(manifests, "Job", f"s3-grant-{identity}-")
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": f"{self.bin_dir}:{os.environ['PATH']}", **_secret_env(manifests, container)}
        env["HOME"] = str(self.log.parent)
        env["SEAWEEDFS_MASTER"] = f"127.0.0.1:{self.ports['master']}"
        env["SEAWEEDFS_FILER"] = f"127.0.0.1:{self.ports['filer']}"
        result = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    def job_client(self, manifests: list[dict]) -> tuple[Any, str]:
        """An S3 client configured from the job pod template's env alone (endpoint swapped)."""
        import boto3  # noqa: PLC0415

        env = _secret_env(manifests, {"env": [e for e in job_env(manifests) if e["name"] in ci_runners.S3_ENV]})
        assert env["AWS_ENDPOINT_URL_S3"] == "http://seaweedfs.mlplane-storage.svc.cluster.local:8333"
        client = boto3.client("s3", endpoint_url=self.url, region_name=env["AWS_DEFAULT_REGION"],
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        return client, env["MLPLANE_BUCKET"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def weed(tmp_path_factory) -> Iterator[tuple[Weed, list[dict]]]:
    pytest.importorskip("boto3")
    bin_dir = _bin_dir()
    if not (bin_dir / "weed").exists() or shutil.which("timeout") is None:
        pytest.skip(f"weed not found in {bin_dir}: bash scripts/bootstrap-servers.sh")
    manifests = render({"datasets_access": "read-write"})
    server = Weed(manifests, tmp_path_factory.mktemp("weed"), bin_dir)
    try:
        server.grant(manifests, "mlflow")  # the platform's own grant creates the buckets
        yield server, manifests
    finally:
        server.stop()


@pytest.mark.servers
def test_read_write_identity_writes_datasets_and_is_refused_on_artifacts(weed):
    from botocore.exceptions import ClientError  # noqa: PLC0415

    server, manifests = weed
    server.grant(manifests, RUNNERS_IDENTITY)
    s3, bucket = server.job_client(manifests)
    assert bucket == "mlplane-datasets"
    s3.put_object(Bucket=bucket, Key="dvc/files/md5/ab/cdef", Body=b"rows")
    assert s3.get_object(Bucket=bucket, Key="dvc/files/md5/ab/cdef")["Body"].read() == b"rows"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dvc/")["Contents"]] == ["dvc/files/md5/ab/cdef"]
    for refused in (lambda: s3.put_object(Bucket="mlplane-artifacts", Key="x", Body=b"no"),
                    lambda: s3.get_object(Bucket="mlplane-artifacts", Key="x"),
                    lambda: s3.list_objects_v2(Bucket="mlplane-artifacts"),
                    lambda: s3.put_object(Bucket="mlplane-models", Key="x", Body=b"no"),
                    lambda: s3.create_bucket(Bucket="runners-may-not-create")):
        with pytest.raises(ClientError, match="AccessDenied"):
            refused()


@pytest.mark.servers
def test_read_only_identity_reads_datasets_and_cannot_write_or_delete(weed):
    from botocore.exceptions import ClientError  # noqa: PLC0415

    server, writable = weed
    server.grant(writable, RUNNERS_IDENTITY)
    s3_rw, bucket = server.job_client(writable)
    s3_rw.put_object(Bucket=bucket, Key="dvc/files/md5/01/2345", Body=b"v1")
    # The default setting redefines the identity (the grant script deletes it first).
    read_only = render()
    server.grant(read_only, RUNNERS_IDENTITY)
    s3, bucket = server.job_client(read_only)
    assert s3.get_object(Bucket=bucket, Key="dvc/files/md5/01/2345")["Body"].read() == b"v1"
    assert "dvc/files/md5/01/2345" in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    for refused in (lambda: s3.put_object(Bucket=bucket, Key="dvc/files/md5/01/2345", Body=b"tampered"),
                    lambda: s3.delete_object(Bucket=bucket, Key="dvc/files/md5/01/2345"),
                    lambda: s3.get_object(Bucket="mlplane-artifacts", Key="x")):
        with pytest.raises(ClientError, match="AccessDenied"):
            refused()
    assert s3.get_object(Bucket=bucket, Key="dvc/files/md5/01/2345")["Body"].read() == b"v1"
