"""The AWS target's foundation (mlplane.targets.foundation): the AWS provider, the platform's KMS
key, the VPC (:mod:`.network`), EKS (:mod:`.eks`), the Kubernetes provider on it, the cluster add-ons
(:mod:`.addons`), the Gateway behind a network load balancer, and S3, RDS and ECR in place of the
bundled SeaweedFS, PostgreSQL and registry. docs/aws.md walks through all of it.

Children of the Platform: ``<name>-aws`` (the AWS provider), ``<name>-kms`` (a key, unless
``aws.kms_key_arn`` names one), ``<name>-network``, ``<name>-eks``, ``<name>-kubernetes``,
``<name>-addons``, then ``<name>-storage``, ``<name>-database`` and ``<name>-registry``.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from mlplane.config import PlatformConfig
from mlplane.config.aws import AwsConfig, AwsRoutingConfig
from mlplane.core import kube
from mlplane.services.routing import HTTP_PORT, Exposure
from mlplane.targets.aws.addons import ClusterAddons, ClusterAddonsArgs
from mlplane.targets.aws.context import AwsContext
from mlplane.targets.aws.database import AwsDatabase
from mlplane.targets.aws.eks import Eks, EksArgs
from mlplane.targets.aws.network import Network, NetworkArgs
from mlplane.targets.aws.object_storage import AwsObjectStorage
from mlplane.targets.aws.placement import node_placement
from mlplane.targets.aws.registry import AwsRegistry

#: Tag on every AWS resource (with ``aws.tags``): which platform it belongs to.
PLATFORM_TAG = "mlplane.dev/platform"
#: Envoy listens on the Gateway's HTTP port plus 10000 in its pod (Envoy Gateway maps privileged
#: listener ports so the proxy runs unprivileged; mlplane.services.routing).
ENVOY_HTTP_TARGET = HTTP_PORT + 10000
#: The TLS policy of the load balancer's listener with an ACM certificate: TLS 1.3 and 1.2 only
#: (Elastic Load Balancing, "Security policies for your Network Load Balancer").
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
#: Service annotations of the Kubernetes AWS cloud provider's load balancer controller, which EKS
#: runs in its control plane (kubernetes/cloud-provider-aws, "Service annotations").
LB = "service.beta.kubernetes.io/aws-load-balancer-"


def autoscaling_role_arn(partition: str, account: str) -> str:
    """EC2 Auto Scaling's service-linked role, which launches the managed node groups' instances."""
    return f"arn:{partition}:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


def key_policy(partition: str, account: str, region: str) -> str:
    """The platform key's policy: the account administers it through IAM (the default key policy),
    CloudWatch Logs encrypts the platform's log groups with it, and EC2 Auto Scaling's
    service-linked role uses it for the nodes' encrypted root volumes (EC2 Auto Scaling user
    guide, "Required AWS KMS key policy for use with encrypted volumes").

    The service-linked role is named in a condition (``aws:PrincipalArn``), not as the
    principal: KMS refuses a key policy whose principal does not exist yet
    (MalformedPolicyDocumentException, "invalid principals"), and that role only exists once the
    account has had an Auto Scaling group, so naming it would fail the first ``pulumi up`` in a
    fresh account (terraform-aws-modules/terraform-aws-eks#3013). Conditions are not checked for
    existence; ``aws:PrincipalArn`` and ``aws:PrincipalAccount`` match that one role of this
    account and nothing else, whatever policies other principals hold."""
    root = f"arn:{partition}:iam::{account}:root"
    only_autoscaling = {"StringEquals": {"aws:PrincipalArn": autoscaling_role_arn(partition, account), "aws:PrincipalAccount": account}}
    use = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
                {
                    "Sid": "CloudWatchLogs",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": use,
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account}:log-group:*"}
                    },
                },
                {"Sid": "AutoScalingVolumes", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": use, "Resource": "*",
                 "Condition": only_autoscaling},
                {
                    "Sid": "AutoScalingGrants",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": "kms:CreateGrant",
                    "Resource": "*",
                    "Condition": {**only_autoscaling, "Bool": {"kms:GrantIsForAWSResource": "true"}},
                },
            ],
        }
    )


def load_balancer_service(routing: AwsRoutingConfig, vpc_cidr: pulumi.Input[str]) -> dict[str, Any]:
    """The EnvoyProxy ``envoyService`` of the AWS target: a network load balancer, internal unless
    ``aws.routing.internet_facing``, reachable only from ``aws.routing.source_ranges`` (default:
    the VPC). With ``aws.routing.certificate_arn`` the load balancer terminates TLS on 443 with
    the ACM certificate and forwards to the Gateway's HTTP listener; port 80 is not exposed."""
    annotations = {f"{LB}type": "nlb", f"{LB}backend-protocol": "tcp"}
    if not routing.internet_facing:
        annotations[f"{LB}internal"] = "true"
    service: dict[str, Any] = {
        "type": "LoadBalancer",
        "externalTrafficPolicy": "Cluster",
        "loadBalancerSourceRanges": list(routing.source_ranges) or [vpc_cidr],
    }
    if routing.certificate_arn is not None:
        annotations.update(
            {f"{LB}ssl-cert": routing.certificate_arn, f"{LB}ssl-ports": "https", f"{LB}ssl-negotiation-policy": TLS_POLICY}
        )
        service["patch"] = {
            "type": "StrategicMerge",
            "value": {
                "spec": {
                    "ports": [
                        {"port": HTTP_PORT, "$patch": "delete"},
                        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": ENVOY_HTTP_TARGET},
                    ]
                }
            },
        }
    service["annotations"] = annotations
    return service


class AwsFoundation:
    """Builds the AWS foundation as children of the Platform (``parent``)."""

    storage_in_cluster = False
    #: ECR speaks HTTPS.
    registry_insecure = False
    http_port = HTTP_PORT

    def __init__(self, name: str, config: PlatformConfig, protect: bool, parent: pulumi.Resource):
        assert config.aws is not None  # guaranteed by PlatformConfig validation
        cfg: AwsConfig = config.aws
        self._config, self._protect = config, protect
        child = pulumi.ResourceOptions(parent=parent)
        tags = {PLATFORM_TAG: config.name, **cfg.tags}
        provider = aws.Provider(
            f"{name}-aws", region=cfg.region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags), opts=child
        )
        invoke = pulumi.InvokeOutputOptions(provider=provider, parent=parent)
        partition = aws.get_partition_output(opts=invoke).partition
        account = aws.get_caller_identity_output(opts=invoke).account_id
        on_aws = pulumi.ResourceOptions(parent=parent, provider=provider)

        if cfg.kms_key_arn is None:
            key = aws.kms.Key(
                f"{name}-kms",
                description=f"mlplane {config.name}: EKS secrets, S3, RDS, ECR, EBS volumes and logs",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=pulumi.Output.all(partition, account).apply(lambda v: key_policy(v[0], v[1], cfg.region)),
                opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(protect=protect, retain_on_delete=protect)),
            )
            aws.kms.Alias(f"{name}-kms-alias", name=f"alias/mlplane-{config.name}", target_key_id=key.key_id, opts=on_aws)
            kms_key_arn: pulumi.Output[str] = key.arn
        else:
            kms_key_arn = pulumi.Output.from_input(cfg.kms_key_arn)

        self.network = Network(
            f"{name}-network",
            NetworkArgs(
                platform_name=config.name, config=cfg, provider=provider, kms_key_arn=kms_key_arn,
                log_retention_days=cfg.eks.log_retention_days,
            ),
            child,
        )
        self.eks = Eks(
            f"{name}-eks",
            EksArgs(
                platform_name=config.name, config=cfg, provider=provider, protect=protect, kms_key_arn=kms_key_arn,
                private_subnet_ids=self.network.private_subnet_ids, partition=partition, account_id=account,
            ),
            child,
        )
        #: What the managed backing services build on.
        self.aws = AwsContext(
            name=config.name,
            config=cfg,
            provider=provider,
            protect=protect,
            kms_key_arn=kms_key_arn,
            vpc_id=self.network.vpc_id,
            vpc_cidr=self.network.vpc_cidr,
            private_subnet_ids=self.network.private_subnet_ids,
            public_subnet_ids=self.network.public_subnet_ids,
            cluster_name=self.eks.cluster_name,
            cluster_security_group_id=self.eks.security_group_id,
            tags=tags,
        )
        self.kubeconfig: pulumi.Output[str] | None = self.eks.kubeconfig
        existing = cfg.eks.existing
        #: The kubeconfig's context: the cluster's name (mlplane.targets.aws.eks.kubeconfig).
        self.cluster_name = existing.cluster_name if existing is not None else config.name
        self.context: str | None = self.cluster_name
        self.provider = k8s.Provider(
            f"{name}-kubernetes",
            kubeconfig=self.eks.kubeconfig,
            enable_server_side_apply=True,
            # Objects wait for the nodes and the add-ons (CoreDNS, the EBS CSI driver).
            opts=pulumi.ResourceOptions(parent=parent, depends_on=self.eks.ready),
        )
        #: Platform services on the system group, models and CI job pods on serving, GPU models on
        #: gpu (node_placement); none on an adopted cluster, whose nodes carry no such labels.
        self.placement = node_placement(config)
        self.exposure: Exposure | None = Exposure(
            service=load_balancer_service(cfg.routing, self.network.vpc_cidr),
            edge_tls=cfg.routing.certificate_arn is not None,
        )

    def install(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> None:
        """The cluster add-ons of a created cluster. An adopted cluster keeps its own: its default
        StorageClass, the way it grows and its device plugin are its owner's, and its node groups
        carry no role labels or Auto Scaling tags of this platform (docs/aws.md, "Adopting a
        cluster", lists what it must have)."""
        assert self._config.aws is not None
        if self._config.aws.eks.mode == "existing":
            return
        ClusterAddons(
            f"{name}-addons",
            ClusterAddonsArgs(
                config=self._config.aws, platform=platform, cluster_name=self.cluster_name,
                kms_key_arn=self.aws.kms_key_arn,
            ),
            opts,
        )

    def object_storage(
        self, name: str, platform: kube.Platform, gateway: kube.GatewayRef, opts: pulumi.ResourceOptions
    ) -> AwsObjectStorage:
        return AwsObjectStorage(name, self.aws, self._config.object_storage.buckets, not self._protect, opts)

    def database(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> AwsDatabase:
        return AwsDatabase(name, self.aws, opts)

    def registry(self, name: str, platform: kube.Platform, opts: pulumi.ResourceOptions) -> AwsRegistry:
        return AwsRegistry(name, self.aws, not self._protect, opts)

    def registry_egress(self) -> dict[str, Any] | None:
        """ECR (its API and the S3 layer store) over HTTPS, through the VPC endpoints."""
        return kube.internet_egress(443)

    def s3_egress(self, platform: kube.Platform) -> dict[str, Any]:
        """S3 over HTTPS (the gateway endpoint's addresses are S3's public ones)."""
        return kube.internet_egress(443)
