"""The AWS foundation's secure defaults, one test per property, on the offline render (Pulumi mocks
through the render harness): network, EKS, node groups, add-ons, the load balancer, protection."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from mlplane.cli import load_platform, offline_run
from mlplane.config import ConfigError, parse_platform
from mlplane.config import versions
from mlplane.targets.aws import eks as eks_module
from mlplane.targets.aws.foundation import LB, key_policy

BASE: dict[str, Any] = {
    "target": "aws",
    "aws": {"region": "eu-west-1", "eks": {"admins": ["arn:aws:iam::123456789012:role/platform-admins"]}},
    "routing": {"domain": "ml.example.com", "tls": {"plain_http": True}},
}


def render(tmp_path, raw: dict[str, Any]):
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(raw))
    source, platform = load_platform(None, path)
    return offline_run(source, platform)


def merged(**aws: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(BASE))
    raw["aws"].update(aws)
    return raw


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    return render(tmp_path_factory.mktemp("default"), BASE)


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """Single NAT, public endpoint for one block, GPU group, internet-facing NLB with ACM, throwaway."""
    raw = merged(
        network={"nat": "single", "availability_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]},
        eks={"public_access_cidrs": ["203.0.113.0/24"], "node_groups": {"gpu": {
            "enabled": True, "instance_types": ["g6.xlarge"], "min_size": 0, "max_size": 2, "desired_size": 0}}},
        routing={"internet_facing": True, "source_ranges": ["198.51.100.0/24"],
                 "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0d4b1f9e-1111-2222-3333-444455556666"},
    )
    raw["routing"] = {"domain": "ml.example.com"}
    raw["lifecycle"] = {"throwaway": True}
    return render(tmp_path_factory.mktemp("variant"), raw)


@pytest.fixture(scope="module")
def adopted(tmp_path_factory):
    raw = merged(
        network={"mode": "existing", "existing": {
            "vpc_id": "vpc-0a1b2c3d4e5f67890",
            "private_subnet_ids": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]}},
        eks={"mode": "existing", "existing": {"cluster_name": "shared"}},
    )
    return render(tmp_path_factory.mktemp("adopted"), raw)


def of_type(result, token: str) -> list[Any]:
    return [r for r in result.resources if r.type == token]


def one(result, token: str) -> Any:
    found = of_type(result, token)
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def manifest(result, kind: str, name: str) -> dict[str, Any]:
    return next(m for m in result.manifests() if m["kind"] == kind and m["metadata"]["name"] == name)


# ------------------------------------------------------------------------------------ network


def test_the_vpc_spans_two_zones_with_private_and_public_subnets(default):
    subnets = of_type(default, "aws:ec2/subnet:Subnet")
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == ["eu-west-1a", "eu-west-1a", "eu-west-1b", "eu-west-1b"]


def test_private_subnets_are_tagged_for_internal_load_balancers(default):
    private = [s for s in of_type(default, "aws:ec2/subnet:Subnet") if "-private-" in s.name]
    assert len(private) == 2 and all(s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in private)


def test_public_subnets_are_tagged_for_load_balancers_and_hand_out_no_public_ips(default):
    public = [s for s in of_type(default, "aws:ec2/subnet:Subnet") if "-public-" in s.name]
    assert len(public) == 2
    assert all(s.inputs["tags"]["kubernetes.io/role/elb"] == "1" for s in public)
    assert all(s.inputs.get("mapPublicIpOnLaunch") is False for s in of_type(default, "aws:ec2/subnet:Subnet"))


def test_a_nat_gateway_per_zone_by_default_and_one_when_single(default, variant):
    assert len(of_type(default, "aws:ec2/natGateway:NatGateway")) == 2
    assert len(of_type(variant, "aws:ec2/natGateway:NatGateway")) == 1
    # Every private zone still routes to it.
    assert len([t for t in of_type(variant, "aws:ec2/routeTable:RouteTable") if "-private-" in t.name]) == 3


def test_vpc_endpoints_keep_s3_ecr_sts_off_the_nat(default):
    endpoints = {e.inputs["serviceName"]: e.inputs["vpcEndpointType"] for e in of_type(default, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert endpoints == {
        "com.amazonaws.eu-west-1.s3": "Gateway",
        **{f"com.amazonaws.eu-west-1.{s}": "Interface" for s in ("ecr.api", "ecr.dkr", "sts", "ec2", "eks-auth")},
    }


def test_the_endpoint_security_group_admits_https_from_the_vpc_only_and_sends_nothing(default):
    group = one(default, "aws:ec2/securityGroup:SecurityGroup") if len(of_type(default, "aws:ec2/securityGroup:SecurityGroup")) == 1 else next(
        g for g in of_type(default, "aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-endpoints"))
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in group.inputs["ingress"]] == [(443, 443, ["10.40.0.0/16"])]
    assert group.inputs["egress"] == []


def test_the_default_security_group_has_no_rules(default):
    group = one(default, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not group.inputs.get("ingress") and not group.inputs.get("egress")


def test_flow_logs_go_to_an_encrypted_log_group_with_retention(default):
    log = one(default, "aws:ec2/flowLog:FlowLog")
    assert log.inputs["trafficType"] == "ALL"
    group = next(g for g in of_type(default, "aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("-flow-logs"))
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:") and group.inputs["retentionInDays"] == 90


def test_an_adopted_cluster_gets_no_add_ons_storage_class_or_autoscaler(adopted):
    """Blocker: adoption added a second default StorageClass, an autoscaler without AWS identity
    and (GPU) a device plugin to a cluster whose owner runs their own."""
    assert not of_type(adopted, "mlplane:aws:ClusterAddons")
    kinds = {(m["kind"], m["metadata"]["name"]) for m in adopted.manifests()}
    assert not {k for k in kinds if k[0] in ("StorageClass", "DaemonSet")}
    assert ("Deployment", "cluster-autoscaler") not in kinds
    assert not of_type(adopted, "aws:eks/podIdentityAssociation:PodIdentityAssociation") or all(
        a.inputs["serviceAccount"] != "cluster-autoscaler" for a in of_type(adopted, "aws:eks/podIdentityAssociation:PodIdentityAssociation"))


def test_an_adopted_network_and_cluster_create_neither(adopted):
    created = {r.type for r in adopted.resources}
    assert not created & {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:eks/cluster:Cluster",
                          "aws:eks/nodeGroup:NodeGroup"}
    assert "aws:rds/instance:Instance" in created  # the managed services still land in it


# ---------------------------------------------------------------------------------------- EKS


def test_the_api_endpoint_is_private_by_default(default):
    vpc = one(default, "aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True and vpc["endpointPublicAccess"] is False
    assert not vpc.get("publicAccessCidrs")


def test_a_public_endpoint_only_for_the_listed_blocks(variant):
    vpc = one(variant, "aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True and vpc["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_a_world_open_endpoint_is_refused():
    with pytest.raises(ConfigError, match="opens the API endpoint to the whole internet"):
        parse_platform(merged(eks={"public_access_cidrs": ["0.0.0.0/0"]}))


def test_secrets_are_encrypted_with_the_platform_key(default):
    encryption = one(default, "aws:eks/cluster:Cluster").inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"] and encryption["provider"]["keyArn"].startswith("arn:aws:kms:")


def test_every_control_plane_log_type_is_on_into_an_encrypted_group(default):
    cluster = one(default, "aws:eks/cluster:Cluster")
    assert cluster.inputs["enabledClusterLogTypes"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    group = next(g for g in of_type(default, "aws:cloudwatch/logGroup:LogGroup") if g.name.endswith("-eks-logs"))
    assert group.inputs["name"] == "/aws/eks/mlplane/cluster"
    assert group.inputs["retentionInDays"] == 90 and group.inputs["kmsKeyId"].startswith("arn:aws:kms:")


def test_admins_get_access_entries_with_the_cluster_admin_policy(default):
    cluster = one(default, "aws:eks/cluster:Cluster")
    assert cluster.inputs["accessConfig"]["authenticationMode"] == "API"
    entry = one(default, "aws:eks/accessEntry:AccessEntry")
    assert entry.name == "mlplane-eks-admin-role-platform-admins"
    association = one(default, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert association.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert association.inputs["accessScope"] == {"type": "cluster"}


def test_node_groups_system_and_serving_and_gpu_only_when_enabled(default, variant):
    assert sorted(g.inputs["nodeGroupName"] for g in of_type(default, "aws:eks/nodeGroup:NodeGroup")) == ["serving", "system"]
    groups = {g.inputs["nodeGroupName"]: g for g in of_type(variant, "aws:eks/nodeGroup:NodeGroup")}
    assert sorted(groups) == ["gpu", "serving", "system"]
    assert groups["gpu"].inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert groups["gpu"].inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert "taints" not in groups["serving"].inputs or not groups["serving"].inputs["taints"]


def test_nodes_require_imdsv2_with_a_hop_limit_of_one(default):
    for template in of_type(default, "aws:ec2/launchTemplate:LaunchTemplate"):
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required" and metadata["httpPutResponseHopLimit"] == 1


def test_node_root_volumes_are_encrypted_gp3(default):
    for template in of_type(default, "aws:ec2/launchTemplate:LaunchTemplate"):
        ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
        assert ebs["volumeType"] == "gp3" and ebs["encrypted"] == "true" and ebs["kmsKeyId"].startswith("arn:aws:kms:")


def test_the_vpc_cni_enforces_network_policies(default):
    """Blocker: the VPC CNI ignores NetworkPolicy objects unless its add-on enables the policy
    agent; every default-deny and team isolation depended on it."""
    cni = next(a for a in of_type(default, "aws:eks/addon:Addon") if a.inputs["addonName"] == "vpc-cni")
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert cni.inputs["resolveConflictsOnCreate"] == "OVERWRITE"


def test_node_groups_follow_the_cluster_version(default):
    for group in of_type(default, "aws:eks/nodeGroup:NodeGroup"):
        assert group.inputs["version"] == "1.35"


@pytest.mark.parametrize(("types", "gpu", "ami"), [
    (["m7g.large"], False, "AL2023_ARM_64_STANDARD"),
    (["c7gn.xlarge", "t4g.large"], False, "AL2023_ARM_64_STANDARD"),
    (["m7i.large"], False, "AL2023_x86_64_STANDARD"),
    (["g5g.xlarge"], True, "AL2023_ARM_64_NVIDIA"),
    (["g6.xlarge"], True, "AL2023_x86_64_NVIDIA"),
])
def test_the_ami_type_follows_the_instance_architecture(types, gpu, ami):
    from mlplane.config.aws import instance_architecture

    assert eks_module.AMI_TYPES[(instance_architecture(types[0]), gpu)] == ami


def test_graviton_groups_get_the_arm_ami(tmp_path):
    raw = merged(eks={"node_groups": {
        "serving": {"instance_types": ["m7g.xlarge"], "min_size": 1, "max_size": 3, "desired_size": 1},
        "gpu": {"enabled": True, "instance_types": ["g5g.xlarge"], "min_size": 0, "max_size": 1, "desired_size": 0}}})
    groups = {g.inputs["nodeGroupName"]: g.inputs["amiType"] for g in of_type(render(tmp_path, raw), "aws:eks/nodeGroup:NodeGroup")}
    assert groups == {"system": "AL2023_x86_64_STANDARD", "serving": "AL2023_ARM_64_STANDARD", "gpu": "AL2023_ARM_64_NVIDIA"}


def test_a_group_mixing_architectures_is_refused():
    with pytest.raises(ConfigError) as error:
        parse_platform(merged(eks={"node_groups": {"serving": {
            "instance_types": ["m7i.xlarge", "m7g.xlarge"], "min_size": 1, "max_size": 3, "desired_size": 1}}}))
    message = str(error.value)
    assert "aws.eks.node_groups.serving.instance_types" in message
    assert "m7i.xlarge (x86_64), m7g.xlarge (arm64)" in message and "one CPU architecture" in message


def test_a_system_group_that_may_shrink_to_zero_is_refused():
    with pytest.raises(ConfigError) as error:
        parse_platform(merged(eks={"node_groups": {"system": {
            "instance_types": ["m7i.large"], "min_size": 0, "max_size": 2, "desired_size": 1}}}))
    assert "aws.eks.node_groups.system" in str(error.value) and "min_size is 0" in str(error.value)


@pytest.mark.parametrize("cidrs", [
    ["0.0.0.0/1", "128.0.0.0/1"],
    ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"],
    ["::/1", "8000::/1"],
])
def test_blocks_that_together_cover_the_internet_are_refused(cidrs):
    with pytest.raises(ConfigError) as error:
        parse_platform(merged(eks={"public_access_cidrs": cidrs}))
    assert "aws.eks.public_access_cidrs" in str(error.value) and "together cover every address" in str(error.value)


def test_blocks_short_of_the_whole_internet_pass():
    parse_platform(merged(eks={"public_access_cidrs": ["0.0.0.0/1", "128.0.0.0/2"]}))


def test_the_managed_add_ons_are_installed_and_the_ebs_driver_has_its_pod_identity(default):
    addons = {a.inputs["addonName"]: a for a in of_type(default, "aws:eks/addon:Addon")}
    assert sorted(addons) == sorted(eks_module.ADDONS)
    association = addons["aws-ebs-csi-driver"].inputs["podIdentityAssociations"]
    assert association[0]["serviceAccount"] == "ebs-csi-controller-sa"


def test_pod_identity_roles_trust_only_eks_pods(default):
    roles = [r for r in of_type(default, "aws:iam/role:Role") if r.name in ("mlplane-eks-ebs-csi-role", "mlplane-eks-autoscaler-role")]
    assert len(roles) == 2
    for role in roles:
        statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert statement == [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                              "Action": ["sts:AssumeRole", "sts:TagSession"]}]


def test_the_autoscaler_may_resize_only_this_clusters_groups(default):
    policy = json.loads(next(p for p in of_type(default, "aws:iam/rolePolicy:RolePolicy") if p.name == "mlplane-eks-autoscaler-policy").inputs["policy"])
    writes = next(s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert writes["Condition"] == {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/mlplane": "owned"}}
    reads = next(s for s in policy["Statement"] if s["Resource"] == "*" and s["Effect"] == "Allow" and "Condition" not in s)
    assert all(":Describe" in a or ":Get" in a for a in reads["Action"])


def test_the_cluster_and_the_key_are_protected_outside_throwaway_stacks(default, variant):
    for result, protected in ((default, True), (variant, False)):
        cluster = one(result, "aws:eks/cluster:Cluster")
        key = one(result, "aws:kms/key:Key")
        assert cluster.protect is protected and cluster.retain_on_delete is protected
        assert cluster.inputs["deletionProtection"] is protected
        assert key.protect is protected


def test_the_platform_key_rotates(default):
    key = one(default, "aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30


def test_the_key_policy_lets_logs_and_auto_scaling_use_the_key():
    statements = {s["Sid"]: s for s in json.loads(key_policy("aws", "123456789012", "eu-west-1"))["Statement"]}
    assert statements["CloudWatchLogs"]["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    role = "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    for sid in ("AutoScalingVolumes", "AutoScalingGrants"):
        assert statements[sid]["Condition"]["StringEquals"] == {"aws:PrincipalArn": role, "aws:PrincipalAccount": "123456789012"}
    assert statements["AutoScalingGrants"]["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}


def test_the_key_policy_names_no_principal_that_may_not_exist_yet():
    """Blocker: KMS refuses a policy naming a role that does not exist, and Auto Scaling's
    service-linked role only exists after the account's first Auto Scaling group: a fresh account's
    first `pulumi up` failed. Principals are the account, a service, or '*' scoped to one ARN."""
    for statement in json.loads(key_policy("aws", "123456789012", "eu-west-1"))["Statement"]:
        principal = statement["Principal"]
        if "AWS" not in principal:
            continue
        if principal["AWS"] == "*":
            assert statement["Condition"]["StringEquals"]["aws:PrincipalArn"].endswith("/AWSServiceRoleForAutoScaling")
            assert statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] == "123456789012"
        else:
            assert principal["AWS"] == "arn:aws:iam::123456789012:root"


def test_a_configured_key_is_used_and_none_created(tmp_path):
    arn = "arn:aws:kms:eu-west-1:123456789012:key/0d4b1f9e-1111-2222-3333-444455556666"
    result = render(tmp_path, merged(kms_key_arn=arn))
    assert of_type(result, "aws:kms/key:Key") == []
    assert one(result, "aws:eks/cluster:Cluster").inputs["encryptionConfig"]["provider"]["keyArn"] == arn


def test_a_kubernetes_minor_without_an_autoscaler_release_is_refused():
    with pytest.raises(ConfigError, match="no Cluster Autoscaler release pinned"):
        parse_platform(merged(eks={"kubernetes_version": "1.37"}))


# -------------------------------------------------------------------------- cluster add-ons


def test_the_default_storage_class_is_encrypted_gp3_waiting_for_its_pod(default):
    storage_class = manifest(default, "StorageClass", "gp3")
    assert storage_class["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"]["type"] == "gp3" and storage_class["parameters"]["encrypted"] == "true"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage_class["reclaimPolicy"] == "Retain"


def test_the_autoscaler_image_matches_the_cluster_minor_and_discovers_this_cluster(default):
    deployment = manifest(default, "Deployment", "cluster-autoscaler")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith(f":{versions.CLUSTER_AUTOSCALER_TAGS['1.35']}")
    assert ("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            "k8s.io/cluster-autoscaler/mlplane") in container["args"]
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"mlplane.dev/node-group": "system"}


def test_the_device_plugin_runs_only_with_the_gpu_group_and_tolerates_its_taint(default, variant):
    assert not [m for m in default.manifests() if m["kind"] == "DaemonSet"]
    plugin = manifest(variant, "DaemonSet", "nvidia-device-plugin")["spec"]["template"]["spec"]
    assert plugin["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert plugin["nodeSelector"] == {"mlplane.dev/node-group": "gpu"}


# ------------------------------------------------------------------------------- routing


def envoy_service(result) -> dict[str, Any]:
    return manifest(result, "EnvoyProxy", "proxy")["spec"]["provider"]["kubernetes"]["envoyService"]


def test_the_gateway_is_behind_an_internal_nlb_reachable_from_the_vpc_by_default(default):
    service = envoy_service(default)
    assert service["type"] == "LoadBalancer"
    assert service["annotations"] == {f"{LB}type": "nlb", f"{LB}backend-protocol": "tcp", f"{LB}internal": "true"}
    assert service["loadBalancerSourceRanges"] == ["10.40.0.0/16"]
    assert "patch" not in service


def test_an_internet_facing_nlb_terminates_tls_with_the_acm_certificate(variant):
    service = envoy_service(variant)
    assert f"{LB}internal" not in service["annotations"]
    assert service["annotations"][f"{LB}ssl-cert"].startswith("arn:aws:acm:")
    assert service["annotations"][f"{LB}ssl-ports"] == "https"
    assert service["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
    ports = service["patch"]["value"]["spec"]["ports"]
    assert {"port": 80, "$patch": "delete"} in ports
    assert {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 10080} in ports


def test_ui_urls_are_https_when_the_load_balancer_terminates_tls(variant, default):
    assert variant.outputs["urls"]["mlflow"] == "https://mlflow.ml.example.com"
    assert default.outputs["urls"]["mlflow"] == "http://mlflow.ml.example.com"


def test_the_flow_log_role_trusts_only_this_accounts_flow_logs(default):
    role = next(r for r in of_type(default, "aws:iam/role:Role") if r.name.endswith("-flow-logs-role"))
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"].isdigit()
