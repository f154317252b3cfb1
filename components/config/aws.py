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
#: Regions whose endpoints are not under amazonaws.com (China: amazonaws.com.cn; the isolated
#: ISO partitions: their own suffixes; AWS General Reference, "Service endpoints"): the S3 and VPC
#: endpoint names of this target are written for amazonaws.com, so these are refused.
_OTHER_DNS_SUFFIX = re.compile(r"^(cn-|[a-z]{2}-iso[a-z]?-)")
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+$")
_KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/[\w-]+$")
_KMS_ALIAS = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias/[\w/-]+$")
_ACM_CERT = re.compile(r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]+$")
#: The retention values CloudWatch Logs accepts (CloudWatch Logs API Reference, PutRetentionPolicy
#: ``retentionInDays``; botocore ``logs/2014-03-28/service-2.json``, shape ``Days``).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$")
_DB_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"'{value}' is not an AWS region name (like 'eu-west-1' or 'us-east-2')")
    if _OTHER_DNS_SUFFIX.match(value):
        raise ValueError(
            f"'{value}' is in a partition whose endpoints are not under amazonaws.com (China, ISO), "
            "which this target does not support yet; allowed: the commercial and GovCloud regions"
        )
    return value


def _principal(value: str) -> str:
    assumed = _ASSUMED_ROLE.match(value)
    if assumed:
        partition, account, role = assumed.groups()
        raise ValueError(
            f"'{value}' is an assumed-role session, which EKS access entries refuse: give the role's ARN "
            f"instead, like 'arn:{partition}:iam::{account}:role/{role}' (with its path, if it has one)"
        )
    if not _IAM_PRINCIPAL.match(value):
        raise ValueError(
            f"'{value}' is not an IAM role or user ARN (like 'arn:aws:iam::123456789012:role/platform-admins')"
        )
    return value


def admin_label(principal_arn: str) -> str:
    """The label an admin's access entry is named by (``role-ops`` for ``...:role/team/ops``): two
    admins with the same label would get the same resource name. Mirrors
    ``mlplane.targets.aws.eks.admin_suffix`` (a test keeps them equal)."""
    kind, _, path = principal_arn.split(":", 5)[5].partition("/")
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{path.rsplit('/', 1)[-1]}".lower()).strip("-")


def _kms_key(value: str) -> str:
    if _KMS_ALIAS.match(value):
        raise ValueError(
            f"'{value}' is an alias ARN; give the key's ARN (like 'arn:aws:kms:eu-west-1:123456789012:key/...'): "
            "IAM policies name keys by key ARN, and an alias ARN there never matches "
            "(`aws kms describe-key --key-id <alias> --query KeyMetadata.Arn` prints it)"
        )
    if not _KMS_KEY.match(value):
        raise ValueError(f"'{value}' is not a KMS key ARN (like 'arn:aws:kms:eu-west-1:123456789012:key/...')")
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


def _retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        allowed = ", ".join(str(days) for days in LOG_RETENTION_DAYS)
        raise ValueError(f"{value} is not a retention CloudWatch Logs accepts; allowed days: {allowed}")
    return value


#: Instance families on AWS Graviton (arm64): ``a1`` and every family with a ``g`` right after its
#: generation digit (``m7g``, ``c7gn``, ``r8gd``, ``t4g``, ``x2gd``, ``im4gn``, ``is4gen``, ``g5g``,
#: ``hpc7g``; EC2 user guide, "Instance type naming conventions": the ``g`` attribute is "AWS
#: Graviton processors"). Every other family is x86_64.
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+g[a-z0-9-]*)$")


def instance_architecture(instance_type: str) -> Literal["x86_64", "arm64"]:
    """The CPU architecture of an EC2 instance type, from its family (the part before the dot)."""
    return "arm64" if _GRAVITON.match(instance_type.split(".", 1)[0]) else "x86_64"


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
LogRetentionDays = Annotated[int, AfterValidator(_retention)]


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

    @field_validator("instance_types")
    @classmethod
    def _one_architecture(cls, value: list[str]) -> list[str]:
        # A managed node group has one AMI type: its instance types share an architecture.
        kinds = {t: instance_architecture(t) for t in value}
        if len(set(kinds.values())) > 1:
            listed = ", ".join(f"{t} ({a})" for t, a in kinds.items())
            raise ValueError(
                f"{listed}: a node group's instance types must share one CPU architecture (its AMI "
                "is x86_64 or arm64); put Graviton (arm64) types in a group of their own"
            )
        return value


def _group(types: list[str], low: int, high: int, desired: int) -> NodeGroupConfig:
    return NodeGroupConfig(instance_types=types, min_size=low, max_size=high, desired_size=desired)


class GpuNodeGroupConfig(NodeGroupConfig):
    """An optional GPU node group, tainted `nvidia.com/gpu=present:NoSchedule`, with the NVIDIA device plugin."""

    enabled: bool = Field(default=False, description="Create the GPU group and the device plugin.")


class NodeGroupsConfig(_Model):
    """The cluster's managed node groups."""

    system: NodeGroupConfig = Field(
        default_factory=lambda: _group(["m7i.large"], 2, 4, 2),
        description=(
            "Platform services (tracking, monitoring, gateway, runners' controller) and the Cluster "
            "Autoscaler: min_size is at least 1 (the autoscaler cannot start a node it runs on)."
        ),
    )
    serving: NodeGroupConfig = Field(
        default_factory=lambda: _group(["m7i.xlarge"], 1, 10, 2),
        description="Model servers and CI job pods; scaled with load by the Cluster Autoscaler.",
    )
    gpu: GpuNodeGroupConfig = Field(
        default_factory=lambda: GpuNodeGroupConfig(instance_types=["g6.xlarge"], min_size=0, max_size=2, desired_size=0),
        description="GPU nodes for models that ask for `nvidia.com/gpu` (off by default).",
    )

    @field_validator("system")
    @classmethod
    def _system_runs(cls, value: NodeGroupConfig) -> NodeGroupConfig:
        if value.min_size < 1:
            raise ValueError(
                f"min_size is {value.min_size}; the system group runs the Cluster Autoscaler, which "
                "could never start a node for itself: min_size must be at least 1 (2 for a spare)"
            )
        return value


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
    log_retention_days: LogRetentionDays = Field(
        default=90,
        description=(
            "Days CloudWatch keeps the log groups the stack creates (control plane, VPC flow logs, RDS): "
            "one of the values CloudWatch accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, "
            "731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
        ),
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
        fix = "list the CIDR blocks of your offices or VPN, or leave the list empty for a private endpoint"
        for cidr in value:
            if ipaddress.ip_network(cidr).prefixlen == 0:
                raise ValueError(f"'{cidr}' opens the API endpoint to the whole internet; {fix}")
        # Blocks that together cover every address (0.0.0.0/1 and 128.0.0.0/1) open it as well.
        for version in (4, 6):
            blocks = [ipaddress.ip_network(c) for c in value if ipaddress.ip_network(c).version == version]
            merged = list(ipaddress.collapse_addresses(blocks))  # type: ignore[type-var]
            if merged and merged[0].prefixlen == 0:
                together = ", ".join(str(b) for b in blocks)
                raise ValueError(f"{together} together cover every address: the API endpoint would be open to the whole internet; {fix}")
        return value

    @field_validator("admins")
    @classmethod
    def _distinct_admins(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for arn in value:
            label = admin_label(arn)
            if label in seen:
                same = "is listed twice" if seen[label] == arn else f"and '{seen[label]}' share the name '{label}'"
                raise ValueError(
                    f"'{arn}' {same}: each admin's access entry is named after its kind and name, so "
                    "admins need distinct role or user names (list each principal once)"
                )
            seen[label] = arn
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

    @model_validator(mode="after")
    def _same_region(self) -> AwsConfig:
        key = _KMS_KEY.match(self.kms_key_arn or "")
        if key and key["region"] != self.region:
            raise ValueError(
                f"kms_key_arn: the key is in region '{key['region']}' but the stack runs in '{self.region}' "
                f"(EKS, S3, RDS and ECR use keys of their own region only): give a key of '{self.region}' "
                "(a multi-Region key's replica there), or omit kms_key_arn to create one"
            )
        certificate = _ACM_CERT.match(self.routing.certificate_arn or "")
        if certificate and certificate["region"] != self.region:
            raise ValueError(
                f"routing.certificate_arn: the certificate is in region '{certificate['region']}' but the load "
                f"balancer is in '{self.region}' (a load balancer uses certificates of its own region): "
                f"request or import the certificate in ACM in '{self.region}'"
            )
        return self

    @model_validator(mode="after")
    def _adoption(self) -> AwsConfig:
        if self.eks.mode == "existing" and self.network.mode != "existing":
            raise ValueError(
                "eks.mode 'existing' needs network.mode 'existing' with the adopted cluster's VPC and private "
                "subnets (network.mode 'create' would put the database and endpoints in a new VPC the "
                "cluster cannot reach)"
            )
        existing = self.network.existing
        if self.routing.internet_facing and existing is not None and not existing.public_subnet_ids:
            raise ValueError(
                "routing.internet_facing: an internet-facing load balancer needs public subnets, and the "
                "adopted network lists none: add network.existing.public_subnet_ids (tagged "
                "kubernetes.io/role/elb), or set routing.internet_facing: false"
            )
        return self

    @property
    def zones(self) -> list[str]:
        """The availability zones a created VPC spans."""
        return list(self.network.availability_zones) or [f"{self.region}a", f"{self.region}b"]
