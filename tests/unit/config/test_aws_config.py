"""The AWS target's config refuses what AWS would refuse at apply time: each problem names the
field, what was given and what is allowed (review of issue 11, should-fix 5 and blocker 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from mlplane.config import ConfigError, parse_platform
from mlplane.config.aws import LOG_RETENTION_DAYS, admin_label
from mlplane.config.scalars import BUCKET_RESERVED_PREFIXES, BUCKET_RESERVED_SUFFIXES

ACCOUNT = "123456789012"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0d4b1f9e-1111-2222-3333-444455556666"
CERT = f"arn:aws:acm:eu-west-1:{ACCOUNT}:certificate/0d4b1f9e-1111-2222-3333-444455556666"
ADOPTED = {
    "mode": "existing",
    "existing": {"vpc_id": "vpc-0a1b2c3d4e5f67890", "private_subnet_ids": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]},
}


def raw(**aws: Any) -> dict[str, Any]:
    return {"target": "aws", "aws": {"region": "eu-west-1", **aws}, "routing": {"tls": {"plain_http": True}}}


def problem(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_platform(config)
    (only,) = caught.value.problems
    return only


@pytest.mark.parametrize("days", [2, 6, 366, 3652])
def test_a_log_retention_cloudwatch_refuses_is_refused_with_the_allowed_values(days):
    text = problem(raw(eks={"log_retention_days": days}))
    assert text.startswith("mlplane:platform.aws.eks.log_retention_days:")
    assert f"{days} is not a retention CloudWatch Logs accepts" in text
    assert "1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653" in text


@pytest.mark.parametrize("days", LOG_RETENTION_DAYS)
def test_every_retention_cloudwatch_accepts_is_accepted(days):
    assert parse_platform(raw(eks={"log_retention_days": days})).aws.eks.log_retention_days == days


def test_a_kms_alias_arn_is_refused_and_the_key_arn_asked_for():
    text = problem(raw(kms_key_arn=f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/platform"))
    assert text.startswith("mlplane:platform.aws.kms_key_arn:")
    assert "is an alias ARN; give the key's ARN" in text and "describe-key" in text


def test_a_kms_key_of_another_region_is_refused():
    text = problem(raw(kms_key_arn=KEY.replace("eu-west-1", "us-east-1")))
    assert "kms_key_arn: the key is in region 'us-east-1' but the stack runs in 'eu-west-1'" in text


def test_a_kms_key_of_the_stacks_region_is_accepted():
    assert parse_platform(raw(kms_key_arn=KEY)).aws.kms_key_arn == KEY


def test_an_acm_certificate_of_another_region_is_refused():
    config = raw(routing={"certificate_arn": CERT.replace("eu-west-1", "us-east-1")})
    config["routing"] = {}
    text = problem(config)
    assert "routing.certificate_arn: the certificate is in region 'us-east-1' but the load balancer is in 'eu-west-1'" in text


def test_an_assumed_role_admin_is_refused_and_the_role_arn_suggested():
    text = problem(raw(eks={"admins": [f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice"]}))
    assert text.startswith("mlplane:platform.aws.eks.admins[0]:")
    assert "EKS access entries refuse" in text and f"'arn:aws:iam::{ACCOUNT}:role/Admin'" in text


def test_a_duplicate_admin_is_refused():
    admin = f"arn:aws:iam::{ACCOUNT}:role/platform-admins"
    text = problem(raw(eks={"admins": [admin, admin]}))
    assert text.startswith("mlplane:platform.aws.eks.admins:") and "is listed twice" in text


@pytest.mark.parametrize(
    "second", [f"arn:aws:iam::210987654321:role/ops", f"arn:aws:iam::{ACCOUNT}:role/team/ops", f"arn:aws:iam::{ACCOUNT}:role/OPS"]
)
def test_admins_whose_access_entries_would_share_a_name_are_refused(second):
    text = problem(raw(eks={"admins": [f"arn:aws:iam::{ACCOUNT}:role/ops", second]}))
    assert "share the name 'role-ops'" in text and "distinct role or user names" in text


def test_a_role_and_a_user_of_one_name_are_distinct_admins():
    admins = [f"arn:aws:iam::{ACCOUNT}:role/ops", f"arn:aws:iam::{ACCOUNT}:user/ops"]
    assert parse_platform(raw(eks={"admins": admins})).aws.eks.admins == admins


@pytest.mark.parametrize(
    "arn", [f"arn:aws:iam::{ACCOUNT}:role/ops", f"arn:aws:iam::{ACCOUNT}:role/a/b/Ops.Team", f"arn:aws:iam::{ACCOUNT}:user/x_y"]
)
def test_the_config_names_admins_as_the_cluster_names_their_access_entries(arn):
    from mlplane.targets.aws.eks import admin_suffix

    assert admin_label(arn) == admin_suffix(arn)


def test_an_adopted_cluster_needs_an_adopted_network():
    text = problem(raw(eks={"mode": "existing", "existing": {"cluster_name": "shared"}}))
    assert text.startswith("mlplane:platform.aws:")
    assert "eks.mode 'existing' needs network.mode 'existing'" in text


def test_an_adopted_cluster_in_an_adopted_network_is_accepted():
    config = parse_platform(raw(network=ADOPTED, eks={"mode": "existing", "existing": {"cluster_name": "shared"}}))
    assert config.aws.eks.mode == config.aws.network.mode == "existing"


def test_an_internet_facing_load_balancer_without_public_subnets_is_refused():
    text = problem(raw(network=ADOPTED, routing={"internet_facing": True}))
    assert "routing.internet_facing: an internet-facing load balancer needs public subnets" in text
    assert "network.existing.public_subnet_ids" in text


def test_an_internet_facing_load_balancer_in_adopted_public_subnets_is_accepted():
    network = json.loads(json.dumps(ADOPTED))
    network["existing"]["public_subnet_ids"] = ["subnet-0a1b2c3d4e5f60003", "subnet-0a1b2c3d4e5f60004"]
    assert parse_platform(raw(network=network, routing={"internet_facing": True})).aws.routing.internet_facing


@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1", "us-iso-east-1", "us-isob-east-1"])
def test_regions_outside_amazonaws_com_are_refused(region):
    text = problem({**raw(), "aws": {"region": region}})
    assert text.startswith("mlplane:platform.aws.region:")
    assert "not under amazonaws.com" in text and "allowed: the commercial and GovCloud regions" in text


def test_a_govcloud_region_is_accepted():
    assert parse_platform({**raw(), "aws": {"region": "us-gov-west-1"}}).aws.region == "us-gov-west-1"


@pytest.mark.parametrize(
    ("name", "why"), [("ml--plane", "no '--'"), ("1platform", "starts with a letter")]
)
def test_a_platform_name_rds_refuses_is_refused_on_aws(name, why):
    text = problem({**raw(), "name": name})
    assert text.startswith("mlplane:platform:") and f"name: '{name}'" in text and why in text


def test_a_name_with_two_hyphens_stays_valid_on_the_local_target():
    assert parse_platform({"name": "ml--plane"}).name == "ml--plane"


@pytest.mark.parametrize("bucket", [f"{p}data" for p in BUCKET_RESERVED_PREFIXES] + [f"data{s}" for s in BUCKET_RESERVED_SUFFIXES])
def test_bucket_names_s3_reserves_are_refused(bucket):
    text = problem({"object_storage": {"buckets": {"datasets": bucket}}})
    assert text.startswith("mlplane:platform.object_storage.buckets.datasets:")
    assert "reserved by S3" in text


def test_a_bucket_name_like_an_ip_address_is_refused():
    assert "may not look like an IP address" in problem({"object_storage": {"buckets": {"datasets": "192.168.5.4"}}})


def test_the_config_reserves_the_bucket_names_state_bootstrap_reserves():
    from mlplane.tooling import state_settings

    assert BUCKET_RESERVED_PREFIXES == state_settings.BUCKET_RESERVED_PREFIXES
    assert BUCKET_RESERVED_SUFFIXES == state_settings.BUCKET_RESERVED_SUFFIXES


def test_mlplane_validate_exits_2_naming_the_field(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(json.dumps(raw(kms_key_arn=f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/platform")))
    result = subprocess.run(
        [sys.executable, "-m", "mlplane", "validate", "--config", str(path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "aws.kms_key_arn" in result.stderr and "alias ARN" in result.stderr
    assert "Traceback" not in result.stderr
