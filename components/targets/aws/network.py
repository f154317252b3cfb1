"""The VPC the platform runs in (`mlplane:aws:Network`): created over two or more zones, or adopted.

Created (``aws.network.mode: create``), per availability zone: a private subnet for nodes, the
database and interface endpoints (tagged ``kubernetes.io/role/internal-elb`` for internal load
balancers) and a public subnet for internet-facing load balancers and the NAT gateways (tagged
``kubernetes.io/role/elb``); a NAT gateway per zone or a single one (``aws.network.nat``); VPC
endpoints so image pulls, S3, STS, EC2 and Pod Identity traffic stays off the NAT
(``aws.network.endpoints``): S3 as a gateway endpoint, the others as interface endpoints behind a
security group admitting HTTPS from the VPC only; flow logs to a KMS-encrypted log group; and the
VPC's default security group stripped of every rule (AWS FSBP EC2.2). Public subnets never hand
out public IPs on launch (EC2.15): only the NAT gateways' Elastic IPs and load balancers are public.

Adopted (``mode: existing``): nothing is created; the ids come from the config and the VPC's CIDR
block is looked up. docs/aws.md explains the layout and the endpoint choice.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlplane.config.aws import AwsConfig

TYPE = "mlplane:aws:Network"
#: Subnet tags the Kubernetes AWS load balancer integrations select subnets by
#: (kubernetes/cloud-provider-aws; the AWS Load Balancer Controller's subnet discovery).
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"
PUBLIC_ELB_TAG = "kubernetes.io/role/elb"
#: Interface endpoints private nodes use (service name suffixes of com.amazonaws.<region>.<x>):
#: ECR's API and registry (image pulls), STS (SDKs assuming roles), EC2 (the VPC CNI and the
#: EBS CSI driver describe instances and attach volumes), eks-auth (the Pod Identity agent's
#: AssumeRoleForPodIdentity). S3 (image layers, buckets) is a gateway endpoint.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "ec2", "eks-auth")
#: Most zones a created VPC spans (the subnet plan below has room for six).
MAX_ZONES = 6


def subnet_plan(cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """(private, public) subnet blocks, one per zone: private ones are an eighth of the VPC each
    (a /19 of a /16: room for the VPC CNI's one IP per pod), public ones a thirty-second (a /21),
    taken from the end of the block so both lists grow without overlapping."""
    if not 2 <= zones <= MAX_ZONES:
        raise ValueError(f"aws.network.availability_zones: 2 to {MAX_ZONES} zones are supported, got {zones}")
    network = ipaddress.ip_network(cidr)
    private = list(network.subnets(new_prefix=network.prefixlen + 3))[:zones]
    public = list(network.subnets(new_prefix=network.prefixlen + 5))[-zones:]
    return [str(s) for s in private], [str(s) for s in public]


@dataclass(frozen=True)
class NetworkArgs:
    #: The platform name: the ``Name`` tag prefix of everything the network creates.
    platform_name: str
    config: AwsConfig
    provider: aws.Provider
    #: Encrypts the flow log group.
    kms_key_arn: pulumi.Input[str]
    #: Retention of the flow logs (the EKS log retention: one setting for the platform's logs).
    log_retention_days: int


class Network(pulumi.ComponentResource):
    """The VPC and its subnets.

    Outputs: ``vpc_id``, ``vpc_cidr``, ``private_subnet_ids``, ``public_subnet_ids``.
    """

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self._provider = args.provider
        self._label = args.platform_name
        network = args.config.network
        if network.mode == "existing":
            existing = network.existing
            assert existing is not None  # guaranteed by AwsNetworkConfig validation
            vpc = aws.ec2.get_vpc_output(id=existing.vpc_id, opts=pulumi.InvokeOutputOptions(provider=args.provider))
            self.vpc_id = pulumi.Output.from_input(existing.vpc_id)
            self.vpc_cidr = vpc.cidr_block
            self.private_subnet_ids = pulumi.Output.from_input(list(existing.private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(existing.public_subnet_ids))
        else:
            self._create(name, args)
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "vpcCidr": self.vpc_cidr,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": self.public_subnet_ids,
            }
        )

    def _opts(self, **extra: object) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **extra)  # type: ignore[arg-type]

    def _create(self, name: str, args: NetworkArgs) -> None:
        config = args.config
        network = config.network
        zones = config.zones
        private_blocks, public_blocks = subnet_plan(network.cidr, len(zones))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=network.cidr,
            enable_dns_support=True,
            # Interface endpoints with private DNS need both DNS attributes.
            enable_dns_hostnames=True,
            tags={"Name": self._label},
            opts=self._opts(),
        )
        # FSBP EC2.2: the default security group allows nothing (no rules given = all removed).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, opts=self._opts())
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=self._opts())

        public_routes = aws.ec2.RouteTable(
            f"{name}-public-routes",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags={"Name": f"{self._label}-public"},
            opts=self._opts(),
        )
        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        for zone, private_block, public_block in zip(zones, private_blocks, public_blocks):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=public_block,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={"Name": f"{self._label}-public-{zone}", PUBLIC_ELB_TAG: "1"},
                opts=self._opts(),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{zone}-routes", subnet_id=subnet.id, route_table_id=public_routes.id, opts=self._opts()
            )
            public.append(subnet)
            private.append(
                aws.ec2.Subnet(
                    f"{name}-private-{zone}",
                    vpc_id=vpc.id,
                    cidr_block=private_block,
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{self._label}-private-{zone}", INTERNAL_ELB_TAG: "1"},
                    opts=self._opts(),
                )
            )

        # NAT: one per zone (each private subnet leaves through its own zone), or one in the
        # first zone that every private subnet shares.
        nat_zones = zones if network.nat == "per_zone" else zones[:1]
        nats: dict[str, aws.ec2.NatGateway] = {}
        for zone, subnet in zip(nat_zones, public):
            address = aws.ec2.Eip(f"{name}-nat-{zone}-ip", domain="vpc", opts=self._opts(depends_on=[gateway]))
            nats[zone] = aws.ec2.NatGateway(
                f"{name}-nat-{zone}",
                allocation_id=address.id,
                subnet_id=subnet.id,
                tags={"Name": f"{self._label}-nat-{zone}"},
                opts=self._opts(depends_on=[gateway]),
            )
        private_tables = []
        for zone, subnet in zip(zones, private):
            nat = nats.get(zone) or nats[nat_zones[0]]
            table = aws.ec2.RouteTable(
                f"{name}-private-{zone}-routes",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                tags={"Name": f"{self._label}-private-{zone}"},
                opts=self._opts(),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}-association", subnet_id=subnet.id, route_table_id=table.id, opts=self._opts()
            )
            private_tables.append(table)

        if network.endpoints:
            self._endpoints(name, config, vpc, private, private_tables)
        self._flow_logs(name, args, vpc)

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private]).apply(list)
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public]).apply(list)

    def _endpoints(
        self,
        name: str,
        config: AwsConfig,
        vpc: aws.ec2.Vpc,
        private: list[aws.ec2.Subnet],
        tables: list[aws.ec2.RouteTable],
    ) -> None:
        """S3 as a gateway endpoint on the private route tables; the interface endpoints in the
        private subnets behind a security group that admits HTTPS from the VPC and sends nothing."""
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{config.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in tables],
            tags={"Name": f"{self._label}-s3"},
            opts=self._opts(),
        )
        group = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            description="HTTPS from the VPC to its interface endpoints",
            vpc_id=vpc.id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="HTTPS from the VPC",
                    protocol="tcp",
                    from_port=443,
                    to_port=443,
                    cidr_blocks=[vpc.cidr_block],
                )
            ],
            # An explicit empty list removes the default allow-all egress rule.
            egress=[],
            tags={"Name": f"{self._label}-endpoints"},
            opts=self._opts(),
        )
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{config.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[group.id],
                tags={"Name": f"{self._label}-{service}"},
                opts=self._opts(),
            )

    def _flow_logs(self, name: str, args: NetworkArgs, vpc: aws.ec2.Vpc) -> None:
        """Every accepted and rejected flow to a KMS-encrypted CloudWatch log group, written by a
        role that may write to that group only (AWS FSBP EC2.6)."""
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/mlplane/{self._label}/vpc-flow-logs",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=self._opts(),
        )
        # Only flow logs of this account may use the role (the confused-deputy conditions the VPC
        # User Guide, "IAM role for publishing flow logs to CloudWatch Logs", recommends).
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(provider=args.provider, parent=self)
        ).account_id
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=account.apply(
                lambda account_id: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                            }
                        ],
                    }
                )
            ),
            opts=self._opts(),
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                                "Resource": [arn, f"{arn}:*"],
                            }
                        ],
                    }
                )
            ),
            opts=self._opts(),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            opts=self._opts(),
        )

