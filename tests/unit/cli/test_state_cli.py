"""`mlplane state bootstrap|check`: the console script against moto's S3, KMS and STS server
(``moto.server.ThreadedMotoServer``, reached through ``AWS_ENDPOINT_URL``): the table and the JSON,
the login command and the secrets provider, exit codes 0 / 1 / 2, never a traceback. The settings
themselves are pinned in tests/unit/tooling/test_state_backend.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def env(moto_url, tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **clean, "COLUMNS": "200", "AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }


def s3(env):
    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def mlplane(env, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "mlplane", "state", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_bootstrap_then_rerun_then_check(env):
    first = mlplane(env, "bootstrap", "--bucket", "cli-state-one")
    assert first.returncode == 0, first.stderr
    assert "created bucket cli-state-one in eu-west-1 with every setting" in first.stdout
    for setting in ("versioning", "encryption", "object ownership", "policy: TLS only", "public access: BlockPublicAcls", "kms key"):
        assert setting in first.stdout
    assert "pulumi login 's3://cli-state-one?region=eu-west-1'" in first.stdout
    assert "--secrets-provider 'awskms://alias/cli-state-one?region=eu-west-1'" in first.stdout

    again = mlplane(env, "bootstrap", "--bucket", "cli-state-one", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["result"] == "unchanged" and report["changed"] is False
    assert {row["status"] for row in report["settings"]} == {"ok"}
    assert report["login"] == "pulumi login 's3://cli-state-one?region=eu-west-1'"
    assert report["secrets_provider"] == "awskms://alias/cli-state-one?region=eu-west-1"

    check = mlplane(env, "check", "--bucket", "cli-state-one")
    assert check.returncode == 0 and "no change: bucket cli-state-one already has every setting" in check.stdout


def test_a_weak_bucket_exits_1_with_each_weakness_and_fix_repairs_it(env):
    client = s3(env)
    client.create_bucket(Bucket="cli-state-weak", CreateBucketConfiguration={"LocationConstraint": REGION}, ObjectOwnership="ObjectWriter")
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "Mine", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                                                      "Action": "s3:GetObject", "Resource": "arn:aws:s3:::cli-state-weak/*"}]}
    client.put_bucket_policy(Bucket="cli-state-weak", Policy=json.dumps(policy))

    weak = mlplane(env, "bootstrap", "--bucket", "cli-state-weak", "--no-kms", "--json")
    assert weak.returncode == 1
    rows = {row["setting"]: row for row in json.loads(weak.stdout)["settings"]}
    assert rows["versioning"] == {"setting": "versioning", "status": "weak", "found": "never enabled", "expected": "Enabled"}
    assert rows["object ownership"]["status"] == "weak" and rows["object ownership"]["found"] == "ObjectWriter"
    assert rows["policy: TLS only"]["status"] == "weak"
    assert client.get_bucket_versioning(Bucket="cli-state-weak").get("Status") is None  # nothing changed

    table = mlplane(env, "check", "--bucket", "cli-state-weak", "--no-kms")
    assert table.returncode == 1 and "weaker than expected" in table.stdout and "pulumi login" not in table.stdout

    fixed = mlplane(env, "bootstrap", "--bucket", "cli-state-weak", "--no-kms", "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "applied" in fixed.stdout and "PULUMI_CONFIG_PASSPHRASE" in fixed.stdout
    statements = json.loads(client.get_bucket_policy(Bucket="cli-state-weak")["Policy"])["Statement"]
    assert statements[0] == policy["Statement"][0] and statements[1]["Sid"] == "DenyInsecureTransport"
    assert mlplane(env, "check", "--bucket", "cli-state-weak", "--no-kms").returncode == 0


def test_check_of_a_missing_bucket_exits_1_and_creates_nothing(env):
    done = mlplane(env, "check", "--bucket", "cli-state-absent")
    assert done.returncode == 1 and "does not exist" in done.stdout
    assert "cli-state-absent" not in [b["Name"] for b in s3(env).list_buckets()["Buckets"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bootstrap", "--bucket", "Bad_Name"], "error: --bucket 'Bad_Name': not a valid S3 bucket name"),
        (["bootstrap", "--bucket", "cli-state-x", "--region", "mars-1"], "error: --region 'mars-1': not an S3 region known to botocore"),
        (["bootstrap", "--bucket", "cli-state-x", "--kms-key", "alias/aws/s3"], "error: --kms-key 'alias/aws/s3': alias/aws/ names AWS managed keys"),
        (["bootstrap", "--bucket", "cli-state-x", "--kms-key", "alias/bad alias"], "error: --kms-key 'alias/bad alias': not a valid KMS alias"),
        (["check", "--bucket", "cli-state-x", "--noncurrent-days", "0"], "error: --noncurrent-days 0: allowed 1-3650"),
        (["bootstrap", "--bucket", "cli-state-x", "--profile", "nobody"], "error: --profile 'nobody': no such profile"),
    ],
)
def test_bad_input_exits_2_and_creates_nothing(env, args, message):
    done = mlplane(env, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "cli-state-x" not in [b["Name"] for b in s3(env).list_buckets()["Buckets"]]


def test_no_region_anywhere_exits_2(env):
    env = {k: v for k, v in env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    done = mlplane(env, "check", "--bucket", "cli-state-x")
    assert done.returncode == 2 and "--region: not given" in done.stderr


def test_no_credentials_exits_1_with_a_clear_message(env):
    env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    done = mlplane(env, "check", "--bucket", "cli-state-x")
    assert done.returncode == 1 and "error: no AWS credentials found" in done.stderr


def test_the_state_commands_are_listed(env):
    done = subprocess.run([sys.executable, "-m", "mlplane", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "state" in done.stdout


def test_a_profile_is_used_and_written_into_both_urls(env, tmp_path):
    (tmp_path / "credentials").write_text("[state]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    done = mlplane(env, "bootstrap", "--bucket", "cli-state-profile", "--profile", "state", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend_url"] == "s3://cli-state-profile?region=eu-west-1&profile=state"
    assert report["secrets_provider"] == "awskms://alias/cli-state-profile?region=eu-west-1&profile=state"
