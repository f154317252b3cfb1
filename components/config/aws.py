"""The config of the AWS target (`target: aws`): network, EKS, and the managed services that back
the platform there (S3, RDS, ECR). The services on top (tracking, serving, runners, monitoring,
routing) keep their own sections; docs/aws.md explains every choice made here."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from mlplane.config import versions
from mlplane.config.scalars import DnsLabel, KubernetesMinor
from mlplane.config.blocks import _Model

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:(role|user|assumed-role)/[\w+=,.@/-]+$")
_KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]+$")
_ACM_CERT = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$")
_DB_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"'{value}' is not an AWS region name (like 'eu-west-1' or 'us-east-2')")
    return value


def _principal(value: str) -> str:
    if not _IAM_PRINCIPAL.match(value):
        raise ValueError(
            f"'{value}' is not an IAM role or user ARN (like 'arn:aws:iam::123456789012:role/platform-admins')"
        )
    return value


def _kms_key(value: str) -> str:
    if not _KMS_KEY.match(value):
        raise ValueError(f"'{value}' is not a KMS key or alias ARN (like 'arn:aws:kms:eu-west-1:123456789012:key/...')")
    return value


def _certificate(value: str) -> str:
    if not _ACM_CERT.match(value):
        raise ValueError(
            f"'{value}' is not an ACM certificate ARN (like 'arn:aws:acm:eu-west-1:123456789012:certificate/...')"
        )
    return value


def _instance_type(value: str) -> str:
    if not _INSTANCE_TYPE.match(value):
        raise ValueError(f"'{value}' is not an EC2 instance type (like 'm7i.large')")
    return value


def _cidr(value: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"'{value}' is not a CIDR block with its host bits zero ({err})") from None
    return str(network)


Region = Annotated[str, AfterValidator(_region)]
IamPrincipal = Annotated[str, AfterValidator(_principal)]
KmsKeyArn = Annotated[str, AfterValidator(_kms_key)]
CertificateArn = Annotated[str, AfterValidator(_certificate)]
InstanceType = Annotated[str, AfterValidator(_instance_type)]
Cidr = Annotated[str, AfterValidator(_cidr)]
AwsId = Annotated[str, Field(pattern=r"^[a-z]+-[0-9a-f]{8,17}$")]


class ExistingNetworkConfig(_Model):
    """A VPC and subnets that already exist and are adopted, not created."""

    vpc_id: AwsId = Field(description="The VPC, e.g. 'vpc-0a1b2c3d4e5f67890'.")
    private_subnet_ids: list[AwsId] = Field(
        min_length=2, description="Private subnets for nodes and the database, in at least two zones."
    )
    public_subnet_ids: list[AwsId] = Field(
        default_factory=list,
        description="Public subnets for an internet-facing load balancer (none: an internal one only).",
    )


class AwsNetworkConfig(_Model):
    """The VPC: created over at least two availability zones, or adopted."""

    mode: Literal["create", "existing"] = Field(
        default="create", description="'create' builds a VPC; 'existing' adopts one ('existing' block)."
    )
    cidr: Cidr = Field(default="10.40.0.0/16", description="IPv4 block of a created VPC (/16 to /20).")
    availability_zones: list[str] = Field(
        default_factory=list,
        max_length=6,
        description=(
            "Zones of a created VPC (at least two, in the region). Empty: the region's 'a' and 'b' zones."
        ),
    )
    nat: Literal["per_zone", "single"] = Field(
        default="per_zone",
        description=(
            "NAT gateways for the private subnets: one per zone (a zone outage does not cut egress), "
            "or a single one (cheaper; egress depends on one zone)."
        ),
    )
    endpoints: bool = Field(
        default=True,
        description="VPC endpoints for S3 (gateway), ECR and STS (interface): that traffic stays off the NAT.",
    )
    existing: ExistingNetworkConfig | None = Field(
        default=None, description="Settings for mode 'existing' (required there)."
    )

    @field_validator("cidr")
    @classmethod
    def _size(cls, value: str) -> str:
        prefix = ipaddress.ip_network(value).prefixlen
        if not 16 <= prefix <= 20:
            raise ValueError(f"'{value}' is a /{prefix}; a VPC block here is /16 to /20")
        return value

    @model_validator(mode="after")
    def _mode_settings(self) -> AwsNetworkConfig:
        if self.mode == "existing" and self.existing is None:
            raise ValueError("mode 'existing' needs an 'existing' block with 'vpc_id' and 'private_subnet_ids'")
        if self.mode == "create" and self.existing is not None:
            raise ValueError("'existing' is only used with mode 'existing' (mode is 'create')")
        if self.availability_zones and len(set(self.availability_zones)) < 2:
            raise ValueError(
                f"availability_zones: at least two distinct zones are needed, got {self.availability_zones}"
            )
        return self


class NodeGroupConfig(_Model):
    """A managed node group."""

    instance_types: list[InstanceType] = Field(min_length=1, description="EC2 instance types, first preferred.")
    min_size: int = Field(ge=0, le=1000, description="Fewest nodes.")
    max_size: int = Field(ge=1, le=1000, description="Most nodes the autoscaler may add.")
    desired_size: int = Field(ge=0, le=1000, description="Nodes at creation (the autoscaler owns it afterwards).")
    disk_size_gib: int = Field(default=50, ge=20, le=16384, description="Root volume (gp3, encrypted) per node.")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field(default="ON_DEMAND", description="EC2 purchase option.")

    @model_validator(mode="after")
    def _sizes(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy min_size <= desired_size <= max_size, got {self.min_size} <= "
                f"{self.desired_size} <= {self.max_size}"
            )
        return self


def _group(types: list[str], low: int, high: int, desired: int) -> NodeGroupConfig:
    return NodeGroupConfig(instance_types=types, min_size=low, max_size=high, desired_size=desired)


class GpuNodeGroupConfig(NodeGroupConfig):
    """An optional GPU node group, tainted `nvidia.com/gpu=present:NoSchedule`, with the NVIDIA device plugin."""

    enabled: bool = Field(default=False, description="Create the GPU group and the device plugin.")


class NodeGroupsConfig(_Model):
    """The cluster's managed node groups."""

    system: NodeGroupConfig = Field(
        default_factory=lambda: _group(["m7i.large"], 2, 4, 2),
        description="Platform services (tracking, monitoring, gateway, runners' controller).",
    )
    serving: NodeGroupConfig = Field(
        default_factory=lambda: _group(["m7i.xlarge"], 1, 10, 2),
        description="Model servers and CI job pods; scaled with load by the Cluster Autoscaler.",
    )
    gpu: GpuNodeGroupConfig = Field(
        default_factory=lambda: GpuNodeGroupConfig(instance_types=["g6.xlarge"], min_size=0, max_size=2, desired_size=0),
        description="GPU nodes for models that ask for `nvidia.com/gpu` (off by default).",
    )


class ExistingEksConfig(_Model):
    """An EKS cluster that already exists and is adopted, not created."""

    cluster_name: DnsLabel = Field(description="Name of the EKS cluster.")


class EksConfig(_Model):
    """The EKS cluster."""

    mode: Literal["create", "existing"] = Field(
        default="create", description="'create' builds the cluster; 'existing' adopts one ('existing' block)."
    )
    kubernetes_version: KubernetesMinor = Field(
        default=versions.DEFAULT_KUBERNETES,
        description="EKS Kubernetes minor (in EKS standard support; docs/aws.md). The local default, so both targets run the same API.",
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description=(
            "CIDR blocks allowed to reach a public API endpoint. Empty (the default): the endpoint "
            "is private, reachable from the VPC only. '0.0.0.0/0' is refused."
        ),
    )
    admins: list[IamPrincipal] = Field(
        default_factory=list,
        description="IAM roles or users given cluster admin through EKS access entries.",
    )
    node_groups: NodeGroupsConfig = Field(
        default_factory=NodeGroupsConfig, description="Managed node groups."
    )
    log_retention_days: int = Field(
        default=90, ge=1, le=3653, description="Retention of the control-plane logs in CloudWatch."
    )
    existing: ExistingEksConfig | None = Field(
        default=None, description="Settings for mode 'existing' (required there)."
    )

    @field_validator("kubernetes_version")
    @classmethod
    def _autoscaler_release(cls, value: str) -> str:
        if value not in versions.CLUSTER_AUTOSCALER_TAGS:
            known = ", ".join(sorted(versions.CLUSTER_AUTOSCALER_TAGS))
            raise ValueError(
                f"'{value}' has no Cluster Autoscaler release pinned yet (its minor must match the "
                f"cluster's); supported on AWS: {known}"
            )
        return value

    @field_validator("public_access_cidrs")
    @classmethod
    def _not_world(cls, value: list[str]) -> list[str]:
        for cidr in value:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                raise ValueError(
                    f"'{cidr}' opens the API endpoint to the whole internet; list the CIDR blocks "
                    "of your offices or VPN, or leave the list empty for a private endpoint"
                )
        return value

    @model_validator(mode="after")
    def _mode_settings(self) -> EksConfig:
        if self.mode == "existing" and self.existing is None:
            raise ValueError("mode 'existing' needs an 'existing' block with 'cluster_name'")
        if self.mode == "create" and self.existing is not None:
            raise ValueError("'existing' is only used with mode 'existing' (mode is 'create')")
        return self


class AwsStorageConfig(_Model):
    """S3 buckets (names and purposes from `object_storage.buckets`)."""

    noncurrent_version_days: int = Field(
        default=30, ge=1, le=3650, description="Days a replaced or deleted object version is kept."
    )


class RdsConfig(_Model):
    """RDS PostgreSQL behind MLflow."""

    instance_class: str = Field(default="db.t4g.medium", pattern=_DB_CLASS.pattern, description="DB instance class.")
    engine_version: str = Field(
        default="17", pattern=r"^\d{2}(\.\d+)?$", description="PostgreSQL major (minor upgrades are automatic)."
    )
    allocated_storage_gib: int = Field(default=20, ge=20, le=65536, description="Initial gp3 storage.")
    max_allocated_storage_gib: int = Field(
        default=100, ge=20, le=65536, description="Storage autoscaling ceiling."
    )
    multi_az: bool = Field(default=False, description="A standby in a second zone (about twice the cost).")
    backup_retention_days: int = Field(default=7, ge=7, le=35, description="Automated backups kept (7 to 35 days).")

    @model_validator(mode="after")
    def _storage(self) -> RdsConfig:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise ValueError(
                f"max_allocated_storage_gib ({self.max_allocated_storage_gib}) is below "
                f"allocated_storage_gib ({self.allocated_storage_gib})"
            )
        return self


class EcrConfig(_Model):
    """ECR repositories: one per team prefix and the platform's, tags immutable, scanned on push."""

    keep_images: int = Field(default=50, ge=1, le=1000, description="Tagged images each repository keeps.")
    untagged_days: int = Field(default=7, ge=1, le=365, description="Days untagged images are kept.")


class AwsRoutingConfig(_Model):
    """How the Gateway is exposed on AWS: a network load balancer in front of Envoy."""

    internet_facing: bool = Field(
        default=False,
        description="An internet-facing load balancer in the public subnets (default: internal to the VPC).",
    )
    certificate_arn: CertificateArn | None = Field(
        default=None,
        description=(
            "An ACM certificate the load balancer terminates TLS with. Without it, TLS ends at the "
            "Gateway with `routing.tls.certificate_secret` (bring your own, or cert-manager)."
        ),
    )
    source_ranges: list[Cidr] = Field(
        default_factory=list,
        description="CIDR blocks allowed to reach the load balancer (empty: the VPC only).",
    )


class AwsConfig(_Model):
    """Settings of the AWS target (required with `target: aws`)."""

    region: Region = Field(description="AWS region, e.g. 'eu-west-1'.")
    kms_key_arn: KmsKeyArn | None = Field(
        default=None,
        description="A customer-managed KMS key for EKS secrets, S3, RDS, ECR and logs. None: the stack creates one.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags added to every AWS resource.")
    network: AwsNetworkConfig = Field(default_factory=AwsNetworkConfig, description="The VPC.")
    eks: EksConfig = Field(default_factory=EksConfig, description="The EKS cluster.")
    storage: AwsStorageConfig = Field(default_factory=AwsStorageConfig, description="S3 buckets.")
    database: RdsConfig = Field(default_factory=RdsConfig, description="RDS PostgreSQL.")
    registry: EcrConfig = Field(default_factory=EcrConfig, description="ECR repositories.")
    routing: AwsRoutingConfig = Field(default_factory=AwsRoutingConfig, description="The load balancer.")

    @model_validator(mode="after")
    def _zones(self) -> AwsConfig:
        for zone in self.network.availability_zones:
            if not (zone.startswith(self.region) and len(zone) == len(self.region) + 1):
                raise ValueError(
                    f"network.availability_zones: '{zone}' is not a zone of region '{self.region}' "
                    f"(like '{self.region}a')"
                )
        return self

    @property
    def zones(self) -> list[str]:
        """The availability zones a created VPC spans."""
        return list(self.network.availability_zones) or [f"{self.region}a", f"{self.region}b"]
