"""The estimated monthly cost of an AWS stack, and each team's share, from its offline render.

Prices come from the versioned, dated table ``components/pricing/aws.json`` (on-demand list
prices per region; its ``source`` says where each comes from and how fresh it is). What is priced,
from the recorded resources and their inputs:

- the EKS control plane (``aws:eks/cluster:Cluster``), per cluster-hour;
- managed node groups: the first instance type x ``scalingConfig.desiredSize`` (the autoscaler
  moves it afterwards), plus each node's gp3 root volume (its launch template, else ``diskSize``);
- NAT gateways (hour + an assumed GB processed), their Elastic IPs (public IPv4 hours);
- interface VPC endpoints, per AZ-hour (a subnet per AZ); gateway endpoints are free;
- load balancers: each Kubernetes Service of type LoadBalancer and each EnvoyProxy whose
  Service is one (an NLB through the AWS Load Balancer Controller), ``aws:lb`` load balancers;
- RDS: instance class hours and gp3 storage, both doubled by Multi-AZ; billed backup storage;
  the Secrets Manager secret of a managed master password;
- KMS keys, CloudWatch log groups (assumed ingestion), S3 buckets (assumed baseline GB);
- Kubernetes volumes: PersistentVolumeClaims and StatefulSet volume claim templates (x replicas), gp3.

A team's share (its objects are labelled ``mlplane.dev/team`` or live in a team namespace; its
bucket carries the tag ``mlplane.dev/team``): its volumes, its bucket baseline, and the CPU and
memory requests its ResourceQuotas allow, priced at the serving node type's rate per vCPU-hour and
per GiB-hour (the node's price split between its vCPUs and its memory by
``team_cpu_share_of_node_price``). Team shares are part of the stack's total, not added to it.

Nothing unknown is priced at zero silently: an instance type, class or region missing from the
table gives a line "no price for ... in table <version>" and the total says it is incomplete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

from mlplane.config import cpu_millicores, memory_bytes
from mlplane.tooling.render import Capture, Recorded

TEAM_LABEL = "mlplane.dev/team"
GIB = 2**30
PRICE_TABLE = "pricing/aws.json"
PROVIDER = "pulumi:providers:aws"


@dataclass(frozen=True)
class PriceTable:
    """A versioned, dated table of on-demand prices."""

    version: str
    as_of: str
    source: str
    currency: str
    hours_per_month: float
    assumptions: Mapping[str, Any]
    instances: Mapping[str, Mapping[str, float]]
    regions: Mapping[str, Mapping[str, Any]]
    #: Whether every price was re-read from AWS's price pages on ``as_of`` (the table says so);
    #: until then the plan flags the estimate as unverified.
    verified: bool = False

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PriceTable:
        return cls(
            version=str(document["version"]),
            as_of=str(document["as_of"]),
            source=str(document["source"]),
            currency=str(document.get("currency", "USD")),
            hours_per_month=float(document["hours_per_month"]),
            assumptions=dict(document["assumptions"]),
            instances=dict(document.get("instances", {})),
            regions=dict(document["regions"]),
            verified=document.get("verified") is True,
        )


@lru_cache(maxsize=1)
def aws_prices() -> PriceTable:
    """The AWS price table shipped in the package."""
    text = resources.files("mlplane").joinpath(PRICE_TABLE).read_text()
    return PriceTable.from_json(json.loads(text))


@dataclass
class Line:
    """One priced item: what, which resource, how much of it, at what unit price, per month."""

    item: str
    resource: str
    quantity: str
    unit_price: str
    #: None: no price in the table (``note`` says which).
    monthly: float | None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "resource": self.resource,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "monthly": None if self.monthly is None else round(self.monthly, 2),
            "note": self.note,
        }


def _total(lines: Iterable[Line]) -> float:
    return sum(line.monthly or 0.0 for line in lines)


@dataclass
class TeamShare:
    team: str
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> float:
        return _total(self.lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "monthly": round(self.total, 2),
            "complete": all(line.monthly is not None for line in self.lines),
            "lines": [line.as_json() for line in self.lines],
        }


@dataclass
class Estimate:
    """The monthly estimate of one stack."""

    table: PriceTable
    region: str | None
    lines: list[Line]
    teams: list[TeamShare]
    assumptions: list[str]

    @property
    def total(self) -> float:
        return _total(self.lines)

    @property
    def unpriced(self) -> list[Line]:
        return [line for line in self.lines if line.monthly is None]

    def as_json(self) -> dict[str, Any]:
        return {
            "currency": self.table.currency,
            "monthly": round(self.total, 2),
            "complete": not self.unpriced,
            "region": self.region,
            "price_table": {
                "version": self.table.version, "as_of": self.table.as_of, "source": self.table.source,
                "verified": self.table.verified,
            },
            "hours_per_month": self.table.hours_per_month,
            "lines": [line.as_json() for line in self.lines],
            "teams": [team.as_json() for team in self.teams],
            "assumptions": self.assumptions,
        }

    def headline(self) -> str:
        """One line: the total, and whether items are missing from it."""
        text = f"{money(self.total)}/month"
        if self.unpriced:
            text = f"at least {text} ({len(self.unpriced)} item{'s' if len(self.unpriced) != 1 else ''} without a price)"
        text = f"{text}, on-demand, {self.region or 'unknown region'}, price table {self.table.version}"
        if not self.table.verified:
            text += f" ({UNVERIFIED})"
        return text


#: What the plan says of a price table whose prices were not re-read from AWS's price pages.
UNVERIFIED = "prices UNVERIFIED: not re-read from AWS's price pages; check them before relying on the total"


def log_group_kind(name: str) -> str:
    """The kind of a CloudWatch log group, from its name: what its ingestion assumption is."""
    if name.startswith("/aws/eks/"):
        return "eks_control_plane"
    if name.startswith("/aws/rds/"):
        return "rds"
    if name.endswith("/vpc-flow-logs"):
        return "vpc_flow_logs"
    return "other"


def money(value: float) -> str:
    return f"${value:,.2f}"


def _rate(value: float) -> str:
    return f"${value:g}"


def has_aws_resources(capture: Capture) -> bool:
    return any(r.type.startswith("aws:") for r in capture.resources)


# --------------------------------------------------------------------------------------------
# Estimating
# --------------------------------------------------------------------------------------------


class _Pricer:
    """Prices of one region of a table; a missing price gives a line saying so."""

    def __init__(self, table: PriceTable, region: str | None):
        self.table = table
        self.region = region
        self.prices: Mapping[str, Any] = table.regions.get(region or "", {})
        self.hours = table.hours_per_month

    def missing(self, what: str) -> str:
        if not self.prices:
            known = ", ".join(sorted(self.table.regions))
            return f"no prices for region {self.region or '(not set)'} in table {self.table.version} (regions: {known})"
        return f"no price for {what} in table {self.table.version} ({self.region})"

    def price(self, key: str, entry: str | None = None) -> float | None:
        value = self.prices.get(key)
        if entry is not None:
            value = value.get(entry) if isinstance(value, Mapping) else None
        return float(value) if isinstance(value, (int, float)) else None

    def hourly(self, item: str, resource: str, count: float, key: str, entry: str | None = None, what: str = "") -> Line:
        """``count`` units billed every hour of the month."""
        unit = self.price(key, entry)
        quantity = f"{count:g} x {self.hours:g} h"
        if unit is None:
            return Line(item, resource, quantity, "-", None, self.missing(what or entry or key))
        return Line(item, resource, quantity, f"{_rate(unit)}/h", count * self.hours * unit)

    def monthly(self, item: str, resource: str, amount: float, unit_name: str, key: str, note: str = "") -> Line:
        unit = self.price(key)
        quantity = f"{amount:g} {unit_name}"
        if unit is None:
            return Line(item, resource, quantity, "-", None, self.missing(key))
        return Line(item, resource, quantity, f"{_rate(unit)}/{unit_name.split(' ')[-1]}", amount * unit, note)


def _region(capture: Capture, default: str | None) -> str | None:
    for record in capture.resources:
        if record.type == PROVIDER and isinstance(record.inputs.get("region"), str):
            return record.inputs["region"]
    return default


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _gib(quantity: Any) -> float:
    try:
        return memory_bytes(str(quantity)) / GIB
    except (ValueError, TypeError):
        return 0.0


def _labels(record: Recorded) -> Mapping[str, Any]:
    meta = record.inputs.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _namespace(record: Recorded) -> Any:
    meta = record.inputs.get("metadata")
    return meta.get("namespace") if isinstance(meta, Mapping) else None


def _kind(record: Recorded) -> str:
    return record.type.rsplit(":", 1)[-1] if record.is_kubernetes_object else ""


def _object_label(record: Recorded) -> str:
    meta = record.inputs.get("metadata") if isinstance(record.inputs.get("metadata"), Mapping) else {}
    name, namespace = meta.get("name", record.name), meta.get("namespace")
    return f"{_kind(record)}/{namespace}/{name}" if namespace else f"{_kind(record)}/{name}"


def _aws_label(record: Recorded) -> str:
    return f"{record.type.rsplit(':', 1)[-1]} {record.name}"


class _Teams:
    """Which team a record belongs to: its label, its namespace's label, or its bucket tag."""

    def __init__(self, capture: Capture):
        self.namespaces: dict[str, str] = {}
        for record in capture.resources:
            if _kind(record) == "Namespace":
                team = _labels(record).get(TEAM_LABEL)
                meta = record.inputs.get("metadata") or {}
                if isinstance(team, str) and isinstance(meta.get("name"), str):
                    self.namespaces[meta["name"]] = team

    def of(self, record: Recorded) -> str | None:
        if record.is_kubernetes_object:
            team = _labels(record).get(TEAM_LABEL)
            if isinstance(team, str):
                return team
            return self.namespaces.get(_namespace(record))
        tags = record.inputs.get("tags")
        team = tags.get(TEAM_LABEL) if isinstance(tags, Mapping) else None
        return team if isinstance(team, str) else None


def estimate(
    capture: Capture,
    *,
    region: str | None = None,
    serving_type: str | None = None,
    cloud: bool = False,
    table: PriceTable | None = None,
) -> Estimate | None:
    """The monthly estimate of a rendered stack; None when it has no AWS resources and ``cloud`` is
    false (no cloud cost: the local target).

    A team stack on AWS holds no AWS resource of its own: ``cloud`` asks for its estimate anyway,
    ``region`` and ``serving_type`` (the platform's serving node type) stand in for what its render
    does not name.
    """
    if not cloud and not has_aws_resources(capture):
        return None
    table = table or aws_prices()
    pricer = _Pricer(table, _region(capture, region))
    assumed = table.assumptions
    by_urn = {r.urn: r for r in capture.resources}
    teams = _Teams(capture)
    lines: list[Line] = []
    team_lines: dict[str, list[Line]] = {}
    configured_serving, serving_type = serving_type, None

    def add(line: Line, record: Recorded | None = None) -> None:
        lines.append(line)
        team = teams.of(record) if record is not None else None
        if team is not None:
            team_lines.setdefault(team, []).append(line)

    for record in capture.resources:
        inputs, label = record.inputs, _aws_label(record)
        if record.type == "aws:eks/cluster:Cluster":
            add(pricer.hourly("EKS control plane", label, 1, "eks_cluster_hour"))
        elif record.type == "aws:eks/nodeGroup:NodeGroup":
            lines.extend(_node_group(pricer, record, by_urn, assumed))
            types = inputs.get("instanceTypes")
            group = inputs.get("nodeGroupName") or record.name
            if isinstance(types, list) and types and (serving_type is None or str(group).endswith("serving")):
                serving_type = str(types[0])
        elif record.type == "aws:ec2/natGateway:NatGateway":
            add(pricer.hourly("NAT gateway", label, 1, "nat_gateway_hour"))
            gb = float(assumed["nat_gb_processed_per_month"])
            add(pricer.monthly("NAT gateway data processed (assumed)", label, gb, "GB", "nat_gateway_gb"))
        elif record.type == "aws:ec2/eip:Eip":
            add(pricer.hourly("public IPv4 address", label, 1, "public_ipv4_hour"))
        elif record.type == "aws:ec2/vpcEndpoint:VpcEndpoint" and inputs.get("vpcEndpointType") == "Interface":
            subnets = inputs.get("subnetIds")
            zones = len(subnets) if isinstance(subnets, list) and subnets else 1
            service = str(inputs.get("serviceName", "")).rsplit(".", 1)[-1]
            add(pricer.hourly(f"interface VPC endpoint ({service}), per AZ", label, zones, "vpc_interface_endpoint_az_hour"))
        elif record.type == "aws:lb/loadBalancer:LoadBalancer":
            kind = "alb" if inputs.get("loadBalancerType") in (None, "application") else "nlb"
            lines.extend(_load_balancer(pricer, label, kind, assumed))
        elif record.type == "aws:rds/instance:Instance":
            lines.extend(_database(pricer, record, assumed))
        elif record.type == "aws:kms/key:Key":
            add(pricer.monthly("KMS key", label, 1, "key-month", "kms_key_month"))
        elif record.type == "aws:cloudwatch/logGroup:LogGroup":
            kind = log_group_kind(str(inputs.get("name") or ""))
            gb = float(assumed["cloudwatch_logs_gb_per_month"][kind])
            what = f"CloudWatch Logs ingestion (assumed, {kind.replace('_', ' ')})"
            add(pricer.monthly(what, label, gb, "GB", "cloudwatch_logs_ingest_gb"))
        elif record.type in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            gb = float(assumed["s3_gb_per_bucket"])
            add(pricer.monthly("S3 Standard storage (assumed baseline)", label, gb, "GB-month", "s3_standard_gb_month"), record)
        elif record.is_kubernetes_object:
            for line in _kubernetes(pricer, record, assumed):
                add(line, record)

    serving_type = serving_type or configured_serving
    shares = [TeamShare(team, team_lines.get(team, [])) for team in sorted(set(team_lines) | _quota_teams(capture, teams))]
    for share in shares:
        share.lines += _quota_lines(pricer, capture, teams, share.team, serving_type, assumed)
    return Estimate(table=table, region=pricer.region, lines=lines, teams=shares, assumptions=_assumptions(table, serving_type))


def _node_group(pricer: _Pricer, record: Recorded, by_urn: Mapping[str, Recorded], assumed: Mapping[str, float]) -> list[Line]:
    inputs, label = record.inputs, _aws_label(record)
    types = inputs.get("instanceTypes")
    desired = _number((inputs.get("scalingConfig") or {}).get("desiredSize")) or 0.0
    if not isinstance(types, list) or not types:
        return [Line("EKS nodes", label, f"{desired:g} nodes", "-", None, "no instance type in the node group's inputs")]
    instance = str(types[0])
    item = f"EKS nodes {instance}"
    if inputs.get("capacityType") == "SPOT":
        item += " (spot, priced on-demand: an upper bound)"
    node = pricer.hourly(item, label, desired, "ec2_instance_hour", instance, what=f"instance type {instance}")
    if desired == 0:
        node.monthly, node.note = 0.0, "0 nodes at creation; scaled from 0 by the autoscaler"
    disk = _root_volume_gib(record, by_urn) or float(assumed["node_root_volume_gib_default"])
    volumes = pricer.monthly("EKS node root volumes (gp3)", label, desired * disk, "GB-month", "ebs_gp3_gb_month")
    return [node, volumes]


def _root_volume_gib(record: Recorded, by_urn: Mapping[str, Recorded]) -> float | None:
    """The root volume size of a node group's nodes: its launch template's, else ``diskSize``."""
    for urn in record.property_dependencies.get("launchTemplate", []):
        template = by_urn.get(urn)
        mappings = template.inputs.get("blockDeviceMappings") if template is not None else None
        for mapping in mappings if isinstance(mappings, list) else []:
            size = _number((mapping.get("ebs") or {}).get("volumeSize")) if isinstance(mapping, Mapping) else None
            if size:
                return size
    return _number(record.inputs.get("diskSize"))


def _load_balancer(pricer: _Pricer, label: str, kind: str, assumed: Mapping[str, float]) -> list[Line]:
    name = "network load balancer" if kind == "nlb" else "application load balancer"
    lcu = float(assumed["nlb_lcu_per_hour"])
    return [
        pricer.hourly(name, label, 1, f"{kind}_hour"),
        pricer.hourly(f"{name} capacity units (assumed {lcu:g} LCU)", label, lcu, f"{kind}_lcu_hour"),
    ]


def _database(pricer: _Pricer, record: Recorded, assumed: Mapping[str, float]) -> list[Line]:
    inputs, label = record.inputs, _aws_label(record)
    copies = 2 if inputs.get("multiAz") is True else 1
    suffix = " (Multi-AZ: x2)" if copies == 2 else ""
    instance_class = str(inputs.get("instanceClass", ""))
    lines = [
        pricer.hourly(f"RDS PostgreSQL {instance_class}{suffix}", label, copies, "rds_postgres_instance_hour", instance_class,
                      what=f"instance class {instance_class}"),
    ]
    storage = _number(inputs.get("allocatedStorage")) or 0.0
    lines.append(pricer.monthly(f"RDS storage ({inputs.get('storageType') or 'gp2'}){suffix}", label, copies * storage, "GB-month", "rds_gp3_gb_month"))
    backup = float(assumed["rds_billed_backup_gb"])
    lines.append(pricer.monthly(
        "RDS backup storage beyond the free allowance (assumed)", label, backup, "GB-month", "rds_backup_gb_month",
        note="backups up to the provisioned storage are free",
    ))
    if inputs.get("manageMasterUserPassword") is True:
        lines.append(pricer.monthly("Secrets Manager secret (managed master password)", label, 1, "secret-month", "secrets_manager_secret_month"))
    return lines


def _kubernetes(pricer: _Pricer, record: Recorded, assumed: Mapping[str, float]) -> list[Line]:
    kind, inputs = _kind(record), record.inputs
    spec = inputs.get("spec") if isinstance(inputs.get("spec"), Mapping) else {}
    if kind == "PersistentVolumeClaim":
        size = _gib(((spec.get("resources") or {}).get("requests") or {}).get("storage", "0"))
        return [pricer.monthly("EBS gp3 volume (PVC)", _object_label(record), size, "GB-month", "ebs_gp3_gb_month")]
    if kind == "StatefulSet" and spec.get("volumeClaimTemplates"):
        replicas = _number(spec.get("replicas"))
        replicas = 1.0 if replicas is None else replicas
        size = sum(
            _gib(((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))
            for claim in spec["volumeClaimTemplates"]
            if isinstance(claim, Mapping)
        )
        return [pricer.monthly(f"EBS gp3 volumes (StatefulSet, {replicas:g} replicas)", _object_label(record), replicas * size, "GB-month", "ebs_gp3_gb_month")]
    if kind == "Service" and spec.get("type") == "LoadBalancer":
        return _load_balancer(pricer, _object_label(record), "nlb", assumed)
    if kind == "EnvoyProxy":
        service = ((spec.get("provider") or {}).get("kubernetes") or {}).get("envoyService") or {}
        # Envoy Gateway's default Service type is LoadBalancer (EnvoyProxy API: KubernetesServiceSpec.type).
        if isinstance(service, Mapping) and service.get("type", "LoadBalancer") == "LoadBalancer":
            return _load_balancer(pricer, _object_label(record), "nlb", assumed)
    return []


def _quota_teams(capture: Capture, teams: _Teams) -> set[str]:
    return {t for r in capture.resources if _kind(r) == "ResourceQuota" and (t := teams.of(r)) is not None}


def _quota_lines(
    pricer: _Pricer, capture: Capture, teams: _Teams, team: str, serving_type: str | None, assumed: Mapping[str, float]
) -> list[Line]:
    """The team's quota-requested CPU and memory, priced at the serving node type's rates."""
    cpu_m, memory = 0, 0
    quotas = [r for r in capture.resources if _kind(r) == "ResourceQuota" and teams.of(r) == team]
    for record in quotas:
        hard = ((record.inputs.get("spec") or {}).get("hard")) or {}
        try:
            cpu_m += cpu_millicores(str(hard.get("requests.cpu", "0")))
            memory += memory_bytes(str(hard.get("requests.memory", "0")))
        except ValueError:
            continue
    if not quotas:
        return []
    label = f"ResourceQuota x{len(quotas)} ({team})"
    vcpus, gib = cpu_m / 1000, memory / GIB
    if serving_type is None:
        return [Line("quota-requested CPU and memory", label, f"{vcpus:g} vCPU, {gib:g} GiB", "-", None,
                     "no node group in this render to take the serving node type's rate from")]
    size = pricer.table.instances.get(serving_type, {})
    node = pricer.price("ec2_instance_hour", serving_type)
    if node is None or not size:
        reason = pricer.missing(f"instance type {serving_type}") if node is None else f"no vCPU/memory size of {serving_type} in table {pricer.table.version}"
        return [Line("quota-requested CPU and memory", label, f"{vcpus:g} vCPU, {gib:g} GiB", "-", None, reason)]
    share = float(assumed["team_cpu_share_of_node_price"])
    per_cpu = node * share / float(size["vcpu"])
    per_gib = node * (1 - share) / float(size["memory_gib"])
    hours = pricer.hours
    return [
        Line(f"quota-requested CPU at the {serving_type} rate", label, f"{vcpus:g} vCPU x {hours:g} h", f"${per_cpu:.5f}/vCPU-h", vcpus * hours * per_cpu),
        Line(f"quota-requested memory at the {serving_type} rate", label, f"{gib:g} GiB x {hours:g} h", f"${per_gib:.5f}/GiB-h", gib * hours * per_gib),
    ]


def _assumptions(table: PriceTable, serving_type: str | None) -> list[str]:
    a = table.assumptions
    return [
        f"{table.hours_per_month:g} hours a month; on-demand list prices, before taxes, credits, Savings Plans or Reserved Instances.",
        "Node groups at their desired size (the autoscaler changes it with load; spot priced on-demand); "
        f"node root volumes from their launch template, else {a['node_root_volume_gib_default']:g} GiB.",
        f"NAT gateways process {a['nat_gb_processed_per_month']:g} GB a month each; load balancers use {a['nlb_lcu_per_hour']:g} LCU on average.",
        f"Each S3 bucket holds {a['s3_gb_per_bucket']:g} GB of Standard storage. CloudWatch log groups ingest a month: "
        + ", ".join(f"{kind.replace('_', ' ')} {gb:g} GB" for kind, gb in a["cloudwatch_logs_gb_per_month"].items())
        + " (the control plane's audit log grows with API calls: controllers, CI jobs; check its real volume in the first weeks).",
        f"RDS backups beyond the free allowance (the provisioned storage): {a['rds_billed_backup_gb']:g} GB; Multi-AZ doubles instance and storage.",
        "Kubernetes volumes (PVCs, StatefulSet claim templates) are gp3 at their requested size; volumes that Helm charts "
        "create are not in the render and not counted.",
        "Team shares: the team's volumes, its bucket baseline and the CPU and memory requests its ResourceQuotas allow, at the "
        f"{serving_type or 'serving'} node's rate ({a['team_cpu_share_of_node_price']:.0%} of the node price spread over its vCPUs, "
        "the rest over its memory). They are part of the stack total, not added to it.",
        "Not counted: data transfer, S3/KMS/API requests, ECR storage, interface endpoint data, CloudWatch metrics, taxes.",
    ]


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def markdown(estimate: Estimate | None, cell: Any = str) -> list[str]:
    """The plan report's Cost section (``cell`` escapes table cells)."""
    if estimate is None:
        return []
    table = estimate.table
    lines = ["### Cost (estimated, monthly)", "", f"**{estimate.headline()}**", ""]
    rows = [
        [line.item, f"`{line.resource}`", line.quantity, line.unit_price, money(line.monthly) if line.monthly is not None else line.note]
        for line in estimate.lines
    ]
    rows.append(["**total**", "", "", "", f"**{money(estimate.total)}**" + (" (incomplete)" if estimate.unpriced else "")])
    lines += _table(["item", "resource", "quantity", "unit price", "per month"], rows, cell)
    if estimate.teams:
        team_rows = [
            [f"`{share.team}`", money(share.total) + ("" if all(l.monthly is not None for l in share.lines) else " (incomplete)"),
             "; ".join(f"{l.item}: {money(l.monthly) if l.monthly is not None else l.note}" for l in share.lines)]
            for share in estimate.teams
        ]
        lines += ["", "Per team (part of the total above):", ""] + _table(["team", "per month", "made of"], team_rows, cell)
    lines += ["", "<details><summary>Assumptions and prices</summary>", ""]
    lines += [f"- {text}" for text in estimate.assumptions]
    lines += [f"- Price table {table.version}, as of {table.as_of}: {table.source}", "", "</details>", ""]
    if not table.verified:
        lines[2:2] = [f"> **{UNVERIFIED}** (price table {table.version}, as of {table.as_of}; docs/cost.md).", ""]
    return lines


def _table(header: list[str], rows: list[list[Any]], cell: Any) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out
