"""What every AWS component of the platform shares: the AWS provider, the network and cluster it
lands in, the KMS key and the tags. Built once by the AWS foundation (targets/aws/foundation.py)
and handed to the managed backing services (S3, RDS, ECR) and to the workload identities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from mlplane.config.aws import AwsConfig


@dataclass(frozen=True)
class AwsContext:
    #: The platform name: prefix of every AWS resource name.
    name: str
    config: AwsConfig
    #: The explicit AWS provider (region from the config, default tags on every resource).
    provider: aws.Provider
    #: Protect (and retain on delete) stateful resources: not `lifecycle.throwaway`.
    protect: bool
    #: The KMS key encrypting EKS secrets, S3, RDS, ECR and logs (created or the configured one).
    kms_key_arn: pulumi.Output[str]
    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    #: The EKS cluster's name (pod identity associations and access entries name it).
    cluster_name: pulumi.Output[str]
    #: The security group EKS attaches to the cluster's nodes and control plane: what RDS admits.
    cluster_security_group_id: pulumi.Output[str]
    tags: Mapping[str, str] = field(default_factory=dict)

    def opts(self, parent: pulumi.Resource, **extra: object) -> pulumi.ResourceOptions:
        """Options of an AWS child resource: parented, on the platform's AWS provider."""
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **extra)  # type: ignore[arg-type]

    def stateful(self, parent: pulumi.Resource, **extra: object) -> pulumi.ResourceOptions:
        """Options of a stateful AWS resource (bucket, database, repository, key): protected and
        retained on delete outside throwaway stacks."""
        return self.opts(parent, protect=self.protect, retain_on_delete=self.protect, **extra)
