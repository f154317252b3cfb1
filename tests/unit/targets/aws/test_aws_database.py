"""RDS PostgreSQL on the AWS target: one test per secure default, the outputs of the local
Database contract, the master password route, protection in and outside throwaway stacks."""

from __future__ import annotations

import pulumi
import pytest

from mlplane.targets.aws.database import AwsDatabase, master_password, parameter_family

from aws_backing_mocks import (  # noqa: F401 (aws_mocks: the fixture)
    KMS_KEY, MASTER_PASSWORD, MASTER_SECRET_ARN, REGION, aws_mocks, context, of_type, run,
)
from mlplane.tooling.render import SECRET_MASK

pytestmark = pytest.mark.usefixtures("aws_mocks")
NAME = "mlplane-database"


def render(throwaway: bool = False, raw: dict | None = None):
    def build():
        db = AwsDatabase(NAME, context(raw, protect=not throwaway))
        return {
            "db": db, "host": db.host, "port": db.port, "database": db.database, "username": db.username,
            "password": db.password, "sslmode": db.sslmode, "namespace": db.namespace,
            "password_plain": db.password.apply(lambda p: p),
            "password_value": pulumi.Output.unsecret(db.password),
        }

    return run(build)


def instance(result):
    return result.named(f"{NAME}-instance")


def test_postgresql_of_the_configured_version():
    result, _ = render(raw={"aws": {"region": REGION, "database": {"engine_version": "16.4"}}})
    assert instance(result).inputs["engine"] == "postgres"
    assert instance(result).inputs["engineVersion"] == "16.4"
    assert result.named(f"{NAME}-parameters").inputs["family"] == "postgres16"


def test_in_the_private_subnets():
    result, _ = render()
    subnets = result.named(f"{NAME}-subnets")
    assert subnets.inputs["subnetIds"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
    assert instance(result).inputs["dbSubnetGroupName"] == subnets.inputs["name"]


def test_not_publicly_accessible():
    result, _ = render()
    assert instance(result).inputs["publiclyAccessible"] is False


def test_security_group_admits_5432_from_the_cluster_only():
    result, _ = render()
    (rule,) = of_type(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (5432, 5432, "tcp")
    assert rule.inputs["referencedSecurityGroupId"] == "sg-0a1b2c3d4e5f67890"
    assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs
    group = result.named(f"{NAME}-security-group")
    assert not group.inputs.get("ingress") and not group.inputs.get("egress")


def test_storage_encrypted_with_the_platform_key():
    result, _ = render()
    assert instance(result).inputs["storageEncrypted"] is True
    assert instance(result).inputs["kmsKeyId"] == KMS_KEY


def test_gp3_storage_with_autoscaling():
    result, _ = render()
    inputs = instance(result).inputs
    assert inputs["storageType"] == "gp3"
    assert (inputs["allocatedStorage"], inputs["maxAllocatedStorage"]) == (20, 100)


def test_backups_kept_at_least_seven_days():
    result, _ = render()
    assert instance(result).inputs["backupRetentionPeriod"] >= 7
    result, _ = render(raw={"aws": {"region": REGION, "database": {"backup_retention_days": 14}}})
    assert instance(result).inputs["backupRetentionPeriod"] == 14


def test_multi_az_by_config():
    result, _ = render()
    assert instance(result).inputs["multiAz"] is False
    result, _ = render(raw={"aws": {"region": REGION, "database": {"multi_az": True}}})
    assert instance(result).inputs["multiAz"] is True


def test_master_password_managed_in_secrets_manager_with_the_platform_key():
    result, _ = render()
    inputs = instance(result).inputs
    assert inputs["manageMasterUserPassword"] is True
    assert inputs["masterUserSecretKmsKeyId"] == KMS_KEY
    assert "password" not in inputs


def test_parameter_group_forces_tls():
    result, _ = render()
    parameters = result.named(f"{NAME}-parameters")
    assert {"name": "rds.force_ssl", "value": "1"} in parameters.inputs["parameters"]
    assert instance(result).inputs["parameterGroupName"].startswith(parameters.inputs["namePrefix"])


def test_a_new_major_gets_a_new_parameter_group_and_is_allowed():
    """A fixed group name would collide when the family changes (review of issue 11, should-fix 7):
    the group is named from a prefix, its family follows the major, the instance may upgrade."""
    result, _ = render(raw={"aws": {"region": REGION, "database": {"engine_version": "16"}}})
    parameters = result.named(f"{NAME}-parameters")
    assert "name" not in parameters.inputs
    assert parameters.inputs["namePrefix"] == "mlplane-mlflow-"
    assert parameters.inputs["family"] == "postgres16"
    assert instance(result).inputs["allowMajorVersionUpgrade"] is True


def test_extended_support_is_not_enrolled():
    result, _ = render()
    assert instance(result).inputs["engineLifecycleSupport"] == "open-source-rds-extended-support-disabled"


def test_exported_logs_go_to_encrypted_log_groups_with_retention_created_first():
    result, _ = render(raw={"aws": {"region": REGION, "eks": {"log_retention_days": 365}}})
    exports = instance(result).inputs["enabledCloudwatchLogsExports"]
    assert exports == ["postgresql", "upgrade"]
    for log_type in exports:
        group = result.named(f"{NAME}-logs-{log_type}")
        assert group.inputs["name"] == f"/aws/rds/instance/mlplane-mlflow/{log_type}"
        assert group.inputs["kmsKeyId"] == KMS_KEY
        assert group.inputs["retentionInDays"] == 365
        assert group.urn in instance(result).depends_on


def test_performance_insights_encrypted():
    result, _ = render()
    inputs = instance(result).inputs
    assert inputs["performanceInsightsEnabled"] is True
    assert inputs["performanceInsightsKmsKeyId"] == KMS_KEY


def test_deletion_protection_and_final_snapshot_outside_throwaway():
    result, _ = render()
    inputs = instance(result).inputs
    assert inputs["deletionProtection"] is True
    assert inputs["skipFinalSnapshot"] is False
    assert inputs["finalSnapshotIdentifier"] == "mlplane-mlflow-final"


def test_instance_protected_and_retained_outside_throwaway():
    result, _ = render()
    assert instance(result).protect and instance(result).retain_on_delete


def test_throwaway_skips_protection_and_final_snapshot():
    result, _ = render(throwaway=True)
    inputs = instance(result).inputs
    assert inputs["deletionProtection"] is False and inputs["skipFinalSnapshot"] is True
    assert "finalSnapshotIdentifier" not in inputs
    assert not instance(result).protect and not instance(result).retain_on_delete


def test_master_secret_rotation_is_off_so_mlflow_keeps_working():
    result, _ = render()
    rotation = result.named(f"{NAME}-master-secret-rotation")
    assert rotation.inputs["secretId"] == MASTER_SECRET_ARN
    assert rotation.inputs["rotationEnabled"] is False


def test_outputs_of_the_local_contract():
    _, out = render()
    assert out["host"] == f"mlplane-mlflow.abcdefghij.{REGION}.rds.amazonaws.com"
    assert (out["port"], out["database"], out["username"]) == (5432, "mlflow", "mlflow")
    assert out["sslmode"] == "require"
    assert out["namespace"] == ""


def test_password_read_from_the_master_secret_stays_a_secret():
    _, out = render()
    assert out["password"] == SECRET_MASK
    assert out["password_plain"] == SECRET_MASK
    assert out["password_value"] == MASTER_PASSWORD


def test_master_password_parses_the_secret():
    assert master_password('{"username": "mlflow", "password": "p"}') == "p"
    for bad in ("not json", '{"username": "x"}', '{"password": ""}', "[]"):
        with pytest.raises(ValueError, match="RDS master user secret"):
            master_password(bad)
    assert MASTER_PASSWORD


def test_parameter_family():
    assert parameter_family("17") == "postgres17"
    assert parameter_family("16.4") == "postgres16"


def test_every_aws_resource_is_a_child_of_the_database():
    result, _ = render()
    db = result.named(NAME)
    assert db.type == "mlplane:aws:Database"
    for record in result.resources:
        if record.type.startswith("aws:"):
            assert record.parent == db.urn and record.name.startswith(f"{NAME}-")
