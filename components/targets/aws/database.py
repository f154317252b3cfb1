"""RDS PostgreSQL behind MLflow on the AWS target (docs/components/aws-database.md).

The instance runs ``aws.database.engine_version`` in the private subnets (a DB subnet group), behind
a security group that admits 5432 from the cluster's security group only, not publicly accessible,
storage gp3 and encrypted with the platform's KMS key, backups kept ``aws.database.backup_retention_days``
(7 or more), Multi-AZ by config, a parameter group forcing TLS (``rds.force_ssl=1``), Performance
Insights encrypted with the same key; outside throwaway stacks deletion protection, a final snapshot,
``protect`` and ``retain_on_delete``.

Its log exports go to log groups created first, encrypted with the key and kept
``aws.eks.log_retention_days`` (RDS would otherwise create them unencrypted and never expiring).
Extended Support is off (``engine_lifecycle_support``): a major version past the end of standard
support fails to create instead of being billed. The parameter group is named from a prefix and its
family follows the engine's major, so raising ``aws.database.engine_version`` to a new major creates
the new group before the instance moves to it (``allow_major_version_upgrade``).

The password: RDS generates and keeps the master password in Secrets Manager
(``manage_master_user_password``, encrypted with the platform's key); nothing of it is in the
program or the config. MLflow needs it in its database URI, so the program reads the secret's
current value (``aws.secretsmanager.get_secret_version_output``) and hands it on as a Pulumi
secret (encrypted in the state; the tracking server's Kubernetes Secret). RDS would rotate it every
7 days by default, which would cut MLflow off until the next ``pulumi up``: automatic rotation of
that secret is turned off (``aws.secretsmanager.SecretRotation`` with ``rotation_enabled=False``,
the pulumi-aws 7.51.1 documented way for "an RDS master user password secret"); rotate it on purpose
with ``aws rds modify-db-instance --rotate-master-user-password --apply-immediately`` and run
``pulumi up``, which reads the new value and rolls MLflow.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from mlplane.core import kube
from mlplane.targets.aws.context import AwsContext

TYPE = "mlplane:aws:Database"
PORT = 5432
DATABASE = "mlflow"
#: The master user (MLflow logs in as it); not one of RDS's reserved names (rdsadmin, postgres...).
USERNAME = "mlflow"
#: TLS is forced by the parameter group; ``require`` encrypts without checking the server's
#: certificate (``verify-full`` needs the RDS CA bundle in the MLflow image, which it does not carry).
SSLMODE = "require"
#: Days Performance Insights keeps data (7: the free retention; RDS User Guide, "Performance Insights").
PERFORMANCE_INSIGHTS_DAYS = 7
#: PostgreSQL logs to CloudWatch (RDS User Guide, "Publishing PostgreSQL logs to CloudWatch Logs").
LOG_EXPORTS = ("postgresql", "upgrade")
#: No paid RDS Extended Support: the default enrolls the instance (RDS API Reference,
#: CreateDBInstance ``EngineLifecycleSupport``; pulumi-aws 7.51.1 ``rds/instance.py``).
ENGINE_LIFECYCLE_SUPPORT = "open-source-rds-extended-support-disabled"


def log_group_name(identifier: str, log_type: str) -> str:
    """Where RDS publishes an exported log: ``/aws/rds/instance/<identifier>/<log type>`` (RDS User
    Guide, "Publishing database logs to Amazon CloudWatch Logs"; the name terraform-aws-modules/
    terraform-aws-rds pre-creates in ``modules/db_instance``)."""
    return f"/aws/rds/instance/{identifier}/{log_type}"


def parameter_family(engine_version: str) -> str:
    """The parameter group family of a PostgreSQL version: ``postgres<major>``."""
    return f"postgres{engine_version.split('.', 1)[0]}"


def master_password(secret_string: str) -> str:
    """The ``password`` of an RDS-managed master secret (a JSON object with username and password)."""
    try:
        value = json.loads(secret_string)["password"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("the RDS master user secret holds no JSON 'password'") from None
    if not isinstance(value, str) or not value:
        raise ValueError("the RDS master user secret holds an empty 'password'")
    return value


class AwsDatabase(pulumi.ComponentResource):
    """An RDS PostgreSQL instance and the credentials to reach it.

    The outputs of the local Database: ``host``, ``port``, ``database``, ``username``,
    ``password`` (secret), ``sslmode``, ``namespace`` (empty: nothing in the cluster); also
    ``master_secret_arn`` and ``instance``.
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    database: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    sslmode: pulumi.Output[str]
    namespace: pulumi.Output[str]

    def __init__(self, name: str, ctx: AwsContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        cfg = ctx.config.database
        identifier = f"{ctx.name}-mlflow"
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=identifier,
            description=f"mlplane {ctx.name}: the private subnets of MLflow's database",
            subnet_ids=ctx.private_subnet_ids,
            tags=dict(ctx.tags),
            opts=ctx.opts(self),
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-security-group",
            name=f"{identifier}-db",
            description=f"mlplane {ctx.name}: PostgreSQL from the EKS cluster only",
            vpc_id=ctx.vpc_id,
            tags=dict(ctx.tags),
            opts=ctx.opts(self),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-cluster",
            security_group_id=group.id,
            description="PostgreSQL from the cluster's nodes and pods",
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            referenced_security_group_id=ctx.cluster_security_group_id,
            tags=dict(ctx.tags),
            opts=ctx.opts(self),
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters",
            # A prefix, not a fixed name: a new major's group (another family) is created next to
            # the old one, which is deleted once the instance has moved (Pulumi replaces create-first).
            name_prefix=f"{identifier}-",
            family=parameter_family(cfg.engine_version),
            description=f"mlplane {ctx.name}: TLS required",
            parameters=[{"name": "rds.force_ssl", "value": "1"}],
            tags=dict(ctx.tags),
            opts=ctx.opts(self),
        )
        # Created before the instance exports to them: encrypted, with a retention.
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-logs-{log_type}",
                name=log_group_name(identifier, log_type),
                retention_in_days=ctx.config.eks.log_retention_days,
                kms_key_id=ctx.kms_key_arn,
                tags=dict(ctx.tags),
                opts=ctx.opts(self),
            )
            for log_type in LOG_EXPORTS
        ]
        protect = ctx.protect
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=identifier,
            engine="postgres",
            engine_version=cfg.engine_version,
            engine_lifecycle_support=ENGINE_LIFECYCLE_SUPPORT,
            auto_minor_version_upgrade=True,
            # A new major in the config is applied (with its parameter group), not refused.
            allow_major_version_upgrade=True,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gib,
            max_allocated_storage=cfg.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=ctx.kms_key_arn,
            db_name=DATABASE,
            username=USERNAME,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=ctx.kms_key_arn,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            backup_retention_period=cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=protect,
            skip_final_snapshot=not protect,
            final_snapshot_identifier=f"{identifier}-final" if protect else None,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=ctx.kms_key_arn,
            performance_insights_retention_period=PERFORMANCE_INSIGHTS_DAYS,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            tags=dict(ctx.tags),
            opts=ctx.stateful(self, depends_on=log_groups),
        )
        self.master_secret_arn = self.instance.master_user_secrets.apply(
            lambda secrets: secrets[0].secret_arn if secrets else None
        )
        aws.secretsmanager.SecretRotation(
            f"{name}-master-secret-rotation",
            secret_id=self.master_secret_arn,
            rotation_enabled=False,
            opts=ctx.opts(self),
        )
        secret = aws.secretsmanager.get_secret_version_output(
            secret_id=self.master_secret_arn, opts=pulumi.InvokeOutputOptions(provider=ctx.provider, parent=self)
        )
        self.host = self.instance.address
        self.port = pulumi.Output.from_input(PORT)
        self.database = pulumi.Output.from_input(DATABASE)
        self.username = pulumi.Output.from_input(USERNAME)
        self.password = pulumi.Output.secret(secret.secret_string.apply(master_password))
        self.sslmode = pulumi.Output.from_input(SSLMODE)
        self.namespace = pulumi.Output.from_input("")
        self.register_outputs(
            {
                "host": self.host,
                "port": self.port,
                "database": self.database,
                "username": self.username,
                "password": self.password,
            }
        )
