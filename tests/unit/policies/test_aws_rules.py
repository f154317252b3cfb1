"""The AWS rules (components/policies/aws_rules.py): each rule's pass and fail cases, on resources
built with the real pulumi-aws SDK and recorded by the offline render (so the type tokens and the
camelCase input names are the ones `mlplane plan` sees), and through the policy pack's adapters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from mlplane import policies
from mlplane.policies import Resource, Stack, UNKNOWN
from mlplane.policies import aws_rules
from mlplane.tooling.plan import resource_view
from mlplane.tooling.render import capture

from test_policies import pack_server, struct  # noqa: F401 (the policy pack process fixture and its helper)

STACK = Stack(name="prod")
THROWAWAY = Stack(name="laptop", throwaway=True)
AWS_POLICIES = [p for p in policies.POLICIES if p.name.startswith("aws-")]
TLS_ONLY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }],
})
ADMIN = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
SCOPED = json.dumps({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::data/*"}]})


def secure_program() -> None:
    import pulumi_aws as aws

    bucket = aws.s3.Bucket("data", bucket="acme-data")
    aws.s3.BucketPublicAccessBlock(
        "data-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
        ignore_public_acls=True, restrict_public_buckets=True,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        "data-encryption", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": "arn:aws:kms:eu-west-1:123456789012:key/k"}, "bucket_key_enabled": True}],
    )
    aws.s3.BucketPolicy("data-policy", bucket=bucket.id, policy=TLS_ONLY)
    aws.rds.Instance(
        "db", instance_class="db.t4g.medium", engine="postgres", allocated_storage=20, storage_encrypted=True,
        publicly_accessible=False, deletion_protection=True, skip_final_snapshot=False,
        final_snapshot_identifier="db-final", backup_retention_period=7,
    )
    aws.eks.Cluster(
        "cluster", role_arn="arn:aws:iam::123456789012:role/eks",
        vpc_config={"subnet_ids": ["subnet-1", "subnet-2"], "endpoint_private_access": True, "endpoint_public_access": False},
        encryption_config={"resources": ["secrets"], "provider": {"key_arn": "arn:aws:kms:eu-west-1:123456789012:key/k"}},
        enabled_cluster_log_types=["api", "audit", "authenticator"],
    )
    aws.ecr.Repository("repo", image_tag_mutability="IMMUTABLE", image_scanning_configuration={"scan_on_push": True})
    aws.iam.Role("role", assume_role_policy="{}", inline_policies=[{"name": "read", "policy": SCOPED}])
    aws.iam.RolePolicy("role-policy", role="role", policy=SCOPED)
    aws.ec2.SecurityGroup("lb", vpc_id="vpc-1", ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}])
    aws.vpc.SecurityGroupIngressRule("lb-http", security_group_id="sg-1", cidr_ipv4="0.0.0.0/0", ip_protocol="tcp", from_port=80, to_port=80)


def insecure_program() -> None:
    import pulumi_aws as aws

    aws.s3.Bucket("open", bucket="acme-open", acl="public-read")
    aws.rds.Instance("db", instance_class="db.t4g.medium", engine="postgres", allocated_storage=20, publicly_accessible=True, skip_final_snapshot=True)
    aws.eks.Cluster("cluster", role_arn="arn:aws:iam::123456789012:role/eks", vpc_config={"subnet_ids": ["subnet-1"]})
    aws.ecr.Repository("repo")
    aws.iam.Policy("admin", policy=ADMIN)
    aws.ec2.SecurityGroupRule("ssh", type="ingress", security_group_id="sg-1", protocol="tcp", from_port=22, to_port=22, cidr_blocks=["0.0.0.0/0"])


@pytest.fixture(scope="module")
def secure() -> list[Resource]:
    return [resource_view(r) for r in capture(secure_program).resources]


@pytest.fixture(scope="module")
def insecure() -> list[Resource]:
    return [resource_view(r) for r in capture(insecure_program).resources]


def aws(type_: str, name: str, **props: Any) -> Resource:
    return Resource(type=type_, name=name, urn=f"urn:pulumi:prod::p::{type_}::{name}", props=props)


def run(name: str, resource: Resource, stack: Stack = STACK) -> list[str]:
    check = policies.policy(name).resource_check
    assert check is not None
    return [p.message for p in check(resource, stack)]


def run_stack(name: str, resources: list[Resource], stack: Stack = STACK) -> list[policies.Problem]:
    check = policies.policy(name).stack_check
    assert check is not None
    return check(resources, stack)


# --------------------------------------------------------------------------------------------
# The rendered resources: tokens and input names as `mlplane plan` sees them
# --------------------------------------------------------------------------------------------


def test_the_rules_know_the_type_tokens_the_sdk_registers(secure):
    types = {r.type for r in secure}
    assert {
        "aws:s3/bucket:Bucket", aws_rules.PUBLIC_ACCESS_BLOCK, aws_rules.BUCKET_POLICY, aws_rules.RDS_INSTANCE,
        aws_rules.EKS_CLUSTER, aws_rules.ECR_REPOSITORY, aws_rules.IAM_ROLE, aws_rules.SECURITY_GROUP,
        aws_rules.SECURITY_GROUP_INGRESS_RULE, "aws:iam/rolePolicy:RolePolicy",
    } <= types
    assert types & aws_rules.SSE_CONFIGS


def test_a_secure_aws_stack_passes_every_aws_policy(secure):
    evaluation = policies.evaluate(secure, STACK, AWS_POLICIES)
    assert evaluation.violations == []
    assert evaluation.not_applicable == {}


def test_an_insecure_aws_stack_fails_each_policy_on_the_offending_resource(insecure):
    evaluation = policies.evaluate(insecure, STACK, AWS_POLICIES)
    found = {(v.policy, v.resource) for v in evaluation.violations}
    assert found == {
        ("aws-s3-block-public-access", "Bucket open"),
        ("aws-s3-no-public-grants", "Bucket open"),
        ("aws-s3-encryption", "Bucket open"),
        ("aws-rds-encrypted", "Instance db"),
        ("aws-rds-not-public", "Instance db"),
        ("aws-rds-deletion-protection", "Instance db"),
        ("aws-rds-backups", "Instance db"),
        ("aws-eks-private-endpoint", "Cluster cluster"),
        ("aws-eks-secrets-encryption", "Cluster cluster"),
        ("aws-eks-audit-logs", "Cluster cluster"),
        ("aws-ecr-immutable-tags", "Repository repo"),
        ("aws-ecr-scan-on-push", "Repository repo"),
        ("aws-iam-no-wildcard-admin", "Policy admin"),
        ("aws-security-group-open-ingress", "SecurityGroupRule ssh"),
    }
    assert all(v.enforcement == "mandatory" for v in evaluation.violations)


def test_every_aws_policy_is_mandatory_and_documented():
    assert len(AWS_POLICIES) == 14
    for item in AWS_POLICIES:
        assert item.enforcement == policies.MANDATORY
        assert "aws:" in item.applies_to and item.rationale and item.remediation


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------


def bucket(name: str = "data", **props: Any) -> Resource:
    return aws("aws:s3/bucket:Bucket", name, bucket=f"acme-{name}", **props)


def block(target: Resource | None, **flags: Any) -> Resource:
    values = {flag: True for flag in aws_rules.PUBLIC_ACCESS_FLAGS} | flags
    deps = {"bucket": (target.urn,)} if target is not None else {}
    return Resource(
        type=aws_rules.PUBLIC_ACCESS_BLOCK, name="block", urn="urn:pulumi:prod::p::block", props={"bucket": "data-id", **values},
        property_dependencies=deps,
    )


def test_bucket_without_public_access_block_fails_naming_the_bucket():
    problems = run_stack("aws-s3-block-public-access", [bucket()])
    assert [p.message for p in problems] == ["bucket data has no public-access block: a policy or ACL can make it public"]
    assert problems[0].resource is not None and problems[0].resource.name == "data"


def test_block_is_matched_by_dependency_or_by_bucket_name():
    data = bucket()
    assert run_stack("aws-s3-block-public-access", [data, block(data)]) == []
    by_name = aws(aws_rules.PUBLIC_ACCESS_BLOCK, "b", bucket="acme-data", **{f: True for f in aws_rules.PUBLIC_ACCESS_FLAGS})
    assert run_stack("aws-s3-block-public-access", [data, by_name]) == []
    other = bucket("other")
    assert [p.resource.name for p in run_stack("aws-s3-block-public-access", [data, other, block(data)])] == ["other"]


@pytest.mark.parametrize("flag", aws_rules.PUBLIC_ACCESS_FLAGS)
def test_each_public_access_setting_left_off_fails(flag):
    data = bucket()
    for value in (False, None):
        problems = run_stack("aws-s3-block-public-access", [data, block(data, **{flag: value})])
        assert [p.message for p in problems] == [f"public-access block leaves {flag} off: the bucket can be made public"]


def test_account_wide_block_covers_every_bucket():
    account = aws(aws_rules.ACCOUNT_PUBLIC_ACCESS_BLOCK, "account", **{f: True for f in aws_rules.PUBLIC_ACCESS_FLAGS})
    assert run_stack("aws-s3-block-public-access", [bucket(), account]) == []
    weak = aws(aws_rules.ACCOUNT_PUBLIC_ACCESS_BLOCK, "account", blockPublicAcls=True)
    assert len(run_stack("aws-s3-block-public-access", [bucket(), weak])) == 1


def policy_doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ["arn:aws:iam::123456789012:root", "*"]}])
def test_bucket_policy_allowing_everyone_fails(principal):
    document = policy_doc({"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::d/*"})
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", bucket="d", policy=document)) == [
        "policy statement 0 allows principal '*' with no condition limiting it to a VPC, account or organisation: the bucket is public"
    ]


def test_tls_only_deny_named_principals_and_scoped_conditions_pass():
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy=TLS_ONLY)) == []
    named = policy_doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/mlflow"}, "Action": "s3:*", "Resource": "*"})
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy=named)) == []
    vpce = policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                       "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}})
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy=vpce)) == []
    tls_only_allow = policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
                                 "Condition": {"Bool": {"aws:SecureTransport": "true"}}})
    assert len(run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy=tls_only_allow))) == 1


def test_policy_document_unknown_or_unreadable_is_skipped():
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy=UNKNOWN)) == []
    assert run("aws-s3-no-public-grants", aws(aws_rules.BUCKET_POLICY, "p", policy="not json")) == []


@pytest.mark.parametrize("acl", sorted(aws_rules.PUBLIC_CANNED_ACLS))
def test_public_canned_acls_fail_on_the_acl_resource_and_the_bucket(acl):
    assert run("aws-s3-no-public-grants", aws("aws:s3/bucketAcl:BucketAcl", "acl", bucket="d", acl=acl)) == [f"acl is '{acl}': everyone can read the bucket"]
    assert run("aws-s3-no-public-grants", bucket(acl=acl)) == [f"acl is '{acl}': everyone can read the bucket"]
    assert run("aws-s3-no-public-grants", bucket(acl="private")) == []


def test_acl_grant_to_all_users_fails():
    grants = {"grants": [{"grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"}, "permission": "READ"}],
              "owner": {"id": "o"}}
    assert run("aws-s3-no-public-grants", aws("aws:s3/bucketAcl:BucketAcl", "acl", accessControlPolicy=grants)) == [
        "ACL grants access to the AllUsers group"
    ]


def sse(target: Resource, algorithm: Any) -> Resource:
    return Resource(
        type="aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name="sse",
        urn="urn:pulumi:prod::p::sse", props={"bucket": "x", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}]},
        property_dependencies={"bucket": (target.urn,)},
    )


def test_bucket_without_encryption_configuration_fails():
    assert [p.message for p in run_stack("aws-s3-encryption", [bucket()])] == [
        "bucket data has no server-side encryption configuration: objects get only S3's default (SSE-S3), not the platform's KMS key"
    ]


def test_bucket_encrypted_with_kms_passes_and_with_s3_keys_fails():
    data = bucket()
    assert run_stack("aws-s3-encryption", [data, sse(data, "aws:kms")]) == []
    assert run_stack("aws-s3-encryption", [data, sse(data, "aws:kms:dsse")]) == []
    assert run_stack("aws-s3-encryption", [data, sse(data, UNKNOWN)]) == []
    assert [p.message for p in run_stack("aws-s3-encryption", [data, sse(data, "AES256")])] == [
        "bucket data is encrypted with AES256, not a KMS key (SSE-KMS): key use is neither restricted nor audited"
    ]
    inline = bucket(serverSideEncryptionConfiguration={"rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}})
    assert run_stack("aws-s3-encryption", [inline]) == []


def test_encryption_of_another_bucket_does_not_count():
    data, other = bucket(), bucket("other")
    assert [p.resource.name for p in run_stack("aws-s3-encryption", [data, other, sse(other, "aws:kms")])] == ["data"]


# --------------------------------------------------------------------------------------------
# RDS
# --------------------------------------------------------------------------------------------


def db(**props: Any) -> Resource:
    base = {"storageEncrypted": True, "publiclyAccessible": False, "deletionProtection": True, "skipFinalSnapshot": False,
            "finalSnapshotIdentifier": "db-final", "backupRetentionPeriod": 7.0}
    return aws(aws_rules.RDS_INSTANCE, "db", **(base | props))


def test_secure_database_passes_every_rds_rule():
    for name in ("aws-rds-encrypted", "aws-rds-not-public", "aws-rds-deletion-protection", "aws-rds-backups"):
        assert run(name, db()) == []


@pytest.mark.parametrize("value, shown", [(False, "False"), (None, "not set")])
def test_unencrypted_database_fails(value, shown):
    assert run("aws-rds-encrypted", db(storageEncrypted=value)) == [
        f"storageEncrypted is {shown}: the database, its backups and snapshots are stored unencrypted"
    ]
    cluster = aws(aws_rules.RDS_CLUSTER, "aurora", storageEncrypted=value)
    assert len(run("aws-rds-encrypted", cluster)) == 1


def test_publicly_accessible_database_fails():
    assert run("aws-rds-not-public", db(publiclyAccessible=True)) == [
        "publiclyAccessible is true: the database gets a public address and is reachable from outside the VPC"
    ]
    assert run("aws-rds-not-public", db(publiclyAccessible=None)) == []
    assert len(run("aws-rds-not-public", aws(aws_rules.RDS_CLUSTER_INSTANCE, "i", publiclyAccessible=True))) == 1


def test_database_without_deletion_protection_or_final_snapshot_fails_outside_throwaway():
    assert run("aws-rds-deletion-protection", db(deletionProtection=False)) == [
        "deletionProtection is False: a delete or a replacement drops the database"
    ]
    assert run("aws-rds-deletion-protection", db(skipFinalSnapshot=True)) == [
        "skipFinalSnapshot is true: deleting the database keeps no final snapshot"
    ]
    assert run("aws-rds-deletion-protection", db(finalSnapshotIdentifier=None)) == [
        "no finalSnapshotIdentifier: a delete cannot take the final snapshot (RDS refuses it, or it is skipped when forced)"
    ]
    assert run("aws-rds-deletion-protection", db(deletionProtection=False, skipFinalSnapshot=True), THROWAWAY) == []
    assert policies.policy("aws-rds-deletion-protection").inapplicable(THROWAWAY) is not None


@pytest.mark.parametrize("days, shown", [(None, "not set (RDS keeps 1 day)"), (1.0, "1 days"), (6, "6 days")])
def test_backups_under_seven_days_fail(days, shown):
    assert run("aws-rds-backups", db(backupRetentionPeriod=days)) == [
        f"backupRetentionPeriod is {shown}: fewer than 7 days of point-in-time recovery"
    ]


def test_backups_apply_in_throwaway_stacks_too_and_skip_read_replicas():
    assert len(run("aws-rds-backups", db(backupRetentionPeriod=1), THROWAWAY)) == 1
    assert run("aws-rds-backups", db(backupRetentionPeriod=None, replicateSourceDb="db-primary")) == []
    assert run("aws-rds-backups", db(backupRetentionPeriod=35)) == []


# --------------------------------------------------------------------------------------------
# EKS
# --------------------------------------------------------------------------------------------


def cluster(vpc: dict[str, Any] | None = None, **props: Any) -> Resource:
    base = {"encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"}},
            "enabledClusterLogTypes": ["api", "audit"], "vpcConfig": vpc if vpc is not None else {"endpointPublicAccess": False}}
    return aws(aws_rules.EKS_CLUSTER, "cluster", **(base | props))


def test_private_endpoint_and_allow_listed_public_endpoint_pass():
    assert run("aws-eks-private-endpoint", cluster()) == []
    assert run("aws-eks-private-endpoint", cluster({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]})) == []
    # Half the internet is a lot, but not all of it; a malformed entry is not counted.
    assert run("aws-eks-private-endpoint", cluster({"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/1", "bogus"]})) == []


@pytest.mark.parametrize("vpc, message", [
    ({}, "vpcConfig.endpointPublicAccess is not set (EKS defaults to a public endpoint) with no publicAccessCidrs: the API server is open to 0.0.0.0/0"),
    ({"endpointPublicAccess": True}, "vpcConfig.endpointPublicAccess is true with no publicAccessCidrs: the API server is open to 0.0.0.0/0"),
    ({"endpointPublicAccess": True, "publicAccessCidrs": []}, "vpcConfig.endpointPublicAccess is true with no publicAccessCidrs: the API server is open to 0.0.0.0/0"),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["10.0.0.0/8", "0.0.0.0/0"]}, "vpcConfig.publicAccessCidrs holds 0.0.0.0/0: the API server is open to the whole internet"),
    ({"publicAccessCidrs": ["::/0"]}, "vpcConfig.publicAccessCidrs holds ::/0: the API server is open to the whole internet"),
    # Blocks that add up to everything (review nit: only /0 was caught).
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
     "vpcConfig.publicAccessCidrs 0.0.0.0/1, 128.0.0.0/1 together cover every address: the API server is open to the whole internet"),
    ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"]},
     "vpcConfig.publicAccessCidrs 203.0.113.0/24, 0.0.0.0/2, 64.0.0.0/2, 128.0.0.0/1 together cover every address: the API server is open to the whole internet"),
])
def test_world_open_endpoint_fails(vpc, message):
    assert run("aws-eks-private-endpoint", cluster(vpc)) == [message]


def test_unknown_endpoint_settings_are_skipped():
    assert run("aws-eks-private-endpoint", cluster({"endpointPublicAccess": UNKNOWN})) == []


@pytest.mark.parametrize("config", [None, {"resources": ["secrets"], "provider": {}}, {"resources": [], "provider": {"keyArn": "k"}}])
def test_cluster_without_secrets_encryption_fails(config):
    assert run("aws-eks-secrets-encryption", cluster(encryptionConfig=config)) == [
        "encryptionConfig does not encrypt 'secrets' with a KMS key: Kubernetes Secrets rest in etcd without envelope encryption"
    ]


@pytest.mark.parametrize("types, shown", [(None, "not set"), (["api", "authenticator"], "['api', 'authenticator']")])
def test_cluster_without_audit_logs_fails(types, shown):
    assert run("aws-eks-audit-logs", cluster(enabledClusterLogTypes=types)) == [
        f"enabledClusterLogTypes is {shown}, without 'audit': who did what through the API server is not recorded"
    ]


# --------------------------------------------------------------------------------------------
# ECR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    (None, "not set (ECR defaults to MUTABLE)"), ("MUTABLE", "'MUTABLE'"), ("IMMUTABLE_WITH_EXCLUSION", "'IMMUTABLE_WITH_EXCLUSION'"),
])
def test_mutable_tags_fail(value, shown):
    assert run("aws-ecr-immutable-tags", aws(aws_rules.ECR_REPOSITORY, "repo", imageTagMutability=value)) == [
        f"imageTagMutability is {shown}: a pushed tag can be moved to another image, so a deployment pinned to it can change"
    ]
    assert run("aws-ecr-immutable-tags", aws(aws_rules.ECR_REPOSITORY, "repo", imageTagMutability="IMMUTABLE")) == []


def test_repository_without_scan_on_push_fails():
    assert run("aws-ecr-scan-on-push", aws(aws_rules.ECR_REPOSITORY, "repo")) == [
        "imageScanningConfiguration.scanOnPush is not set: pushed images are not scanned for known vulnerabilities"
    ]
    assert len(run("aws-ecr-scan-on-push", aws(aws_rules.ECR_REPOSITORY, "repo", imageScanningConfiguration={"scanOnPush": False}))) == 1
    assert run("aws-ecr-scan-on-push", aws(aws_rules.ECR_REPOSITORY, "repo", imageScanningConfiguration={"scanOnPush": True})) == []


# --------------------------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", sorted(aws_rules.IAM_POLICY_DOCUMENTS))
def test_star_on_star_fails_in_every_policy_document_resource(type_):
    assert run("aws-iam-no-wildcard-admin", aws(type_, "p", policy=ADMIN)) == [
        "policy statement 0 allows action '*' on resource '*': full control of the account"
    ]
    assert run("aws-iam-no-wildcard-admin", aws(type_, "p", policy=SCOPED)) == []


@pytest.mark.parametrize("statement, fails", [
    ({"Effect": "Allow", "Action": ["s3:GetObject", "*"], "Resource": ["*"]}, True),
    ({"Effect": "Allow", "Action": "*:*", "Resource": "*"}, True),
    ({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, False),
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::data/*"}, False),
    ({"Effect": "Deny", "Action": "*", "Resource": "*"}, False),
])
def test_only_allow_of_every_action_on_every_resource_fails(statement, fails):
    document = {"Version": "2012-10-17", "Statement": statement}  # a single statement object, and a dict document
    assert bool(run("aws-iam-no-wildcard-admin", aws("aws:iam/policy:Policy", "p", policy=document))) is fails


def test_role_inline_policies_and_administrator_access_fail():
    role = aws(aws_rules.IAM_ROLE, "role", inlinePolicies=[{"name": "ok", "policy": SCOPED}, {"name": "admin", "policy": ADMIN}])
    assert run("aws-iam-no-wildcard-admin", role) == [
        "inlinePolicies[1] 'admin' statement 0 allows action '*' on resource '*': full control of the account"
    ]
    managed = aws(aws_rules.IAM_ROLE, "role", managedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"])
    assert len(run("aws-iam-no-wildcard-admin", managed)) == 1
    attachment = aws("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a", role="r", policyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    assert run("aws-iam-no-wildcard-admin", attachment) == [
        "attaches arn:aws:iam::aws:policy/AdministratorAccess: every action on every resource"
    ]
    read_only = aws("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a", role="r", policyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert run("aws-iam-no-wildcard-admin", read_only) == []


# --------------------------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------------------------


def group(*ingress: dict[str, Any]) -> Resource:
    return aws(aws_rules.SECURITY_GROUP, "sg", ingress=list(ingress))


@pytest.mark.parametrize("rule, message", [
    ({"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["0.0.0.0/0"]}, "ingress[0] opens tcp port 22 to 0.0.0.0/0"),
    ({"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}, "ingress[0] opens all protocols and ports to 0.0.0.0/0"),
    ({"protocol": "tcp", "fromPort": 80, "toPort": 443, "ipv6CidrBlocks": ["::/0"]}, "ingress[0] opens tcp ports 80-443 to ::/0"),
    ({"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"]}, "ingress[0] opens tcp port 5432 to 0.0.0.0/0"),
])
def test_world_open_ports_other_than_http_fail(rule, message):
    assert run("aws-security-group-open-ingress", group(rule)) == [message]


def test_http_https_from_anywhere_and_other_ports_from_the_vpc_pass():
    assert run("aws-security-group-open-ingress", group(
        {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
        {"protocol": "tcp", "fromPort": 80, "toPort": 80, "ipv6CidrBlocks": ["::/0"]},
        {"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["10.40.0.0/16"]},
    )) == []


def test_separate_rule_resources_are_checked():
    rule = aws(aws_rules.SECURITY_GROUP_RULE, "r", type="ingress", protocol="tcp", fromPort=6443, toPort=6443, cidrBlocks=["0.0.0.0/0"])
    assert run("aws-security-group-open-ingress", rule) == ["the rule opens tcp port 6443 to 0.0.0.0/0"]
    egress = aws(aws_rules.SECURITY_GROUP_RULE, "r", type="egress", protocol="-1", fromPort=0, toPort=0, cidrBlocks=["0.0.0.0/0"])
    assert run("aws-security-group-open-ingress", egress) == []
    vpc_rule = aws(aws_rules.SECURITY_GROUP_INGRESS_RULE, "r", ipProtocol="-1", cidrIpv4="0.0.0.0/0")
    assert run("aws-security-group-open-ingress", vpc_rule) == ["the rule opens all protocols and ports to 0.0.0.0/0"]
    vpc_https = aws(aws_rules.SECURITY_GROUP_INGRESS_RULE, "r", ipProtocol="tcp", fromPort=443, toPort=443, cidrIpv6="::/0")
    assert run("aws-security-group-open-ingress", vpc_https) == []


# --------------------------------------------------------------------------------------------
# The policy pack: the same rules under the engine
# --------------------------------------------------------------------------------------------


def pack_policy(name: str, stack: Stack = STACK) -> Any:
    return next(p for p in policies.pack_policies(lambda: stack) if p.name == name)


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def policy_resource(resource: Resource) -> PolicyResource:
    props = unknown_checking_proxy(json.loads(json.dumps(dict(resource.props), default=str)))
    return PolicyResource(resource.type, props, resource.urn, resource.name, options(), None, None, [], {})


def test_pack_stack_policy_matches_a_block_through_property_dependencies():
    data = bucket()
    block_resource = policy_resource(block(None))
    bucket_resource = policy_resource(data)
    block_resource.property_dependencies["bucket"] = [bucket_resource]
    reported: list[tuple[str, Any]] = []
    pack_policy("aws-s3-block-public-access").validate(StackValidationArgs([bucket_resource, block_resource]), lambda m, urn=None: reported.append((m, urn)))
    assert reported == []
    pack_policy("aws-s3-block-public-access").validate(StackValidationArgs([bucket_resource]), lambda m, urn=None: reported.append((m, urn)))
    assert reported == [(
        "bucket data has no public-access block: a policy or ACL can make it public. Fix: add an "
        "s3.BucketPublicAccessBlock for the bucket with block_public_acls, block_public_policy, ignore_public_acls "
        "and restrict_public_buckets all true.",
        data.urn,
    )]


def test_pack_resource_policy_skips_a_policy_unknown_during_preview():
    from pulumi_policy import ResourceValidationArgs

    reported: list[str] = []
    for policy in (ADMIN, UNKNOWN_STRING_VALUE):
        args = ResourceValidationArgs("aws:iam/policy:Policy", unknown_checking_proxy({"policy": policy}), "urn:x", "admin", options(), None)
        pack_policy("aws-iam-no-wildcard-admin").validate(args, lambda m, urn=None: reported.append(m))
    assert len(reported) == 1 and reported[0].startswith("policy statement 0 allows action '*' on resource '*'")


# --------------------------------------------------------------------------------------------
# The example AWS stack (stacks/Pulumi.aws.yaml), rendered offline
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_stack() -> list[Resource]:
    import os
    from pathlib import Path

    from mlplane.config import versions
    from mlplane.tooling import plan

    root = Path(__file__).resolve().parents[3]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setattr(versions, "SUPPORTED_KUBERNETES", (versions.DEFAULT_KUBERNETES,))
        built = plan.build("aws", None)
    assert os.path.isdir(root / "stacks")
    return [resource_view(r) for r in built.capture.resources]


def test_example_aws_stack_passes_every_aws_policy_on_resources_it_renders(aws_stack):
    types = {r.type for r in aws_stack}
    # Each policy has something to check: a pass is not a pass by absence.
    assert {
        "aws:s3/bucket:Bucket", aws_rules.PUBLIC_ACCESS_BLOCK, aws_rules.BUCKET_POLICY, aws_rules.RDS_INSTANCE,
        aws_rules.EKS_CLUSTER, aws_rules.ECR_REPOSITORY, aws_rules.IAM_ROLE, aws_rules.SECURITY_GROUP,
    } <= types
    assert types & aws_rules.SSE_CONFIGS and types & aws_rules.IAM_POLICY_DOCUMENTS
    evaluation = policies.evaluate(aws_stack, STACK, AWS_POLICIES)
    assert evaluation.violations == []


def test_example_aws_stack_buckets_are_matched_to_their_own_blocks_and_encryption(aws_stack):
    buckets = [r for r in aws_stack if r.type == "aws:s3/bucket:Bucket"]
    blocks = [r for r in aws_stack if r.type == aws_rules.PUBLIC_ACCESS_BLOCK]
    encryption = [r for r in aws_stack if r.type in aws_rules.SSE_CONFIGS]
    for bucket in buckets:
        assert [b for b in blocks if aws_rules._refers_to(b, bucket)], bucket.name
        assert len([c for c in encryption if aws_rules._refers_to(c, bucket)]) == 1, bucket.name
    without = [r for r in aws_stack if r is not blocks[0]]
    problems = run_stack("aws-s3-block-public-access", without)
    assert len(problems) == 1 and problems[0].resource is not None and aws_rules._refers_to(blocks[0], problems[0].resource)


def test_example_aws_stack_database_and_cluster_fail_when_a_default_is_weakened(aws_stack):
    [db] = [r for r in aws_stack if r.type == aws_rules.RDS_INSTANCE]
    weakened = Resource(type=db.type, name=db.name, urn=db.urn, props={**db.props, "storageEncrypted": False, "backupRetentionPeriod": 1})
    assert len(run("aws-rds-encrypted", weakened)) == 1 and len(run("aws-rds-backups", weakened)) == 1
    [eks] = [r for r in aws_stack if r.type == aws_rules.EKS_CLUSTER]
    opened = Resource(type=eks.type, name=eks.name, urn=eks.urn,
                      props={**eks.props, "vpcConfig": {**eks.props["vpcConfig"], "endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}})
    assert run("aws-eks-private-endpoint", opened) == [
        "vpcConfig.publicAccessCidrs holds 0.0.0.0/0: the API server is open to the whole internet"
    ]


def test_default_security_group_ingress_is_checked():
    default = aws(aws_rules.DEFAULT_SECURITY_GROUP, "default", ingress=[{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}])
    assert run("aws-security-group-open-ingress", default) == ["ingress[0] opens all protocols and ports to 0.0.0.0/0"]
    assert run("aws-security-group-open-ingress", aws(aws_rules.DEFAULT_SECURITY_GROUP, "default")) == []


# --------------------------------------------------------------------------------------------
# The policy pack process, spoken to over gRPC as the engine does
# --------------------------------------------------------------------------------------------



@pytest.mark.servers
def test_pack_server_matches_a_bucket_to_its_block_through_property_dependencies(pack_server):
    from pulumi.runtime.proto import analyzer_pb2

    bucket_urn = "urn:pulumi:prod::acme-ml::aws:s3/bucket:Bucket::data"
    block_urn = "urn:pulumi:prod::acme-ml::aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock::data-block"
    flags = {flag: True for flag in aws_rules.PUBLIC_ACCESS_FLAGS}

    def analyze(dependencies: dict) -> set[tuple[str, str]]:
        resources = [
            analyzer_pb2.AnalyzerResource(type="aws:s3/bucket:Bucket", properties=struct({"bucket": "acme-data-1a2b3c4d"}), urn=bucket_urn, name="data"),
            analyzer_pb2.AnalyzerResource(
                type=aws_rules.PUBLIC_ACCESS_BLOCK, properties=struct({"bucket": UNKNOWN_STRING_VALUE, **flags}), urn=block_urn,
                name="data-block", propertyDependencies=dependencies,
            ),
        ]
        response = pack_server.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources))
        return {(d.policyName, d.urn) for d in response.diagnostics if d.policyName.startswith("aws-s3-block")}

    linked = {"bucket": analyzer_pb2.AnalyzerPropertyDependencies(urns=[bucket_urn])}
    assert analyze(linked) == set()
    assert analyze({}) == {("aws-s3-block-public-access", bucket_urn)}


@pytest.mark.servers
def test_pack_server_rejects_a_star_on_star_policy(pack_server):
    from pulumi.runtime.proto import analyzer_pb2

    response = pack_server.Analyze(analyzer_pb2.AnalyzeRequest(
        type="aws:iam/policy:Policy", properties=struct({"policy": ADMIN}), urn="urn:pulumi:prod::acme-ml::aws:iam/policy:Policy::admin", name="admin"))
    assert [(d.policyName, d.enforcementLevel) for d in response.diagnostics] == [("aws-iam-no-wildcard-admin", analyzer_pb2.MANDATORY)]
