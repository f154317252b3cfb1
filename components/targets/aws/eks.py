"""The EKS cluster (`mlplane:aws:Eks`): created with secure defaults, or adopted.

Created (``aws.eks.mode: create``):

- the control plane in the private subnets with a **private API endpoint**; a public one only
  for the CIDR blocks in ``aws.eks.public_access_cidrs`` (``0.0.0.0/0`` is refused by the config);
- Kubernetes Secrets **encrypted with the platform's KMS key** (envelope encryption);
- **every control-plane log** (api, audit, authenticator, controllerManager, scheduler) to the
  log group EKS writes to, ``/aws/eks/<cluster>/cluster``, created first with a retention and the
  KMS key (otherwise EKS creates it unencrypted and kept forever);
- authentication mode ``API``: **access entries** give ``aws.eks.admins`` the cluster admin
  access policy (the identity running ``pulumi up`` keeps the admin entry EKS creates for it, so
  the stack can manage the cluster's objects); no aws-auth ConfigMap;
- managed node groups ``system``, ``serving`` and (``gpu.enabled``) ``gpu``, tainted
  ``nvidia.com/gpu=present:NoSchedule``, each from a launch template that requires **IMDSv2 with
  a hop limit of 1** (pods cannot reach the node's credentials; they get their own through Pod
  Identity) and an **encrypted gp3 root volume**; the autoscaler owns their desired size;
- the add-ons vpc-cni (**enforcing NetworkPolicies**: ``enableNetworkPolicy``), coredns,
  kube-proxy, eks-pod-identity-agent and aws-ebs-csi-driver (the latter with its own Pod Identity
  role, allowed to use the KMS key for encrypted volumes), each at the default version EKS picks
  for the cluster's Kubernetes minor;
- the Cluster Autoscaler's IAM role (Pod Identity), allowed to resize only the Auto Scaling groups
  tagged as this cluster's (:mod:`mlplane.targets.aws.addons` runs the autoscaler).

Adopted (``mode: existing``): the cluster is looked up by name; nothing of it is created.
docs/aws.md explains every choice and the sizing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import yaml

from mlplane.config.aws import AwsConfig, NodeGroupConfig, instance_architecture
from mlplane.core import kube

TYPE = "mlplane:aws:Eks"
#: The control-plane log types EKS can send to CloudWatch (all of them).
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
#: Managed add-ons, at the default version EKS chooses for the cluster's minor (no addon_version:
#: a pin here would have to follow every EKS release, and `aws eks describe-addon-versions`
#: cannot be run offline). The EBS CSI driver gets its own role below.
ADDONS = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver")
#: Add-ons that run pods on the nodes: created after the node groups (the others must exist first).
NODE_ADDONS = ("coredns", "aws-ebs-csi-driver")
#: The EBS CSI controller's service account (aws-ebs-csi-driver add-on).
EBS_CSI_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
#: The Cluster Autoscaler's service account (mlplane.targets.aws.addons creates it).
AUTOSCALER_ACCOUNT = ("kube-system", "cluster-autoscaler")
#: Node label every managed node group sets: the group's role (system, serving, gpu); pods are
#: pinned by it (mlplane.core.kube.NodePlacement).
NODE_GROUP_LABEL = kube.NODE_GROUP
#: The GPU group's taint; pods asking for GPUs tolerate it (the NVIDIA device plugin does).
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
#: Amazon Linux 2023 AMIs for managed node groups (EKS AmiType values, the API reference's
#: Nodegroup amiType; the AWS CDK's NodegroupAmiType lists the same): (architecture, GPU) -> type.
#: The architecture comes from the group's instance family (mlplane.config.aws.instance_architecture).
AMI_TYPES = {
    ("x86_64", False): "AL2023_x86_64_STANDARD",
    ("arm64", False): "AL2023_ARM_64_STANDARD",
    ("x86_64", True): "AL2023_x86_64_NVIDIA",
    ("arm64", True): "AL2023_ARM_64_NVIDIA",
}
#: The vpc-cni add-on's configuration: its network policy agent enforces NetworkPolicy objects,
#: which it does not by default (EKS user guide, "Restrict Pod network traffic with Kubernetes
#: network policies": the add-on's ``enableNetworkPolicy``; aws/amazon-vpc-cni-k8s chart value of
#: the same name). Without it every default-deny, egress rule and team isolation is ignored.
#: Enforcing mode stays ``standard`` (the default): a new pod is reachable until its policies are
#: applied, while ``strict`` would also cut CoreDNS and the add-ons this platform does not police.
VPC_CNI_CONFIGURATION = json.dumps({"enableNetworkPolicy": "true"})
#: Add-ons configured here (the others run with EKS's defaults).
ADDON_CONFIGURATION = {"vpc-cni": VPC_CNI_CONFIGURATION}
#: Root device of the Amazon Linux 2023 EKS AMIs.
ROOT_DEVICE = "/dev/xvda"
#: AWS managed policies (arn:<partition>:iam::aws:policy/<name>).
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy")
EBS_CSI_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"


def assume_role_policy(service: str, *actions: str) -> str:
    """A trust policy letting an AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions) or "sts:AssumeRole"}
            ],
        }
    )


#: Pod Identity: the EKS Auth service assumes the role for a service account and tags the session.
POD_IDENTITY_TRUST = assume_role_policy("pods.eks.amazonaws.com", "sts:AssumeRole", "sts:TagSession")


def autoscaler_policy(cluster_name: str, partition: str, region: str, account: str) -> str:
    """The Cluster Autoscaler's permissions (kubernetes/autoscaler
    ``cluster-autoscaler/cloudprovider/aws/README.md``, "IAM Policy" and auto-discovery): reads
    unrestricted (describe calls take no resource), writes only on Auto Scaling groups tagged
    ``k8s.io/cluster-autoscaler/<cluster>`` (EKS tags a managed node group's group so), and
    ``eks:DescribeNodegroup`` (labels and taints of a group scaled from zero) on this cluster's."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Discover",
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "ResizeOwnGroups",
                    "Effect": "Allow",
                    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                    },
                },
                {
                    "Sid": "ReadOwnNodeGroups",
                    "Effect": "Allow",
                    "Action": ["eks:DescribeNodegroup"],
                    "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster_name}/*",
                },
            ],
        }
    )


def kms_volume_policy(key_arn: str) -> str:
    """What the EBS CSI driver needs to create and attach volumes encrypted with the platform key
    (AWS EKS user guide, "Store Kubernetes volumes with Amazon EBS", KMS key policy for the driver)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
                    "Resource": key_arn,
                    "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "kms:Encrypt",
                        "kms:Decrypt",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:DescribeKey",
                    ],
                    "Resource": key_arn,
                },
            ],
        }
    )


def admin_suffix(principal_arn: str) -> str:
    """A stable resource-name suffix for an admin principal: its kind and name (``role-ops``)."""
    kind, _, path = principal_arn.split(":", 5)[5].partition("/")
    label = re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{path.rsplit('/', 1)[-1]}".lower()).strip("-")
    return label


def kubeconfig(cluster_name: pulumi.Input[str], endpoint: pulumi.Input[str], ca_data: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """A kubeconfig for the cluster that authenticates with ``aws eks get-token`` (the AWS CLI v2,
    with the caller's credentials: no token is stored)."""

    def render(values: list[Any]) -> str:
        name, server, ca = values
        context = f"{name}"
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
                "users": [
                    {
                        "name": name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": ["eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"],
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
                "contexts": [{"name": context, "context": {"cluster": name, "user": name}}],
                "current-context": context,
            },
            sort_keys=False,
        )

    return pulumi.Output.all(cluster_name, endpoint, ca_data).apply(render)


@dataclass(frozen=True)
class EksArgs:
    #: The platform name: the cluster's name.
    platform_name: str
    config: AwsConfig
    provider: aws.Provider
    protect: bool
    kms_key_arn: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    #: AWS partition and account of the stack (aws.get_partition, aws.get_caller_identity).
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]


class Eks(pulumi.ComponentResource):
    """The cluster and how to reach it.

    Outputs: ``cluster_name``, ``endpoint``, ``security_group_id`` (the cluster security group
    EKS attaches to the control plane and the managed nodes), ``kubeconfig`` (secret),
    ``autoscaler_role_arn`` (None for an adopted cluster) and ``ready`` (what Kubernetes objects
    wait for: node groups and add-ons).
    """

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: EksArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self._provider = args.provider
        self.autoscaler_role_arn: pulumi.Output[str] | None = None
        self.ready: list[pulumi.Resource] = []
        self.node_groups: dict[str, aws.eks.NodeGroup] = {}
        eks = args.config.eks
        if eks.mode == "existing":
            existing = eks.existing
            assert existing is not None  # guaranteed by EksConfig validation
            cluster = aws.eks.get_cluster_output(
                name=existing.cluster_name, opts=pulumi.InvokeOutputOptions(provider=args.provider)
            )
            self.cluster_name = pulumi.Output.from_input(existing.cluster_name)
            self.endpoint = cluster.endpoint
            self.security_group_id = cluster.vpc_config.cluster_security_group_id
            ca = cluster.certificate_authorities[0].data
        else:
            created = self._create(name, args)
            self.cluster_name = created.name
            self.endpoint = created.endpoint
            self.security_group_id = created.vpc_config.cluster_security_group_id
            ca = created.certificate_authority.data
        self.kubeconfig = pulumi.Output.secret(kubeconfig(self.cluster_name, self.endpoint, ca, args.config.region))
        self.register_outputs(
            {"clusterName": self.cluster_name, "endpoint": self.endpoint, "securityGroupId": self.security_group_id}
        )

    def _opts(self, **extra: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **extra)  # type: ignore[arg-type]

    def _policy_arn(self, partition: pulumi.Input[str], policy: str) -> pulumi.Output[str]:
        return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy)

    def _role(self, name: str, trust: str, policies: tuple[str, ...], partition: pulumi.Input[str]) -> aws.iam.Role:
        role = aws.iam.Role(name, assume_role_policy=trust, opts=self._opts())
        for policy in policies:
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy.rsplit('/', 1)[-1].lower()}",
                role=role.name,
                policy_arn=self._policy_arn(partition, policy),
                opts=self._opts(),
            )
        return role

    def _create(self, name: str, args: EksArgs) -> aws.eks.Cluster:
        eks = args.config.eks
        cluster_name = args.platform_name
        role = self._role(
            f"{name}-cluster-role",
            assume_role_policy("eks.amazonaws.com", "sts:AssumeRole", "sts:TagSession"),
            CLUSTER_POLICIES,
            args.partition,
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            # The name EKS writes control-plane logs to: created first, with retention and the key.
            name=f"/aws/eks/{cluster_name}/cluster",
            retention_in_days=eks.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=self._opts(),
        )
        public = bool(eks.public_access_cidrs)
        cluster = aws.eks.Cluster(
            f"{name}-cluster",
            name=cluster_name,
            version=eks.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=public,
                public_access_cidrs=list(eks.public_access_cidrs) if public else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=args.kms_key_arn),
            ),
            enabled_cluster_log_types=list(LOG_TYPES),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            # Standard support only: a cluster left on an old minor is not silently billed for
            # extended support; upgrade it (docs/aws.md, "Upgrades").
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=args.protect,
            opts=self._opts(
                depends_on=[logs], protect=args.protect, retain_on_delete=args.protect
            ),
        )
        for principal in eks.admins:
            suffix = admin_suffix(principal)
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{suffix}",
                cluster_name=cluster.name,
                principal_arn=principal,
                type="STANDARD",
                opts=self._opts(),
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{suffix}-policy",
                cluster_name=cluster.name,
                principal_arn=principal,
                policy_arn=pulumi.Output.concat("arn:", args.partition, ":eks::aws:cluster-access-policy/", ADMIN_POLICY),
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=self._opts(depends_on=[entry]),
            )

        node_role = self._role(
            f"{name}-node-role", assume_role_policy("ec2.amazonaws.com"), NODE_POLICIES, args.partition
        )
        base = [
            aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=cluster.name,
                addon_name=addon,
                configuration_values=ADDON_CONFIGURATION.get(addon),
                # OVERWRITE on create too: EKS pre-installs vpc-cni, kube-proxy and CoreDNS
                # self-managed; their configuration becomes this one.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                opts=self._opts(),
            )
            for addon in ADDONS
            if addon not in NODE_ADDONS
        ]
        groups = eks.node_groups
        wanted: dict[str, NodeGroupConfig] = {"system": groups.system, "serving": groups.serving}
        if groups.gpu.enabled:
            wanted["gpu"] = groups.gpu
        for role_name, group in wanted.items():
            self.node_groups[role_name] = self._node_group(
                name, role_name, group, cluster, node_role, args, depends_on=base
            )
        nodes = list(self.node_groups.values())
        ebs_role = self._role(f"{name}-ebs-csi-role", POD_IDENTITY_TRUST, (EBS_CSI_POLICY,), args.partition)
        aws.iam.RolePolicy(
            f"{name}-ebs-csi-kms",
            role=ebs_role.id,
            policy=pulumi.Output.from_input(args.kms_key_arn).apply(kms_volume_policy),
            opts=self._opts(),
        )
        on_nodes = [
            aws.eks.Addon(
                f"{name}-coredns",
                cluster_name=cluster.name,
                addon_name="coredns",
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                opts=self._opts(depends_on=nodes),
            ),
            aws.eks.Addon(
                f"{name}-aws-ebs-csi-driver",
                cluster_name=cluster.name,
                addon_name="aws-ebs-csi-driver",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=[
                    aws.eks.AddonPodIdentityAssociationArgs(role_arn=ebs_role.arn, service_account=EBS_CSI_ACCOUNT[1])
                ],
                opts=self._opts(depends_on=[*nodes, *base]),
            ),
        ]
        autoscaler = aws.iam.Role(f"{name}-autoscaler-role", assume_role_policy=POD_IDENTITY_TRUST, opts=self._opts())
        aws.iam.RolePolicy(
            f"{name}-autoscaler-policy",
            role=autoscaler.id,
            policy=pulumi.Output.all(cluster.name, args.partition, args.account_id).apply(
                lambda v: autoscaler_policy(v[0], v[1], args.config.region, v[2])
            ),
            opts=self._opts(),
        )
        aws.eks.PodIdentityAssociation(
            f"{name}-autoscaler-identity",
            cluster_name=cluster.name,
            namespace=AUTOSCALER_ACCOUNT[0],
            service_account=AUTOSCALER_ACCOUNT[1],
            role_arn=autoscaler.arn,
            opts=self._opts(depends_on=base),
        )
        self.autoscaler_role_arn = autoscaler.arn
        self.ready = [*base, *nodes, *on_nodes]
        return cluster

    def _node_group(
        self,
        name: str,
        role_name: str,
        group: NodeGroupConfig,
        cluster: aws.eks.Cluster,
        node_role: aws.iam.Role,
        args: EksArgs,
        depends_on: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        template = aws.ec2.LaunchTemplate(
            f"{name}-{role_name}-template",
            description=f"{args.platform_name} {role_name} nodes: IMDSv2 only, encrypted gp3 root volume",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                # 1: a pod's network namespace is a hop away, so pods cannot read the node's
                # credentials; the Pod Identity agent and the VPC CNI use the host network.
                http_put_response_hop_limit=1,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=group.disk_size_gib,
                        encrypted="true",
                        kms_key_id=args.kms_key_arn,
                        delete_on_termination="true",
                    ),
                )
            ],
            update_default_version=True,
            opts=self._opts(),
        )
        taints = [aws.eks.NodeGroupTaintArgs(**GPU_TAINT)] if role_name == "gpu" else None
        return aws.eks.NodeGroup(
            f"{name}-{role_name}",
            cluster_name=cluster.name,
            node_group_name=role_name,
            # The nodes follow the control plane's minor: raising kubernetes_version rolls them
            # to that minor's AMI after the cluster is upgraded (the launch template names no AMI).
            version=cluster.version,
            node_role_arn=node_role.arn,
            subnet_ids=args.private_subnet_ids,
            ami_type=AMI_TYPES[(instance_architecture(group.instance_types[0]), role_name == "gpu")],
            capacity_type=group.capacity_type,
            instance_types=list(group.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=group.min_size, max_size=group.max_size, desired_size=group.desired_size
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
            labels={NODE_GROUP_LABEL: role_name},
            taints=taints,
            # The Cluster Autoscaler owns the desired size once the group exists.
            opts=self._opts(depends_on=depends_on, ignore_changes=["scalingConfig.desiredSize"]),
        )
