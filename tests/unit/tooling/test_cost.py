"""The cost estimate of `mlplane plan` (components/tooling/cost.py) and its price table
(components/pricing/aws.json): every priced item from an offline render of real pulumi-aws and
Kubernetes resources, the team shares, what is not in the table, and the plan report's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlplane import policies
from mlplane.tooling import cost, plan
from mlplane.tooling.render import Capture, Recorded, capture

ROOT = Path(__file__).resolve().parents[3]
TABLE = cost.aws_prices()
EU = TABLE.regions["eu-west-1"]
HOURS = 730


def platform_program(region: str = "eu-west-1", *, serving_type: str = "m7i.xlarge", multi_az: bool = True) -> None:
    import pulumi
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s

    provider = aws.Provider("aws", region=region)
    opts = pulumi.ResourceOptions(provider=provider)
    aws.eks.Cluster("mlplane-eks", role_arn="arn:aws:iam::123456789012:role/eks", vpc_config={"subnet_ids": ["a", "b"]}, opts=opts)
    template = aws.ec2.LaunchTemplate(
        "mlplane-serving-template", block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {"volume_size": 50, "volume_type": "gp3"}}], opts=opts,
    )
    for role, instance, desired in (("system", "m7i.large", 2), ("serving", serving_type, 2)):
        aws.eks.NodeGroup(
            f"mlplane-eks-{role}", cluster_name="mlplane", node_group_name=role, node_role_arn="r", subnet_ids=["a", "b"],
            instance_types=[instance], scaling_config={"desired_size": desired, "min_size": 1, "max_size": 4},
            launch_template={"id": template.id, "version": "1"} if role == "serving" else None, opts=opts,
        )
    for zone in ("a", "b"):
        aws.ec2.Eip(f"mlplane-nat-{zone}-ip", domain="vpc", opts=opts)
        aws.ec2.NatGateway(f"mlplane-nat-{zone}", subnet_id=f"public-{zone}", allocation_id="eip", opts=opts)
    aws.ec2.VpcEndpoint("mlplane-ecr-api", vpc_id="v", service_name=f"com.amazonaws.{region}.ecr.api", vpc_endpoint_type="Interface",
                        subnet_ids=["a", "b", "c"], opts=opts)
    aws.ec2.VpcEndpoint("mlplane-s3", vpc_id="v", service_name=f"com.amazonaws.{region}.s3", vpc_endpoint_type="Gateway", opts=opts)
    aws.rds.Instance("mlplane-db", instance_class="db.t4g.medium", engine="postgres", allocated_storage=20, storage_type="gp3",
                     multi_az=multi_az, manage_master_user_password=True, opts=opts)
    aws.kms.Key("mlplane-key", opts=opts)
    aws.cloudwatch.LogGroup("mlplane-eks-logs", retention_in_days=90, opts=opts)
    aws.s3.Bucket("mlplane-artifacts", bucket="mlplane-artifacts", opts=opts)
    aws.s3.Bucket("mlplane-team-fraud-bucket", bucket="mlplane-team-fraud", tags={"mlplane.dev/team": "fraud"}, opts=opts)
    k8s.core.v1.Namespace("fraud-ns", metadata={"name": "mlplane-team-fraud", "labels": {"mlplane.dev/team": "fraud"}})
    k8s.core.v1.PersistentVolumeClaim(
        "fraud-data", metadata={"name": "data", "namespace": "mlplane-team-fraud"},
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    )
    k8s.apps.v1.StatefulSet(
        "prometheus", metadata={"name": "prometheus", "namespace": "mlplane-monitoring"},
        spec={"replicas": 2, "serviceName": "prometheus", "selector": {"matchLabels": {"app": "p"}},
              "template": {"metadata": {"labels": {"app": "p"}}, "spec": {"containers": [{"name": "p", "image": "p:1"}]}},
              "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}}}]},
    )
    k8s.core.v1.Service("gateway", metadata={"name": "envoy", "namespace": "mlplane-gateway"},
                        spec={"type": "LoadBalancer", "ports": [{"port": 443}]})
    k8s.core.v1.Service("internal", metadata={"name": "mlflow", "namespace": "mlplane-tracking"}, spec={"ports": [{"port": 5000}]})


def team_program() -> None:
    import pulumi_kubernetes as k8s

    for role, cpu, memory in (("work", "4", "8Gi"), ("serving", "2", "8Gi")):
        k8s.core.v1.ResourceQuota(
            f"team-fraud-{role}-quota",
            metadata={"name": "team-quota", "namespace": f"mlplane-team-fraud-{role}", "labels": {"mlplane.dev/team": "fraud"}},
            spec={"hard": {"requests.cpu": cpu, "requests.memory": memory, "limits.cpu": "16"}},
        )


@pytest.fixture(scope="module")
def rendered() -> Capture:
    return capture(platform_program)


@pytest.fixture(scope="module")
def estimate(rendered) -> cost.Estimate:
    result = cost.estimate(rendered)
    assert result is not None
    return result


def line(estimate: cost.Estimate, item: str, resource: str | None = None) -> cost.Line:
    found = [l for l in estimate.lines if l.item.startswith(item) and (resource is None or l.resource == resource)]
    assert len(found) == 1, [(l.item, l.resource) for l in estimate.lines]
    return found[0]


# --------------------------------------------------------------------------------------------
# The price table
# --------------------------------------------------------------------------------------------


def test_price_table_is_versioned_dated_and_says_where_its_prices_come_from():
    assert TABLE.version and TABLE.as_of and TABLE.currency == "USD"
    assert "aws.amazon.com" in TABLE.source and "Check before relying" in TABLE.source
    assert TABLE.hours_per_month == 730
    assert {"us-east-1", "eu-west-1"} <= set(TABLE.regions)


def test_every_region_prices_the_same_items_and_every_instance_has_its_size():
    keys = set(TABLE.regions["us-east-1"])
    for region, prices in TABLE.regions.items():
        assert set(prices) == keys, region
        for name, value in prices.items():
            values = value.values() if isinstance(value, dict) else [value]
            assert all(isinstance(v, (int, float)) and v > 0 for v in values), (region, name)
        assert set(prices["ec2_instance_hour"]) <= set(TABLE.instances), region


def test_the_defaults_of_the_aws_config_are_priced_in_every_region():
    from mlplane.config.aws import NodeGroupsConfig, RdsConfig

    groups = NodeGroupsConfig()
    for region, prices in TABLE.regions.items():
        for group in (groups.system, groups.serving):
            assert group.instance_types[0] in prices["ec2_instance_hour"], region
        assert RdsConfig().instance_class in prices["rds_postgres_instance_hour"], region


def test_the_table_ships_in_the_package():
    document = json.loads((ROOT / "components" / "pricing" / "aws.json").read_text())
    assert cost.PriceTable.from_json(document) == TABLE


# --------------------------------------------------------------------------------------------
# What is priced
# --------------------------------------------------------------------------------------------


def test_region_is_read_from_the_aws_provider(estimate):
    assert estimate.region == "eu-west-1"


def test_eks_control_plane_costs_a_cluster_hour_all_month(estimate):
    assert line(estimate, "EKS control plane").monthly == pytest.approx(HOURS * EU["eks_cluster_hour"])


def test_node_groups_are_priced_at_their_desired_size(estimate):
    system = line(estimate, "EKS nodes m7i.large")
    assert system.monthly == pytest.approx(2 * HOURS * EU["ec2_instance_hour"]["m7i.large"])
    assert system.quantity == "2 x 730 h"
    serving = line(estimate, "EKS nodes m7i.xlarge")
    assert serving.monthly == pytest.approx(2 * HOURS * EU["ec2_instance_hour"]["m7i.xlarge"])


def test_node_root_volumes_come_from_the_launch_template_else_the_default(estimate):
    serving = line(estimate, "EKS node root volumes", "NodeGroup mlplane-eks-serving")
    assert serving.quantity == "100 GB-month"
    assert serving.monthly == pytest.approx(100 * EU["ebs_gp3_gb_month"])
    system = line(estimate, "EKS node root volumes", "NodeGroup mlplane-eks-system")
    assert system.quantity == f"{2 * TABLE.assumptions['node_root_volume_gib_default']:g} GB-month"


def test_nat_gateways_cost_hours_processed_data_and_their_public_addresses(estimate):
    hours = [l for l in estimate.lines if l.item == "NAT gateway"]
    assert len(hours) == 2 and all(l.monthly == pytest.approx(HOURS * EU["nat_gateway_hour"]) for l in hours)
    data = [l for l in estimate.lines if l.item.startswith("NAT gateway data processed")]
    assert all(l.monthly == pytest.approx(TABLE.assumptions["nat_gb_processed_per_month"] * EU["nat_gateway_gb"]) for l in data)
    addresses = [l for l in estimate.lines if l.item == "public IPv4 address"]
    assert len(addresses) == 2


def test_interface_endpoints_cost_per_zone_and_gateway_endpoints_are_free(estimate):
    endpoint = line(estimate, "interface VPC endpoint (api)")
    assert endpoint.monthly == pytest.approx(3 * HOURS * EU["vpc_interface_endpoint_az_hour"])
    assert not [l for l in estimate.lines if l.resource == "VpcEndpoint mlplane-s3"]


def test_multi_az_database_doubles_instance_and_storage(estimate):
    instance = line(estimate, "RDS PostgreSQL db.t4g.medium")
    assert instance.monthly == pytest.approx(2 * HOURS * EU["rds_postgres_instance_hour"]["db.t4g.medium"])
    storage = line(estimate, "RDS storage (gp3)")
    assert storage.monthly == pytest.approx(2 * 20 * EU["rds_gp3_gb_month"])
    assert line(estimate, "Secrets Manager secret").monthly == pytest.approx(EU["secrets_manager_secret_month"])
    single = cost.estimate(capture(lambda: platform_program(multi_az=False)))
    assert line(single, "RDS PostgreSQL db.t4g.medium").monthly == pytest.approx(HOURS * EU["rds_postgres_instance_hour"]["db.t4g.medium"])


def test_kms_logs_buckets_volumes_and_load_balancers(estimate):
    assert line(estimate, "KMS key").monthly == pytest.approx(EU["kms_key_month"])
    assert line(estimate, "CloudWatch Logs").monthly == pytest.approx(
        TABLE.assumptions["cloudwatch_logs_gb_per_month"]["other"] * EU["cloudwatch_logs_ingest_gb"])
    assert len([l for l in estimate.lines if l.item.startswith("S3 Standard")]) == 2
    assert line(estimate, "EBS gp3 volume (PVC)").monthly == pytest.approx(10 * EU["ebs_gp3_gb_month"])
    claims = line(estimate, "EBS gp3 volumes (StatefulSet, 2 replicas)")
    assert claims.quantity == "100 GB-month" and claims.resource == "StatefulSet/mlplane-monitoring/prometheus"
    balancer = [l for l in estimate.lines if l.resource == "Service/mlplane-gateway/envoy"]
    assert [l.item for l in balancer] == ["network load balancer", "network load balancer capacity units (assumed 1 LCU)"]
    assert balancer[0].monthly == pytest.approx(HOURS * EU["nlb_hour"])
    assert balancer[1].monthly == pytest.approx(HOURS * EU["nlb_lcu_hour"])
    assert not [l for l in estimate.lines if "mlflow" in l.resource]


def test_the_total_is_the_sum_of_the_lines_and_complete(estimate):
    assert estimate.total == pytest.approx(sum(l.monthly for l in estimate.lines))
    assert estimate.unpriced == []
    assert estimate.headline().startswith(f"{cost.money(estimate.total)}/month, on-demand, eu-west-1, price table {TABLE.version}")


# --------------------------------------------------------------------------------------------
# Teams
# --------------------------------------------------------------------------------------------


def test_a_team_share_holds_its_volumes_and_its_bucket(estimate):
    [share] = estimate.teams
    assert share.team == "fraud"
    assert [l.resource for l in share.lines] == ["Bucket mlplane-team-fraud-bucket", "PersistentVolumeClaim/mlplane-team-fraud/data"]
    assert share.total < estimate.total


def test_team_quota_is_priced_at_the_serving_node_rate():
    def program() -> None:
        platform_program()
        team_program()

    result = cost.estimate(capture(program))
    [share] = result.teams
    node = EU["ec2_instance_hour"]["m7i.xlarge"]  # 4 vCPU, 16 GiB
    per_cpu, per_gib = node * 0.5 / 4, node * 0.5 / 16
    cpu = next(l for l in share.lines if l.item.startswith("quota-requested CPU"))
    memory = next(l for l in share.lines if l.item.startswith("quota-requested memory"))
    assert cpu.quantity == "6 vCPU x 730 h" and cpu.monthly == pytest.approx(6 * HOURS * per_cpu)
    assert memory.quantity == "16 GiB x 730 h" and memory.monthly == pytest.approx(16 * HOURS * per_gib)
    assert cpu.resource == "ResourceQuota x2 (fraud)"
    # A share of the nodes, not more nodes: the stack total does not change.
    assert result.total == pytest.approx(cost.estimate(capture(platform_program)).total)


def test_a_team_stack_without_node_groups_says_it_cannot_price_the_quota():
    def program() -> None:
        import pulumi_aws as aws

        aws.s3.Bucket("team-fraud-bucket", tags={"mlplane.dev/team": "fraud"})
        team_program()

    result = cost.estimate(capture(program), region="us-east-1")
    [share] = result.teams
    quota = next(l for l in share.lines if l.item.startswith("quota-requested"))
    assert quota.monthly is None and "no node group in this render" in quota.note
    assert result.region == "us-east-1"


def test_a_team_stack_of_an_aws_platform_is_priced_at_the_platform_serving_rate():
    rendered = capture(team_program)
    assert cost.estimate(rendered) is None  # no AWS resource of its own
    result = cost.estimate(rendered, region="us-east-1", serving_type="m7i.xlarge", cloud=True)
    [share] = result.teams
    node = TABLE.regions["us-east-1"]["ec2_instance_hour"]["m7i.xlarge"]
    assert [l.monthly for l in share.lines] == [pytest.approx(6 * HOURS * node * 0.5 / 4), pytest.approx(16 * HOURS * node * 0.5 / 16)]
    assert result.lines == [] and result.total == 0 and result.unpriced == []


# --------------------------------------------------------------------------------------------
# What the table does not know
# --------------------------------------------------------------------------------------------


def test_unknown_instance_type_is_a_line_saying_so_never_a_silent_zero():
    result = cost.estimate(capture(lambda: platform_program(serving_type="x9z.metal")))
    missing = line(result, "EKS nodes x9z.metal")
    assert missing.monthly is None
    assert missing.note == f"no price for instance type x9z.metal in table {TABLE.version} (eu-west-1)"
    assert result.unpriced == [missing]
    assert result.headline().startswith("at least $")
    assert "(1 item without a price)" in result.headline()
    assert result.as_json()["complete"] is False


def test_unknown_region_says_which_regions_the_table_has():
    result = cost.estimate(capture(lambda: platform_program(region="ap-south-2")))
    assert result.total == 0 and result.unpriced == result.lines
    assert result.lines[0].note == f"no prices for region ap-south-2 in table {TABLE.version} (regions: eu-west-1, us-east-1)"


def test_g6_is_not_priced_in_eu_west_1_and_says_so():
    assert "g6.xlarge" not in EU["ec2_instance_hour"]
    result = cost.estimate(capture(lambda: platform_program(serving_type="g6.xlarge")))
    assert line(result, "EKS nodes g6.xlarge").monthly is None


def test_a_stack_without_aws_resources_has_no_cloud_cost():
    record = Recorded(type="kubernetes:core/v1:Namespace", name="ns", urn="urn:ns", parent=None, custom=True, protect=False,
                      retain_on_delete=False, provider=None, depends_on=[], aliases=[], inputs={"metadata": {"name": "x"}})
    assert cost.estimate(Capture(resources=[record], outputs={})) is None
    assert cost.markdown(None) == []


def test_log_groups_are_priced_by_kind_the_audit_heavy_control_plane_highest():
    """One flat 5 GB a month per group was low for the control plane's audit log (review of issue
    11, nit): each kind has its own assumption, named on its line and in the assumptions."""

    def program() -> None:
        import pulumi
        import pulumi_aws as aws

        opts = pulumi.ResourceOptions(provider=aws.Provider("aws", region="eu-west-1"))
        for name, log_group in (("eks", "/aws/eks/mlplane/cluster"), ("flow", "/mlplane/mlplane/vpc-flow-logs"),
                                ("rds", "/aws/rds/instance/mlplane-mlflow/postgresql")):
            aws.cloudwatch.LogGroup(f"mlplane-{name}-logs", name=log_group, retention_in_days=90, opts=opts)

    estimate = cost.estimate(capture(program))
    assumed = TABLE.assumptions["cloudwatch_logs_gb_per_month"]
    for kind, resource in (("eks control plane", "eks"), ("vpc flow logs", "flow"), ("rds", "rds")):
        found = line(estimate, f"CloudWatch Logs ingestion (assumed, {kind})")
        assert found.monthly == pytest.approx(assumed[kind.replace(" ", "_")] * EU["cloudwatch_logs_ingest_gb"])
        assert resource in found.resource
    assert assumed["eks_control_plane"] == max(assumed.values())
    assert any("eks control plane 30 GB" in text for text in estimate.assumptions)


def test_log_group_kinds_from_their_names():
    assert cost.log_group_kind("/aws/eks/mlplane/cluster") == "eks_control_plane"
    assert cost.log_group_kind("/aws/rds/instance/mlplane-mlflow/upgrade") == "rds"
    assert cost.log_group_kind("/mlplane/prod/vpc-flow-logs") == "vpc_flow_logs"
    assert cost.log_group_kind("/custom/app") == "other"


def test_prices_not_re_read_from_aws_are_flagged_unverified_in_the_plan(rendered, estimate):
    """The table's prices were recalled, not re-read (its source says so): until a release re-reads
    them and sets "verified": true, the headline, the cost section and the JSON say so."""
    assert TABLE.verified is False and "unverified" in TABLE.as_of
    assert "prices UNVERIFIED" in estimate.headline()
    text = a_plan(rendered, estimate).markdown()
    assert f"> **{cost.UNVERIFIED}**" in text
    assert text.index(cost.UNVERIFIED) < text.index("| item | resource |")
    assert a_plan(rendered, estimate).as_json()["cost"]["price_table"]["verified"] is False


def test_a_verified_table_is_not_flagged(rendered):
    import dataclasses

    verified = dataclasses.replace(TABLE, verified=True)
    estimate = cost.estimate(rendered, table=verified)
    assert estimate is not None
    assert "UNVERIFIED" not in estimate.headline()
    assert cost.UNVERIFIED not in "\n".join(cost.markdown(estimate))


# --------------------------------------------------------------------------------------------
# The plan report
# --------------------------------------------------------------------------------------------


def a_plan(rendered: Capture, estimate: cost.Estimate | None) -> plan.Plan:
    return plan.Plan(stack="aws", source="stacks/Pulumi.aws.yaml", capture=rendered, schema_versions=("1.35",), schema_findings=[],
                     evaluation=policies.Evaluation(), usage={}, estimate=estimate)


def test_plan_report_shows_the_cost_next_to_the_diff(rendered, estimate):
    report = a_plan(rendered, estimate)
    text = report.markdown()
    assert "### Cost (estimated, monthly)" in text
    assert f"| cost (estimated) | {estimate.headline()} |" in text
    assert "| `fraud` |" in text and f"Price table {TABLE.version}, as of {TABLE.as_of}" in text
    assert text.index("### Cost") < text.index("### Resources by component")
    document = report.as_json()
    assert document["cost"]["monthly"] == round(estimate.total, 2)
    assert document["cost"]["price_table"]["version"] == TABLE.version
    assert document["cost"]["teams"][0]["team"] == "fraud"
    json.dumps(document)


def test_plan_report_of_a_stack_without_cloud_resources_has_no_cost_section(rendered):
    report = a_plan(rendered, None)
    assert "Cost" not in report.markdown() and "cost" not in report.as_json()


# --------------------------------------------------------------------------------------------
# The example AWS stack (stacks/Pulumi.aws.yaml)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_plan() -> plan.Plan:
    from mlplane.config import versions

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        patch.setattr(versions, "SUPPORTED_KUBERNETES", (versions.DEFAULT_KUBERNETES,))
        return plan.build("aws", None)


def test_example_aws_stack_is_priced_completely_in_its_region(aws_plan):
    estimate = aws_plan.estimate
    assert estimate is not None and estimate.region == "eu-west-1"
    assert estimate.unpriced == []
    items = [l.item for l in estimate.lines]
    assert items.count("EKS control plane") == 1
    assert items.count("NAT gateway") == 3  # nat: per_zone over three zones
    assert "EKS nodes m7i.large" in items and "EKS nodes m7i.xlarge" in items
    assert "RDS PostgreSQL db.t4g.medium (Multi-AZ: x2)" in items
    assert "network load balancer" in items  # the Gateway's EnvoyProxy Service
    assert [l.monthly for l in estimate.lines if l.item == "EKS nodes m7i.xlarge"] == [
        pytest.approx(2 * HOURS * EU["ec2_instance_hour"]["m7i.xlarge"])
    ]
    assert estimate.total == pytest.approx(sum(l.monthly for l in estimate.lines))


def test_example_aws_stack_report_has_the_cost_section(aws_plan):
    text = aws_plan.markdown()
    assert "### Cost (estimated, monthly)" in text
    assert f"| cost (estimated) | {aws_plan.estimate.headline()} |" in text
    assert aws_plan.as_json()["cost"]["complete"] is True
